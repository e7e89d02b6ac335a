"""The official Python SDK (centrifuge-python, JSON and Protobuf) against a real server.

Run against neoevents by default; NEOEVENTS_CONFORMANCE_TARGETS=centrifugo,neoevents runs the same
tests against the reference Centrifugo as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from centrifuge import ClientState, ReplyError, StreamPosition, SubscriptionState

from tests.conformance.sdk_helpers import (
    EXPIRED_CLOSE_DELAY,
    api,
    conformance_server,
    conformance_targets,
    eventually,
    gated_proxy,
    publish,
    sdk_client,
    unique,
    wait_until,
)
from tests.support.servers import RunningServer

if TYPE_CHECKING:
    from tests.conftest import ServerPool

# Error codes of the client protocol.
UNKNOWN_CHANNEL = 102
PERMISSION_DENIED = 103
NOT_AVAILABLE = 108
TOKEN_EXPIRED = 109
METHOD_NOT_FOUND = 104
# An RPC nobody handles: neoevents answers 104 "method not found"; Centrifugo without an RPC proxy
# answers 108 "not available" (a documented difference, see docs/compatibility.md).
RPC_WITHOUT_HANDLER = {"neoevents": METHOD_NOT_FOUND, "centrifugo": NOT_AVAILABLE}
# Disconnect codes: terminal "invalid token"; a custom code in the reconnecting 4000-4499 range.
INVALID_TOKEN = 3500
CUSTOM_RECONNECT = 4001


@pytest.fixture(params=conformance_targets())
def server(request: pytest.FixtureRequest, server_pool: ServerPool) -> RunningServer:
    return conformance_server(server_pool, request.param)


@pytest.fixture(params=["json", "protobuf"])
def protobuf(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "protobuf")


async def test_connect_with_token(server: RunningServer, protobuf: bool) -> None:
    user = unique("user-")
    channel = unique("chat:connect-")
    token = server.token(user, info={"name": "Ann"})
    async with sdk_client(server.ws_url, protobuf, token=token) as c:
        await c.client.connect()
        await c.client.ready()
        assert c.client.state == ClientState.CONNECTED
        [connected] = c.events.of("connected")
        assert connected.client
        assert c.events.of("error") == []

        # The connection's user and info (from the token) are what the server knows.
        sub, _ = c.subscribe_to(channel)
        await sub.subscribe()
        await sub.ready()
        presence = await sub.presence()
        assert set(presence.clients) == {connected.client}
        me = presence.clients[connected.client]
        assert me.user == user
        assert c.payloads.decode(me.conn_info) == {"name": "Ann"}


async def test_invalid_token_disconnects_without_reconnect(server: RunningServer, protobuf: bool) -> None:
    bad_token = jwt.encode({"sub": unique("user-")}, "not-the-server-secret-0123456789", algorithm="HS256")
    async with gated_proxy(server) as proxy, sdk_client(proxy.url_for(server.ws_url), protobuf) as c:
        c.client.set_token(bad_token)
        await c.client.connect()
        [disconnected] = await c.events.wait("disconnected")
        assert disconnected.code == INVALID_TOKEN
        assert c.client.state == ClientState.DISCONNECTED
        # A reconnecting client would have tried again within its 0.3 s maximum delay.
        await asyncio.sleep(1.0)
        assert proxy.accepted == 1
        assert c.events.of("connected") == []
        assert c.client.state == ClientState.DISCONNECTED


async def test_expired_token_is_refreshed_with_get_token(server: RunningServer, protobuf: bool) -> None:
    user = unique("user-")
    calls: list[float] = []

    async def get_token() -> str:
        calls.append(time.time())
        return server.token(user)

    expired = server.token(user, exp=int(time.time()) - 60)
    async with sdk_client(server.ws_url, protobuf, token=expired, get_token=get_token) as c:
        await c.client.connect()
        await c.events.wait("connected")
        assert c.client.state == ClientState.CONNECTED
        errors = c.events.of("error")
        assert [e.error.code for e in errors if isinstance(e.error, ReplyError)] == [TOKEN_EXPIRED]
        assert len(calls) == 1


async def test_connection_and_subscription_token_refresh(server: RunningServer, protobuf: bool) -> None:
    """Tokens expiring in two seconds: the SDK refreshes both via get_token and the connection and the
    subscription stay up past the expiry plus the server's close delay."""
    user = unique("user-")
    channel = unique("secure:refresh-")
    exp = int(time.time()) + 2
    conn_calls: list[float] = []
    sub_calls: list[str] = []

    async def get_token() -> str:
        conn_calls.append(time.time())
        return server.token(user)

    async def get_sub_token(ch: str) -> str:
        sub_calls.append(ch)
        return server.sub_token(user, ch)

    token = server.token(user, exp=exp)
    async with sdk_client(server.ws_url, protobuf, token=token, get_token=get_token) as c:
        await c.client.connect()
        sub, rec = c.subscribe_to(channel, token=server.sub_token(user, channel, exp=exp), get_token=get_sub_token)
        await sub.subscribe()
        await sub.ready()
        await wait_until(lambda: bool(conn_calls and sub_calls), "the SDK to refresh both tokens", timeout=15)
        assert sub_calls == [channel]
        # Past the expiry and the close delay: an unrefreshed connection would be closed by now.
        while time.time() < exp + EXPIRED_CLOSE_DELAY + 1.5:
            await asyncio.sleep(0.1)
        await publish(server, channel, {"after": "refresh"})
        [pub] = await rec.wait("publication")
        assert c.payloads.decode(pub.pub.data) == {"after": "refresh"}
        assert c.client.state == ClientState.CONNECTED
        assert sub.state == SubscriptionState.SUBSCRIBED
        assert len(c.events.of("connecting")) == 1  # the initial connect() only
        assert len(c.events.of("connected")) == 1
        assert c.events.of("disconnected") == []
        assert len(rec.of("subscribed")) == 1
        assert rec.of("unsubscribed") == []


async def test_subscribe_publish_presence_join_leave(server: RunningServer, protobuf: bool) -> None:
    alice, bob = unique("alice-"), unique("bob-")
    channel = unique("chat:room-")
    async with (
        sdk_client(server.ws_url, protobuf, token=server.token(alice)) as a,
        sdk_client(server.ws_url, protobuf, token=server.token(bob, info={"nick": "b"})) as b,
    ):
        await a.client.connect()
        await b.client.connect()
        sub_a, rec_a = a.subscribe_to(channel, join_leave=True)
        await sub_a.subscribe()
        await sub_a.ready()
        [subscribed] = rec_a.of("subscribed")
        assert subscribed.channel == channel
        assert subscribed.recoverable  # force_recovery in the namespace
        assert subscribed.stream_position is not None
        sub_b, rec_b = b.subscribe_to(channel)
        await sub_b.subscribe()
        await sub_b.ready()

        joins = await rec_a.wait("join", 2)  # alice herself, then bob
        assert [j.info.user for j in joins] == [alice, bob]
        assert b.payloads.decode(joins[1].info.conn_info) == {"nick": "b"}

        # A client publication (allowed in the namespace) and one from the server API.
        await sub_b.publish(b.payloads.encode({"text": "hi"}))
        result = await publish(server, channel, {"text": "from api"}, tags={"kind": "api"})
        assert result["offset"] == 2
        for rec, c in ((rec_a, a), (rec_b, b)):
            pubs = await rec.wait("publication", 2)
            assert [c.payloads.decode(p.pub.data) for p in pubs] == [{"text": "hi"}, {"text": "from api"}]
            assert [p.pub.offset for p in pubs] == [1, 2]
            assert pubs[0].pub.info is not None
            assert pubs[0].pub.info.user == bob
            assert pubs[1].pub.info is None
            assert pubs[1].pub.tags == {"kind": "api"}

        presence = await sub_a.presence()
        assert sorted(info.user for info in presence.clients.values()) == sorted([alice, bob])
        stats = await sub_b.presence_stats()
        assert (stats.num_clients, stats.num_users) == (2, 2)

        await sub_b.unsubscribe()
        assert sub_b.state == SubscriptionState.UNSUBSCRIBED
        [leave] = await rec_a.wait("leave")
        assert leave.info.user == bob
        stats = await sub_a.presence_stats()
        assert (stats.num_clients, stats.num_users) == (1, 1)
        # Unsubscribed: bob gets nothing more, alice does.
        await publish(server, channel, {"text": "after"})
        await rec_a.wait("publication", 3)
        assert len(rec_b.of("publication")) == 2


async def test_a_burst_to_a_busy_channel_arrives_whole_and_in_order(server: RunningServer, protobuf: bool) -> None:
    # Enough subscribers for the channel to be batched, and publications that reach them within one event-loop
    # iteration (one API batch), so that several travel in each WebSocket frame.
    channel = unique("chat:burst-")
    count = 40
    async with contextlib.AsyncExitStack() as stack:
        subscribers = []
        for _ in range(9):
            c = await stack.enter_async_context(sdk_client(server.ws_url, protobuf, token=server.token(unique("u-"))))
            await c.client.connect()
            sub, rec = c.subscribe_to(channel)
            await sub.subscribe()
            await sub.ready()
            subscribers.append((c, rec))
        commands = [{"publish": {"channel": channel, "data": {"n": n}}} for n in range(count)]
        await api(server, "batch", {"commands": commands})
        for c, rec in subscribers:
            pubs = await rec.wait("publication", count)
            assert [c.payloads.decode(p.pub.data) for p in pubs] == [{"n": n} for n in range(count)]
            assert [p.pub.offset for p in pubs] == list(range(1, count + 1))
            # Received as sent: not recovered from history after a reconnect.
            assert len(c.events.of("connected")) == 1 and not c.events.of("error")


async def test_publish_and_subscribe_denied(server: RunningServer, protobuf: bool) -> None:
    user = unique("user-")
    async with sdk_client(server.ws_url, protobuf, token=server.token(user)) as c:
        await c.client.connect()
        # "news" lets clients subscribe but not publish.
        news = unique("news:")
        sub, _ = c.subscribe_to(news)
        await sub.subscribe()
        await sub.ready()
        with pytest.raises(ReplyError) as denied:
            await sub.publish(c.payloads.encode({"x": 1}))
        assert denied.value.code == PERMISSION_DENIED
        # An unknown namespace: the subscription ends with the server's error code.
        unknown, rec = c.subscribe_to(unique("nosuchns:"))
        await unknown.subscribe()
        [unsubscribed] = await rec.wait("unsubscribed")
        assert unsubscribed.code == UNKNOWN_CHANNEL
        assert unknown.state == SubscriptionState.UNSUBSCRIBED
        # The connection is unaffected.
        assert c.client.state == ClientState.CONNECTED
        await publish(server, news, {"still": "here"})


async def test_rpc_without_handler(server: RunningServer, protobuf: bool) -> None:
    async with sdk_client(server.ws_url, protobuf, token=server.token(unique("user-"))) as c:
        await c.client.connect()
        with pytest.raises(ReplyError) as err:
            await c.client.rpc("no.such.method", c.payloads.encode({"a": 1}))
        assert err.value.code == RPC_WITHOUT_HANDLER[server.kind]
        assert c.client.state == ClientState.CONNECTED


async def test_history_limit_since_reverse(server: RunningServer, protobuf: bool) -> None:
    channel = unique("chat:history-")
    async with sdk_client(server.ws_url, protobuf, token=server.token(unique("user-"))) as c:
        await c.client.connect()
        sub, rec = c.subscribe_to(channel)
        await sub.subscribe()
        await sub.ready()
        epochs = {(await publish(server, channel, {"n": n}))["epoch"] for n in range(1, 6)}
        await rec.wait("publication", 5)
        [epoch] = epochs

        def view(pubs: list[Any]) -> list[tuple[int, int]]:
            return [(p.offset, c.payloads.decode(p.data)["n"]) for p in pubs]

        everything = await sub.history(limit=10)
        assert (everything.offset, everything.epoch) == (5, epoch)
        assert view(everything.publications) == [(n, n) for n in range(1, 6)]
        first_two = await sub.history(limit=2)
        assert view(first_two.publications) == [(1, 1), (2, 2)]
        assert first_two.offset == 5
        last_two = await sub.history(limit=2, reverse=True)
        assert view(last_two.publications) == [(5, 5), (4, 4)]
        since = await sub.history(limit=10, since=StreamPosition(offset=2, epoch=epoch))
        assert view(since.publications) == [(3, 3), (4, 4), (5, 5)]
        since_reverse = await sub.history(limit=2, since=StreamPosition(offset=4, epoch=epoch), reverse=True)
        assert view(since_reverse.publications) == [(3, 3), (2, 2)]
        position = await sub.history(limit=0)
        assert (position.publications, position.offset, position.epoch) == ([], 5, epoch)

        # A namespace without client history permission.
        news_only, _ = c.subscribe_to(unique("tiny:"))
        await news_only.subscribe()
        await news_only.ready()
        with pytest.raises(ReplyError) as denied:
            await news_only.history(limit=10)
        assert denied.value.code == PERMISSION_DENIED


async def test_server_side_subscriptions(server: RunningServer, protobuf: bool) -> None:
    alice, bob = unique("alice-"), unique("bob-")
    channel = unique("srv:feed-")
    async with sdk_client(server.ws_url, protobuf, token=server.token(alice, channels=[channel])) as a:
        await a.client.connect()
        [subscribed] = await a.events.wait("server_subscribed")
        assert subscribed.channel == channel
        assert subscribed.recoverable
        assert a.client.get_subscription(channel) is None  # server-side, not a client Subscription

        async with sdk_client(server.ws_url, protobuf, token=server.token(bob, channels=[channel])) as b:
            await b.client.connect()
            await b.events.wait("server_subscribed")
            await wait_until(lambda: any(j.info.user == bob for j in a.events.of("server_join")), "bob's join")
            await publish(server, channel, {"feed": 1})
            for c in (a, b):
                [pub] = await c.events.wait("server_publication")
                assert pub.channel == channel
                assert c.payloads.decode(pub.pub.data) == {"feed": 1}
                assert pub.pub.offset == 1
        # bob disconnected: alice sees him leave.
        await wait_until(lambda: any(lv.info.user == bob for lv in a.events.of("server_leave")), "bob's leave")
        assert all(j.channel == channel for j in a.events.of("server_join"))


@pytest.mark.parametrize("drop", ["api-disconnect", "transport-cut"])
async def test_recovery_after_dropped_connection(server: RunningServer, protobuf: bool, drop: str) -> None:
    """The connection is dropped - by the server (API disconnect with a reconnecting code) or by the
    network (the TCP connection cut without a WebSocket close) - and new connections are cut off
    while publications are missed. On reconnect the client-side and server-side subscriptions
    recover every missed publication exactly once and in order, except where the history window is
    too small (recovered=false)."""
    user = unique("user-")
    chat, tiny, feed = unique("chat:rec-"), unique("tiny:rec-"), unique("srv:rec-")
    missed = 5
    async with (
        gated_proxy(server) as proxy,
        sdk_client(proxy.url_for(server.ws_url), protobuf, token=server.token(user, channels=[feed])) as c,
    ):
        await c.client.connect()
        await c.events.wait("server_subscribed")
        chat_sub, chat_rec = c.subscribe_to(chat)
        tiny_sub, tiny_rec = c.subscribe_to(tiny)
        for sub in (chat_sub, tiny_sub):
            await sub.subscribe()
            await sub.ready()
        for ch in (chat, tiny, feed):
            await publish(server, ch, {"n": 0})
        await chat_rec.wait("publication")
        await tiny_rec.wait("publication")
        await c.events.wait("server_publication")

        proxy.gate_open = False
        if drop == "api-disconnect":
            disconnect = {"code": CUSTOM_RECONNECT, "reason": "test"}
            await api(server, "disconnect", {"user": user, "disconnect": disconnect})
            await wait_until(lambda: any(e.code == CUSTOM_RECONNECT for e in c.events.of("connecting")), "the drop")
        else:
            proxy.cut()
            await c.events.wait("connecting", 2)
            # The server notices the connection is gone: it leaves the channel's presence.
            stats: list[dict[str, int]] = []

            async def presence_gone() -> bool:
                stats.append(await api(server, "presence_stats", {"channel": chat}))
                return stats[-1].get("num_clients", 0) == 0

            await eventually(presence_gone, "the dropped connection to leave presence")
        assert c.client.state == ClientState.CONNECTING
        for n in range(1, missed + 1):
            for ch in (chat, tiny, feed):
                await publish(server, ch, {"n": n})
        proxy.gate_open = True

        await c.events.wait("connected", 2)
        chat_subscribed = (await chat_rec.wait("subscribed", 2))[1]
        tiny_subscribed = (await tiny_rec.wait("subscribed", 2))[1]
        feed_subscribed = (await c.events.wait("server_subscribed", 2))[1]
        assert (chat_subscribed.was_recovering, chat_subscribed.recovered) == (True, True)
        assert (feed_subscribed.was_recovering, feed_subscribed.recovered) == (True, True)
        assert (tiny_subscribed.was_recovering, tiny_subscribed.recovered) == (True, False)

        # One more, live: it comes after the recovered ones and nothing comes twice.
        await publish(server, chat, {"n": missed + 1})
        await publish(server, feed, {"n": missed + 1})
        want = list(range(missed + 2))
        chat_pubs = await chat_rec.wait("publication", len(want))
        feed_pubs = await c.events.wait("server_publication", len(want))
        assert [c.payloads.decode(p.pub.data)["n"] for p in chat_pubs] == want
        assert [p.pub.offset for p in chat_pubs] == [n + 1 for n in want]
        assert [c.payloads.decode(p.pub.data)["n"] for p in feed_pubs] == want
        assert [p.pub.offset for p in feed_pubs] == [n + 1 for n in want]
        # Unrecoverable: the missed publications are not delivered.
        assert [c.payloads.decode(p.pub.data)["n"] for p in tiny_rec.of("publication")] == [0]
        await asyncio.sleep(0.2)
        assert len(chat_rec.of("publication")) == len(want)


async def test_subscription_token(server: RunningServer, protobuf: bool) -> None:
    user = unique("user-")
    granted, expired_first, denied = unique("secure:a-"), unique("secure:b-"), unique("secure:c-")
    calls: list[str] = []

    async def get_sub_token(channel: str) -> str:
        calls.append(channel)
        return server.sub_token(user, channel)

    async with sdk_client(server.ws_url, protobuf, token=server.token(user)) as c:
        await c.client.connect()
        # No token yet: the SDK asks get_token for one.
        sub, rec = c.subscribe_to(granted, get_token=get_sub_token)
        await sub.subscribe()
        await sub.ready()
        assert calls == [granted]
        await sub.publish(c.payloads.encode({"secret": 1}))  # allow_publish_for_subscriber
        [pub] = await rec.wait("publication")
        assert c.payloads.decode(pub.pub.data) == {"secret": 1}

        # An expired subscription token: error 109, then a fresh token from get_token.
        old = server.sub_token(user, expired_first, exp=int(time.time()) - 60)
        sub2, rec2 = c.subscribe_to(expired_first, token=old, get_token=get_sub_token)
        await sub2.subscribe()
        await sub2.ready()
        errors = [e.error for e in rec2.of("error")]
        assert [e.code for e in errors if isinstance(e, ReplyError)] == [TOKEN_EXPIRED]
        assert calls == [granted, expired_first]

        # No token at all for a namespace that requires one.
        sub3, rec3 = c.subscribe_to(denied)
        await sub3.subscribe()
        [unsubscribed] = await rec3.wait("unsubscribed")
        assert unsubscribed.code == PERMISSION_DENIED

        assert c.client.state == ClientState.CONNECTED


async def test_subscription_token_for_another_channel(server: RunningServer, protobuf: bool) -> None:
    """A subscription token whose channel claim differs is an invalid token: the server closes
    the connection with 3500 and the client does not reconnect."""
    user = unique("user-")
    async with sdk_client(server.ws_url, protobuf, token=server.token(user)) as c:
        await c.client.connect()
        await c.client.ready()
        wrong = server.sub_token(user, unique("secure:other-"))
        sub, _ = c.subscribe_to(unique("secure:mine-"), token=wrong)
        await sub.subscribe()
        [disconnected] = await c.events.wait("disconnected")
        assert disconnected.code == INVALID_TOKEN
        assert c.client.state == ClientState.DISCONNECTED
