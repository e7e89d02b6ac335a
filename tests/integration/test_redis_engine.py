"""Two real neoevents nodes sharing one real redis-server, driven with the official Python SDK and the HTTP API.

What several nodes must look like from outside: a publication on one node reaches subscribers on the other,
history, recovery, presence, join/leave and idempotency keys are shared, and a Redis outage costs error 100
replies and resubscriptions (2500, or 3010 for server-side subscriptions), never a mass disconnect.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conformance.sdk_helpers import (
    NAMESPACES,
    ApiError,
    api,
    eventually,
    gated_proxy,
    publish,
    sdk_client,
    unique,
    wait_until,
)
from tests.support.redisserver import RedisServer
from tests.support.servers import RunningServer, ServerOptions

INTERNAL_ERROR = 100
INSUFFICIENT_STATE_UNSUBSCRIBE = 2500
INSUFFICIENT_STATE_DISCONNECT = 3010
FAST_RESUBSCRIBE = {"min_resubscribe_delay": 0.05, "max_resubscribe_delay": 0.3}

# The SDK conformance namespaces, plus one without history (at most once, nothing to recover).
REDIS_NAMESPACES = [
    *NAMESPACES,
    {"name": "plain", "allow_subscribe_for_client": True, "allow_publish_for_client": True},
]


@dataclass
class Cluster:
    redis: RedisServer
    a: RunningServer
    b: RunningServer


@pytest.fixture
def cluster(redis_server: RedisServer, server_factory: Callable[..., RunningServer]) -> Cluster:
    options = ServerOptions(
        secret="redis-cluster-secret-0123456789abcdef",
        api_key="redis-cluster-api-key",
        namespaces=REDIS_NAMESPACES,
        extra={"engine": "redis", "redis_address": [redis_server.address], "redis_prefix": unique("it")},
    )
    return Cluster(redis_server, server_factory("neoevents", options), server_factory("neoevents", options))


def data_of(ctx: Any) -> Any:
    return ctx.pub.data


async def test_a_publication_on_one_node_reaches_subscribers_on_the_other(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    channel = unique("chat:pub-")
    async with (
        sdk_client(a.ws_url, False, token=a.token("alice", info={"name": "Alice"})) as alice,
        sdk_client(b.ws_url, True, token=b.token("bob", info={"name": "Bob"})) as bob,
    ):
        for c in (alice, bob):
            await c.client.connect()
            await c.client.ready()
        alice_sub, alice_rec = alice.subscribe_to(channel)
        bob_sub, bob_rec = bob.subscribe_to(channel)
        for sub in (alice_sub, bob_sub):
            await sub.subscribe()
            await sub.ready()

        # Server API on B, then a client publication on B (with the publisher's info), then one on A.
        await publish(b, channel, {"n": 1})
        await bob_sub.publish(bob.payloads.encode({"n": 2}))
        await alice_sub.publish({"n": 3})
        for c, rec in ((alice, alice_rec), (bob, bob_rec)):
            pubs = await rec.wait("publication", 3)
            assert [c.payloads.decode(p.pub.data)["n"] for p in pubs] == [1, 2, 3]
            assert [p.pub.offset for p in pubs] == [1, 2, 3]
            assert pubs[1].pub.info.user == "bob"
            assert c.payloads.decode(pubs[1].pub.info.conn_info) == {"name": "Bob"}

        # History and its position are the same on both nodes.
        history_a = await api(a, "history", {"channel": channel, "limit": -1})
        history_b = await api(b, "history", {"channel": channel, "limit": -1})
        assert history_a == history_b
        assert [p["data"]["n"] for p in history_a["publications"]] == [1, 2, 3]


async def test_recovery_after_reconnecting_to_the_other_node(cluster: Cluster) -> None:
    """Connected to A, cut off, publications missed on B, reconnected to B: everything missed is recovered."""
    a, b = cluster.a, cluster.b
    channel = unique("chat:rec-")
    async with gated_proxy(a) as proxy, sdk_client(proxy.url_for(a.ws_url), False, token=a.token("carol")) as c:
        await c.client.connect()
        await c.client.ready()
        sub, rec = c.subscribe_to(channel)
        await sub.subscribe()
        await sub.ready()
        await publish(a, channel, {"n": 0})
        await rec.wait("publication")

        proxy.gate_open = False
        proxy.cut()
        await c.events.wait("connecting", 2)
        for n in (1, 2, 3):
            await publish(b, channel, {"n": n})
        proxy.target = (b.host, b.port)
        proxy.gate_open = True

        await c.events.wait("connected", 2)
        resubscribed = (await rec.wait("subscribed", 2))[1]
        assert (resubscribed.was_recovering, resubscribed.recovered) == (True, True)
        await publish(a, channel, {"n": 4})  # live again, now from the node it left
        pubs = await rec.wait("publication", 5)
        assert [p.pub.data["n"] for p in pubs] == [0, 1, 2, 3, 4]
        assert [p.pub.offset for p in pubs] == [1, 2, 3, 4, 5]
        await asyncio.sleep(0.2)
        assert len(rec.of("publication")) == 5


async def test_presence_is_shared(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    channel = unique("chat:presence-")
    async with (
        sdk_client(a.ws_url, False, token=a.token("dave")) as dave,
        sdk_client(b.ws_url, False, token=b.token("erin")) as erin,
        sdk_client(b.ws_url, False, token=b.token("erin")) as erin2,
    ):
        subs = []
        for c in (dave, erin, erin2):
            await c.client.connect()
            await c.client.ready()
            sub, _ = c.subscribe_to(channel)
            await sub.subscribe()
            await sub.ready()
            subs.append(sub)
        for server in (a, b):
            stats = await api(server, "presence_stats", {"channel": channel})
            assert stats == {"num_clients": 3, "num_users": 2}
        presence = await subs[0].presence()  # a client on A sees the clients on B
        assert sorted(info.user for info in presence.clients.values()) == ["dave", "erin", "erin"]

        await erin2.client.disconnect()

        async def two_left() -> bool:
            stats: dict[str, Any] = await api(a, "presence_stats", {"channel": channel})
            return stats == {"num_clients": 2, "num_users": 2}

        await eventually(two_left, "the disconnected client to leave presence on the other node")


async def test_join_and_leave_cross_nodes(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    channel = unique("chat:jl-")
    async with (
        sdk_client(a.ws_url, False, token=a.token("frank")) as frank,
        sdk_client(b.ws_url, False, token=b.token("grace")) as grace,
    ):
        for c in (frank, grace):
            await c.client.connect()
            await c.client.ready()
        frank_sub, frank_rec = frank.subscribe_to(channel, join_leave=True)
        await frank_sub.subscribe()
        await frank_sub.ready()
        grace_sub, _ = grace.subscribe_to(channel)
        await grace_sub.subscribe()
        await grace_sub.ready()
        await wait_until(lambda: any(j.info.user == "grace" for j in frank_rec.of("join")), "grace's join on A")
        await grace_sub.unsubscribe()
        await wait_until(lambda: any(lv.info.user == "grace" for lv in frank_rec.of("leave")), "grace's leave on A")


async def test_an_idempotency_key_counts_across_nodes(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    channel = unique("chat:idem-")
    async with sdk_client(a.ws_url, False, token=a.token("heidi")) as c:
        await c.client.connect()
        sub, rec = c.subscribe_to(channel)
        await sub.subscribe()
        await sub.ready()
        first = await publish(a, channel, {"n": 1}, idempotency_key="order-1")
        again = await publish(b, channel, {"n": 1}, idempotency_key="order-1")
        assert first == again and first["offset"] == 1
        await rec.wait("publication")
        await publish(b, channel, {"n": 2})
        pubs = await rec.wait("publication", 2)
        assert [p.pub.data["n"] for p in pubs] == [1, 2]


async def test_redis_outage_and_a_fresh_redis(cluster: Cluster) -> None:
    """Redis dies: API calls get 100 at once, connections stay. A fresh, empty Redis comes back: positioned
    subscriptions are told 2500 (server-side ones 3010) and recover; publications flow again everywhere."""
    a, b, redis = cluster.a, cluster.b, cluster.redis
    chat, plain, feed = unique("chat:out-"), unique("plain:out-"), unique("srv:out-")
    async with (
        sdk_client(a.ws_url, False, token=a.token("ivan")) as c,
        sdk_client(a.ws_url, False, token=a.token("judy", channels=[feed])) as server_side,
    ):
        for client in (c, server_side):
            await client.client.connect()
            await client.client.ready()
        await server_side.events.wait("server_subscribed")
        chat_sub, chat_rec = c.subscribe_to(chat, **FAST_RESUBSCRIBE)
        plain_sub, plain_rec = c.subscribe_to(plain, **FAST_RESUBSCRIBE)
        for sub in (chat_sub, plain_sub):
            await sub.subscribe()
            await sub.ready()
        for channel in (chat, plain, feed):
            await publish(b, channel, {"n": 1})
        await chat_rec.wait("publication")
        await plain_rec.wait("publication")
        await server_side.events.wait("server_publication")

        redis.kill()
        for server, method, params in (
            (a, "publish", {"channel": chat, "data": {"n": 2}}),
            (b, "publish", {"channel": plain, "data": {"n": 2}}),
            (a, "history", {"channel": chat, "limit": 10}),
            (b, "presence", {"channel": chat}),
        ):
            started = time.monotonic()
            with pytest.raises(ApiError) as failed:
                await api(server, method, params)
            assert failed.value.code == INTERNAL_ERROR, method
            assert time.monotonic() - started < 2, f"{method} took too long without Redis"
        late_sub, late_rec = c.subscribe_to(unique("chat:late-"), **FAST_RESUBSCRIBE)
        await late_sub.subscribe()
        failure = (await late_rec.wait("error"))[0].error
        assert (failure.code, failure.temporary) == (INTERNAL_ERROR, True)  # the SDK keeps trying
        await asyncio.sleep(0.5)
        for client in (c, server_side):
            assert client.events.of("disconnected") == [] and len(client.events.of("connecting")) == 1
        assert a.http("GET", "/health").status == 200

        redis.start()  # empty: every stream gets a new epoch
        await wait_until(
            lambda: INSUFFICIENT_STATE_UNSUBSCRIBE in [s.code for s in chat_rec.of("subscribing")], "2500 on chat"
        )
        await wait_until(
            lambda: INSUFFICIENT_STATE_DISCONNECT in [e.code for e in server_side.events.of("connecting")],
            "3010 for the server-side subscription",
        )
        resubscribed = (await chat_rec.wait("subscribed", 2))[1]
        assert resubscribed.was_recovering and not resubscribed.recovered  # a new epoch: nothing to recover
        await late_rec.wait("subscribed")
        await server_side.events.wait("connected", 2)
        await server_side.events.wait("server_subscribed", 2)
        assert [s.code for s in plain_rec.of("subscribing")] == [0]  # at most once: left alone

        async def delivered_everywhere() -> bool:
            for channel in (chat, plain, feed):
                try:
                    await publish(b, channel, {"n": 3})
                except ApiError:
                    return False
            return True

        await eventually(delivered_everywhere, "publishing to work again")
        await wait_until(lambda: any(p.pub.data == {"n": 3} for p in chat_rec.of("publication")), "chat n=3")
        await wait_until(lambda: any(p.pub.data == {"n": 3} for p in plain_rec.of("publication")), "plain n=3")
        await wait_until(
            lambda: any(p.pub.data == {"n": 3} for p in server_side.events.of("server_publication")), "feed n=3"
        )
        await asyncio.sleep(0.2)
        assert len(c.events.of("connecting")) == 1  # the client-side subscriptions never cost a reconnect
    log = a.log_text()
    assert log.count("PUB/SUB connection unavailable") == 1, log
    assert log.count("command connection unavailable") == 1, log


async def test_a_new_epoch_without_a_connection_loss_is_noticed(cluster: Cluster) -> None:
    """FLUSHALL keeps the connections but starts every stream again: the first publication of the new
    epoch tells the other node that its positioned subscribers must recover."""
    a, b, redis = cluster.a, cluster.b, cluster.redis
    channel = unique("chat:epoch-")
    async with sdk_client(a.ws_url, False, token=a.token("kim")) as c:
        await c.client.connect()
        sub, rec = c.subscribe_to(channel, **FAST_RESUBSCRIBE)
        await sub.subscribe()
        first = (await rec.wait("subscribed"))[0]
        await publish(b, channel, {"n": 1})
        await rec.wait("publication")
        redis.command("FLUSHALL")
        second = await publish(b, channel, {"n": 2})
        assert second["offset"] == 1 and second["epoch"] != first.stream_position.epoch
        await wait_until(
            lambda: INSUFFICIENT_STATE_UNSUBSCRIBE in [s.code for s in rec.of("subscribing")], "2500 after FLUSHALL"
        )
        resubscribed = (await rec.wait("subscribed", 2))[1]
        assert resubscribed.stream_position.epoch == second["epoch"]
        await publish(a, channel, {"n": 3})
        pubs = await rec.wait("publication", 2)
        assert [p.pub.data["n"] for p in pubs] == [1, 3]
