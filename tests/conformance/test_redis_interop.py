"""A mixed cluster: the reference Centrifugo and neoevents on one Redis, with the same key prefix.

Both store and publish the same bytes under the same keys, so a publication made on either reaches the
subscribers of both, with one sequence of offsets in one epoch; history, presence and idempotency keys are
shared too. That is what lets a deployment move from Centrifugo to neoevents node by node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.conformance.sdk_helpers import NAMESPACES, api, publish, sdk_client, unique, wait_until
from tests.support.redisserver import RedisServer
from tests.support.servers import RunningServer, ServerOptions

pytestmark = pytest.mark.differential


def _mixed_cluster(
    redis: RedisServer, server_factory: Callable[..., RunningServer], prefix: str
) -> tuple[RunningServer, RunningServer]:
    """A Centrifugo and a neoevents node on ``redis``, with the same key prefix."""
    options = ServerOptions(
        namespaces=NAMESPACES,
        extra={"engine": "redis", "redis_address": [redis.address], "redis_prefix": prefix},
        centrifugo_extra={"engine": {"type": "redis", "redis": {"address": [redis.address], "prefix": prefix}}},
    )
    return server_factory("centrifugo", options), server_factory("neoevents", options)


async def test_centrifugo_and_neoevents_share_one_redis(
    redis_server: RedisServer, server_factory: Callable[..., RunningServer]
) -> None:
    centrifugo, neoevents = _mixed_cluster(redis_server, server_factory, unique("mixed"))
    channel = unique("chat:mixed-")
    async with (
        sdk_client(neoevents.ws_url, False, token=neoevents.token("neo-user")) as on_neo,
        sdk_client(centrifugo.ws_url, True, token=centrifugo.token("cf-user")) as on_cf,
    ):
        recorders = []
        for c in (on_neo, on_cf):
            await c.client.connect()
            await c.client.ready()
            sub, rec = c.subscribe_to(channel, join_leave=True)
            await sub.subscribe()
            await sub.ready()
            recorders.append((c, rec))

        first = await publish(centrifugo, channel, {"n": 1})
        second = await publish(neoevents, channel, {"n": 2})
        assert (first["offset"], second["offset"]) == (1, 2) and first["epoch"] == second["epoch"]
        again = await publish(centrifugo, channel, {"n": 3}, idempotency_key="k")
        assert await publish(neoevents, channel, {"n": 3}, idempotency_key="k") == again
        for c, rec in recorders:
            pubs = await rec.wait("publication", 3)
            assert [c.payloads.decode(p.pub.data)["n"] for p in pubs] == [1, 2, 3]
            assert [p.pub.offset for p in pubs] == [1, 2, 3]

        history = {kind: await api(server, "history", {"channel": channel, "limit": -1}) for kind, server in
                   (("neoevents", neoevents), ("centrifugo", centrifugo))}  # fmt: skip
        assert history["neoevents"] == history["centrifugo"]
        for server in (neoevents, centrifugo):
            assert await api(server, "presence_stats", {"channel": channel}) == {"num_clients": 2, "num_users": 2}
        presence = await api(neoevents, "presence", {"channel": channel})
        assert sorted(info["user"] for info in presence["presence"].values()) == ["cf-user", "neo-user"]

        # Join and leave of a Centrifugo client reach a neoevents client.
        neo_rec = recorders[0][1]
        await on_cf.client.disconnect()
        await wait_until(lambda: any(lv.info.user == "cf-user" for lv in neo_rec.of("leave")), "the leave")


async def test_centrifugo_and_neoevents_nodes_form_one_cluster(
    redis_server: RedisServer, server_factory: Callable[..., RunningServer]
) -> None:
    """Node info and server-side actions travel on the shared control channel, in Centrifugo's format."""
    centrifugo, neoevents = _mixed_cluster(redis_server, server_factory, unique("cluster"))
    neo_uid = (await api(neoevents, "info", {}))["nodes"][0]["uid"]
    cf_uid = (await api(centrifugo, "info", {}))["nodes"][0]["uid"]

    async def listed(server: RunningServer, uid: str) -> bool:
        return any(node["uid"] == uid for node in (await api(server, "info", {}))["nodes"])

    for server, uid in ((centrifugo, neo_uid), (neoevents, cf_uid)):
        for _ in range(100):
            if await listed(server, uid):
                break
            await asyncio.sleep(0.1)
        assert await listed(server, uid)

    channel = unique("chat:cluster-")
    async with (
        sdk_client(neoevents.ws_url, False, token=neoevents.token("on-neo")) as on_neo,
        sdk_client(centrifugo.ws_url, True, token=centrifugo.token("on-cf")) as on_cf,
    ):
        for c in (on_neo, on_cf):
            await c.client.connect()
            await c.client.ready()
        # The channels API surveys every node: each server counts the other's subscribers too.
        for c in (on_neo, on_cf):
            sub, _ = c.subscribe_to(channel)
            await sub.subscribe()
            await sub.ready()
        for server in (centrifugo, neoevents):
            found = await api(server, "channels", {"pattern": "chat:cluster-*"})
            assert found["channels"] == {channel: {"num_clients": 2}}
        # Server-side subscribe and unsubscribe through the other server's API.
        channel = unique("chat:cluster-")
        await api(centrifugo, "subscribe", {"user": "on-neo", "channel": channel})
        await on_neo.events.wait("server_subscribed")
        await api(neoevents, "subscribe", {"user": "on-cf", "channel": channel})
        await on_cf.events.wait("server_subscribed")
        await api(neoevents, "unsubscribe", {"user": "on-cf", "channel": channel})
        await on_cf.events.wait("server_unsubscribed")
        # Disconnect through the other server's API.
        await api(centrifugo, "disconnect", {"user": "on-neo", "disconnect": {"code": 4501, "reason": "bye"}})
        [gone] = await on_neo.events.wait("disconnected")
        assert gone.code == 4501
        await api(neoevents, "disconnect", {"user": "on-cf", "disconnect": {"code": 4502, "reason": "bye"}})
        [gone] = await on_cf.events.wait("disconnected")
        assert gone.code == 4502
