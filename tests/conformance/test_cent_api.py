"""The official server API client `cent` (sync and async) against a real server.

Effects on connections are observed with centrifuge-python clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest
from cent import (
    AsyncClient,
    BatchRequest,
    BroadcastRequest,
    CentApiResponseError,
    CentRequest,
    CentUnauthorizedError,
    ChannelsRequest,
    Client,
    Disconnect,
    DisconnectRequest,
    HistoryRemoveRequest,
    HistoryRequest,
    InfoRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    RefreshRequest,
    StreamPosition,
    SubscribeRequest,
    UnsubscribeRequest,
)
from centrifuge import ClientState

from tests.conformance.sdk_helpers import (
    SdkClient,
    conformance_server,
    conformance_targets,
    eventually,
    sdk_client,
    unique,
    wait_until,
)
from tests.support.servers import RunningServer

if TYPE_CHECKING:
    from tests.conftest import ServerPool

UNKNOWN_CHANNEL = 102
BAD_REQUEST = 107
NOT_AVAILABLE = 108
FORCE_DISCONNECT = 3503
CONNECTION_EXPIRED = 3005

Call = Callable[[CentRequest[Any]], Awaitable[Any]]


@pytest.fixture(params=conformance_targets())
def server(request: pytest.FixtureRequest, server_pool: ServerPool) -> RunningServer:
    return conformance_server(server_pool, request.param)


def make_call(kind: str, api_url: str, api_key: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    """A way to send any cent request with the sync or the async client, and a closer."""
    if kind == "sync":
        sync_client = Client(api_url, api_key, timeout=10)

        async def call_sync(req: CentRequest[Any]) -> Any:
            # Off the event loop: the SDK clients of the test keep running meanwhile.
            return await asyncio.to_thread(getattr(sync_client, req.api_method), req)

        async def close_sync() -> None:
            sync_client.close()

        return call_sync, close_sync

    async_client = AsyncClient(api_url, api_key, timeout=10)

    async def call_async(req: CentRequest[Any]) -> Any:
        return await getattr(async_client, req.api_method)(req)

    async def close_async() -> None:
        await async_client.close()

    return call_async, close_async


@pytest.fixture(params=["sync", "async"])
async def cent(request: pytest.FixtureRequest, server: RunningServer) -> AsyncIterator[Call]:
    call, close = make_call(request.param, server.api_url, server.api_key)
    try:
        yield call
    finally:
        await close()


async def connected(client: SdkClient) -> SdkClient:
    await client.client.connect()
    await client.client.ready()
    return client


async def test_publish_idempotency_skip_history_tags(server: RunningServer, cent: Call) -> None:
    channel = unique("chat:cent-")
    async with sdk_client(server.ws_url, False, token=server.token(unique("user-"))) as c:
        await connected(c)
        sub, rec = c.subscribe_to(channel)
        await sub.subscribe()
        await sub.ready()

        first = await cent(PublishRequest(channel=channel, data={"n": 1}, tags={"t": "1"}))
        assert first.offset == 1
        assert first.epoch
        key = unique("idem-")
        second = await cent(PublishRequest(channel=channel, data={"n": 2}, idempotency_key=key))
        again = await cent(PublishRequest(channel=channel, data={"n": 2}, idempotency_key=key))
        assert (second.offset, second.epoch) == (2, first.epoch)
        assert (again.offset, again.epoch) == (2, first.epoch)  # the same publication, not a new one
        skipped = await cent(PublishRequest(channel=channel, data={"n": 3}, skip_history=True))
        assert (skipped.offset, skipped.epoch) == (0, "")

        pubs = await rec.wait("publication", 3)
        assert [p.pub.data for p in pubs] == [{"n": 1}, {"n": 2}, {"n": 3}]
        assert [p.pub.offset for p in pubs] == [1, 2, 0]
        assert pubs[0].pub.tags == {"t": "1"}
        history = await cent(HistoryRequest(channel=channel, limit=10))
        assert [(p.offset, p.data) for p in history.publications] == [(1, {"n": 1}), (2, {"n": 2})]
        assert history.publications[0].tags == {"t": "1"}
        assert (history.offset, history.epoch) == (2, first.epoch)
        await asyncio.sleep(0.1)
        assert len(rec.of("publication")) == 3


async def test_broadcast(server: RunningServer, cent: Call) -> None:
    channels = [unique("chat:bc-"), unique("news:bc-")]
    async with sdk_client(server.ws_url, False, token=server.token(unique("user-"))) as c:
        await connected(c)
        recs = []
        for ch in channels:
            sub, rec = c.subscribe_to(ch)
            await sub.subscribe()
            await sub.ready()
            recs.append(rec)
        result = await cent(BroadcastRequest(channels=[*channels, unique("nosuchns:")], data={"all": True}))
        assert len(result.responses) == 3
        for resp in result.responses[:2]:
            assert resp.error is None
            assert resp.result is not None
            assert resp.result.offset == 1
        assert result.responses[2].error is not None
        assert result.responses[2].error.code == UNKNOWN_CHANNEL
        for ch, rec in zip(channels, recs, strict=True):
            [pub] = await rec.wait("publication")
            assert pub.pub.data == {"all": True}, ch


async def test_subscribe_and_unsubscribe_user(server: RunningServer, cent: Call) -> None:
    user = unique("user-")
    channel = unique("chat:srvsub-")
    async with sdk_client(server.ws_url, False, token=server.token(user)) as c:
        await connected(c)
        await cent(SubscribeRequest(user=user, channel=channel, data={"welcome": 1}))
        [subscribed] = await c.events.wait("server_subscribed")
        assert subscribed.channel == channel
        assert subscribed.data == {"welcome": 1}
        await cent(PublishRequest(channel=channel, data={"to": "server-side"}))
        [pub] = await c.events.wait("server_publication")
        assert (pub.channel, pub.pub.data) == (channel, {"to": "server-side"})
        stats = await cent(PresenceStatsRequest(channel=channel))
        assert (stats.num_clients, stats.num_users) == (1, 1)

        await cent(UnsubscribeRequest(user=user, channel=channel))
        [unsubscribed] = await c.events.wait("server_unsubscribed")
        assert unsubscribed.channel == channel
        counts: list[tuple[int, int]] = []

        async def presence_gone() -> bool:
            stats = await cent(PresenceStatsRequest(channel=channel))
            counts.append((stats.num_clients, stats.num_users))
            return counts[-1] == (0, 0)

        await eventually(presence_gone, "presence to be removed")
        assert c.client.state == ClientState.CONNECTED


async def test_disconnect_user(server: RunningServer, cent: Call) -> None:
    user, other = unique("user-"), unique("other-")
    async with (
        sdk_client(server.ws_url, False, token=server.token(user)) as c,
        sdk_client(server.ws_url, False, token=server.token(user)) as c2,
        sdk_client(server.ws_url, False, token=server.token(other)) as bystander,
    ):
        for client in (c, c2, bystander):
            await connected(client)
        # Only the given client of the user, with a custom terminal code.
        [info] = c.events.of("connected")
        await cent(DisconnectRequest(user=user, client=info.client, disconnect=Disconnect(code=4501, reason="bye")))
        [disconnected] = await c.events.wait("disconnected")
        assert (disconnected.code, disconnected.reason) == (4501, "bye")
        assert c.client.state == ClientState.DISCONNECTED
        # Every connection of the user; the default code is "force disconnect", no reconnect.
        await cent(DisconnectRequest(user=user))
        [disconnected] = await c2.events.wait("disconnected")
        assert disconnected.code == FORCE_DISCONNECT
        assert c2.client.state == ClientState.DISCONNECTED
        assert bystander.client.state == ClientState.CONNECTED
        assert bystander.events.of("disconnected") == []


async def test_disconnect_reason_longer_than_a_close_frame_holds(server: RunningServer, cent: Call) -> None:
    """A close frame holds 123 bytes of reason. neoevents cuts a longer one (here 120 two-byte characters) at a
    character boundary, and the disconnect takes effect; the reference drops the connection without a close
    frame the SDK accepts, so the SDK reconnects (a documented difference)."""
    user = unique("user-")
    async with sdk_client(server.ws_url, False, token=server.token(user)) as c:
        await connected(c)
        await cent(DisconnectRequest(user=user, disconnect=Disconnect(code=4501, reason="é" * 120)))
        if server.kind == "neoevents":
            [disconnected] = await c.events.wait("disconnected")
            assert (disconnected.code, disconnected.reason) == (4501, "é" * 61)
            assert c.client.state == ClientState.DISCONNECTED
        else:
            _, reconnecting = await c.events.wait("connecting", 2)
            assert reconnecting.reason == "transport closed"
            assert c.events.of("disconnected") == []


async def test_refresh_expired(server: RunningServer, cent: Call) -> None:
    user = unique("user-")
    async with sdk_client(server.ws_url, False, token=server.token(user)) as c:
        await connected(c)
        await cent(RefreshRequest(user=user, expired=True))
        # The connection is closed as expired and the client reconnects with its (still valid) token.
        await wait_until(lambda: any(e.code == CONNECTION_EXPIRED for e in c.events.of("connecting")), "the expiry")
        await c.events.wait("connected", 2)
        # Refreshing a user without connections is fine.
        await cent(RefreshRequest(user=unique("nobody-"), expire_at=2_000_000_000))


async def test_presence_channels_info(server: RunningServer, cent: Call) -> None:
    alice, bob = unique("alice-"), unique("bob-")
    channel = unique("chat:pres-")
    async with (
        sdk_client(server.ws_url, False, token=server.token(alice, info={"a": 1})) as a,
        sdk_client(server.ws_url, False, token=server.token(bob)) as b,
        sdk_client(server.ws_url, False, token=server.token(bob)) as b2,
    ):
        ids = {}
        for name, client in (("a", a), ("b", b), ("b2", b2)):
            await connected(client)
            sub, _ = client.subscribe_to(channel)
            await sub.subscribe()
            await sub.ready()
            ids[name] = client.events.of("connected")[0].client

        presence = await cent(PresenceRequest(channel=channel))
        assert set(presence.presence) == set(ids.values())
        assert presence.presence[ids["a"]].user == alice
        assert presence.presence[ids["a"]].client == ids["a"]
        assert presence.presence[ids["a"]].conn_info == {"a": 1}
        assert presence.presence[ids["b2"]].user == bob
        stats = await cent(PresenceStatsRequest(channel=channel))
        assert (stats.num_clients, stats.num_users) == (3, 2)

        channels = await cent(ChannelsRequest(pattern=channel))
        assert set(channels.channels) == {channel}
        assert channels.channels[channel].num_clients == 3
        everything = await cent(ChannelsRequest())
        assert channel in everything.channels

        nodes: list[Any] = []

        async def node_counts_clients() -> bool:
            # Node statistics are refreshed periodically, not on every connect.
            info = await cent(InfoRequest())
            nodes[:] = info.nodes
            return len(nodes) == 1 and nodes[0].num_clients >= 3

        await eventually(node_counts_clients, "the node to count the clients")
        node = nodes[0]
        assert node.uid
        assert node.name
        assert node.num_users >= 2
        assert node.num_channels >= 1
        assert node.num_subs >= 3


async def test_history_and_history_remove(server: RunningServer, cent: Call) -> None:
    channel = unique("chat:hist-")
    epoch = ""
    for n in range(1, 5):
        epoch = (await cent(PublishRequest(channel=channel, data={"n": n}))).epoch
    last_two = await cent(HistoryRequest(channel=channel, limit=2, reverse=True))
    assert [p.offset for p in last_two.publications] == [4, 3]
    since = await cent(HistoryRequest(channel=channel, limit=10, since=StreamPosition(offset=1, epoch=epoch)))
    assert [p.data for p in since.publications] == [{"n": 2}, {"n": 3}, {"n": 4}]
    position = await cent(HistoryRequest(channel=channel))
    assert (position.publications, position.offset, position.epoch) == ([], 4, epoch)

    await cent(HistoryRemoveRequest(channel=channel))
    after = await cent(HistoryRequest(channel=channel, limit=10))
    assert after.publications == []
    assert (after.offset, after.epoch) == (4, epoch)  # the stream position is kept
    assert (await cent(PublishRequest(channel=channel, data={"n": 5}))).offset == 5


async def test_batch(server: RunningServer, cent: Call) -> None:
    channel = unique("chat:batch-")
    result = await cent(
        BatchRequest(
            requests=[
                PublishRequest(channel=channel, data={"n": 1}),
                PublishRequest(channel=channel, data={"n": 2}),
                HistoryRequest(channel=channel, limit=10),
                PresenceStatsRequest(channel=channel),
            ]
        )
    )
    first, second, history, stats = result.replies
    assert (first.offset, second.offset) == (1, 2)
    assert first.epoch == second.epoch
    assert [p.data for p in history.publications] == [{"n": 1}, {"n": 2}]
    assert (stats.num_clients, stats.num_users) == (0, 0)

    parallel = await cent(
        BatchRequest(
            requests=[PublishRequest(channel=unique("chat:par-"), data={"i": i}) for i in range(3)],
            parallel=True,
        )
    )
    assert [r.offset for r in parallel.replies] == [1, 1, 1]


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (PublishRequest(channel="nosuchns:x", data={}), UNKNOWN_CHANNEL),
        (PublishRequest(channel="", data={}), BAD_REQUEST),
        (PresenceRequest(channel="news:x"), NOT_AVAILABLE),  # no presence in the namespace
        (HistoryRequest(channel="plain", limit=1), NOT_AVAILABLE),  # no history without namespace
    ],
    ids=["unknown-namespace", "empty-channel", "presence-off", "history-off"],
)
async def test_api_errors(cent: Call, request_: CentRequest[Any], code: int) -> None:
    with pytest.raises(CentApiResponseError) as err:
        await cent(request_)
    assert err.value.code == code


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_wrong_api_key(server: RunningServer, kind: str) -> None:
    call, close = make_call(kind, server.api_url, "not-the-api-key")
    try:
        with pytest.raises(CentUnauthorizedError):
            await call(InfoRequest())
    finally:
        await close()
