"""Nodes on the Redis engine, in process, with in-memory client transports: what the node does while the
engine answers asynchronously (subscriptions in progress, failures, lost publications)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import jwt
import msgspec
import pytest

from neoevents.client import Client
from neoevents.config import Config, NamespaceOptions
from neoevents.engines.redis_engine import create_redis_engine
from neoevents.node import Node
from neoevents.protocol import codes
from tests.support.memory import MemoryTransport
from tests.support.redisnodes import redis_nodes
from tests.support.redisserver import RedisServer

SECRET = "redis-node-test-secret-0123456789abcdef"
CHAT = NamespaceOptions(
    name="chat",
    presence=True,
    history_size=1000,
    history_ttl=300,
    force_recovery=True,
    allow_subscribe_for_client=True,
)
PLAIN = NamespaceOptions(name="plain", allow_subscribe_for_client=True)


def token(user: str, **claims: object) -> str:
    return jwt.encode({"sub": user, **claims}, SECRET)


@pytest.fixture
async def nodes(redis_server: RedisServer) -> AsyncIterator[tuple[Node, Node]]:
    config = Config(
        token_hmac_secret_key=SECRET,
        namespaces=(CHAT, PLAIN),
        engine="redis",
        redis_address=(redis_server.address,),
        redis_prefix=f"n{uuid.uuid4().hex[:8]}",
    )
    async with redis_nodes(config) as (a, b):
        yield a, b


async def connect(node: Node, user: str = "u", **claims: object) -> tuple[Client, MemoryTransport]:
    transport = MemoryTransport()
    client = Client(node, transport)
    client.on_message(b'{"id":1,"connect":{"token":"%s"}}' % token(user, **claims).encode())
    await wait_for(lambda: any(r.get("id") == 1 for r in peek(transport)))
    return client, transport


def peek(transport: MemoryTransport) -> list[dict[str, Any]]:
    return [msgspec.json.decode(s) for s in transport.sent]


async def wait_for(condition: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def publications(replies: list[dict[str, Any]], channel: str) -> list[int]:
    """Offsets of the publications pushed in ``channel`` (0 for those without one)."""
    pushes = [r["push"] for r in replies if "push" in r]
    return [p["pub"].get("offset", 0) for p in pushes if p.get("channel") == channel and "pub" in p]


async def test_publications_during_a_subscribe_come_after_its_reply_once_and_in_order(nodes: tuple[Node, Node]) -> None:
    """Node B publishes one publication after another while a client subscribes on node A: whatever arrives
    before the subscribe reply is held and sent after it, without what the reply's position already covers."""
    a, b = nodes
    for attempt in range(8):
        channel = f"chat:race-{attempt}"
        await b.publish(channel, b'{"n":0}')
        client, transport = await connect(a, f"user{attempt}")

        async def publish_some(ch: str = channel) -> None:
            for i in range(1, 31):
                await b.publish(ch, b'{"n":%d}' % i)

        publisher = asyncio.get_running_loop().create_task(publish_some())
        for _ in range(attempt):
            await asyncio.sleep(0)  # start the subscribe at a different moment each time
        client.on_message(b'{"id":2,"subscribe":{"channel":"%s"}}' % channel.encode())
        await publisher

        def complete(t: MemoryTransport = transport, ch: str = channel) -> bool:
            replies = peek(t)
            subscribed = [r for r in replies if r.get("id") == 2]
            return bool(subscribed) and (subscribed[0]["subscribe"]["offset"] == 31 or 31 in publications(replies, ch))

        await wait_for(complete)
        await asyncio.sleep(0.05)  # nothing more may come
        replies = peek(transport)
        index = next(i for i, r in enumerate(replies) if r.get("id") == 2)
        assert not publications(replies[:index], channel), "a publication came before the subscribe reply"
        start = replies[index]["subscribe"]["offset"]
        assert publications(replies[index:], channel) == list(range(start + 1, 32))
        client.disconnect(codes.DISCONNECT_CONNECTION_CLOSED)


async def test_a_subscribe_that_fails_is_undone(nodes: tuple[Node, Node], redis_server: RedisServer) -> None:
    a, _ = nodes
    client, transport = await connect(a)
    redis_server.kill()
    client.on_message(b'{"id":2,"subscribe":{"channel":"chat:down"}}')
    await wait_for(lambda: any(r.get("id") == 2 for r in peek(transport)))
    [reply] = [r for r in peek(transport) if r.get("id") == 2]
    assert reply["error"]["code"] == 100
    assert client.subs == {} and a.hub.num_subscribers("chat:down") == 0 and not a._joining
    redis_server.start()
    shards = a.broker.shards  # type: ignore[attr-defined]
    await wait_for(lambda: all(s.commands is not None and s.pubsub is not None for s in shards))
    client.on_message(b'{"id":3,"subscribe":{"channel":"chat:down"}}')
    await wait_for(lambda: any(r.get("id") == 3 for r in peek(transport)))
    [again] = [r for r in peek(transport) if r.get("id") == 3]
    assert "subscribe" in again and a.hub.num_subscribers("chat:down") == 1


async def test_lost_publications_resubscribe_positioned_subscribers_only(
    nodes: tuple[Node, Node], redis_server: RedisServer
) -> None:
    """A new epoch (FLUSHALL) seen on PUB/SUB: the positioned subscription is told 2500, the one without
    history keeps going, and a server-side positioned subscription is disconnected with 3010."""
    a, b = nodes
    client, transport = await connect(a, "v")
    client.on_message(b'{"id":2,"subscribe":{"channel":"chat:e"}}')
    client.on_message(b'{"id":3,"subscribe":{"channel":"plain:e"}}')
    _, server_transport = await connect(a, "w", channels=["chat:e"])
    await wait_for(lambda: a.hub.num_subscribers("chat:e") == 2 and a.hub.num_subscribers("plain:e") == 1)
    await b.publish("chat:e", b"{}")
    await wait_for(lambda: publications(peek(transport), "chat:e") == [1])
    redis_server.command("FLUSHALL")
    await b.publish("chat:e", b"{}")  # offset 1 of a new epoch
    await b.publish("plain:e", b"{}")
    await wait_for(lambda: server_transport.closed is not None)
    assert server_transport.closed is not None and server_transport.closed.code == 3010
    await wait_for(lambda: any("unsubscribe" in r.get("push", {}) for r in peek(transport)))
    [unsubscribe] = [r["push"] for r in peek(transport) if "unsubscribe" in r.get("push", {})]
    assert unsubscribe == {"channel": "chat:e", "unsubscribe": {"code": 2500, "reason": "insufficient state"}}
    assert list(client.subs) == ["plain:e"]
    await wait_for(lambda: publications(peek(transport), "plain:e") == [0])


async def test_the_nodes_of_a_cluster_see_each_other(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    await connect(b, "on-b")
    await wait_for(lambda: len(a.cluster.nodes()) == 2, timeout=10)
    listed = {n["uid"]: n for n in a.cluster.nodes()}
    assert list(listed) == [a.cluster.uid, b.cluster.uid]  # this node first
    assert listed[b.cluster.uid]["num_clients"] in (0, 1)  # as of b's last announcement
    await wait_for(lambda: {n["uid"]: n for n in a.cluster.nodes()}[b.cluster.uid]["num_clients"] == 1, timeout=10)


async def test_server_side_actions_reach_the_clients_of_every_node(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    client, transport = await connect(b, "far")
    await a.cluster.subscribe("far", "plain:x")
    await wait_for(lambda: any(r.get("push", {}).get("subscribe") is not None for r in peek(transport)))
    assert "plain:x" in client.subs
    await a.cluster.unsubscribe("far", "plain:x")
    await wait_for(lambda: "plain:x" not in client.subs)
    await a.cluster.refresh("far", expire_at=2_000_000_000)
    await wait_for(lambda: client.exp == 2_000_000_000)
    await a.cluster.disconnect("far", codes.Disconnect(4000, "bye"))
    await wait_for(lambda: transport.closed is not None)
    assert transport.closed == codes.Disconnect(4000, "bye")
    # A node carries out its own commands once: the one that sent them ignores their echo.
    _, own_transport = await connect(a, "near")
    await a.cluster.unsubscribe("near", "plain:none")
    await asyncio.sleep(0.2)
    pushes = [r for r in peek(own_transport) if "push" in r]
    assert len(pushes) == 1


async def test_channels_are_counted_on_every_node(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    for node in (a, b):
        client, transport = await connect(node, "counted")
        client.on_message(b'{"id":2,"subscribe":{"channel":"plain:counted"}}')
        await wait_for(lambda t=transport: any(r.get("id") == 2 for r in peek(t)))
    await wait_for(lambda: len(a.cluster.nodes()) == 2 and len(b.cluster.nodes()) == 2, timeout=10)
    assert await a.cluster.channels("plain:*") == {"plain:counted": 2}
    assert await b.cluster.channels("nothing*") == {}


async def test_a_node_that_shuts_down_leaves_the_cluster_at_once(redis_server: RedisServer) -> None:
    config = Config(
        token_hmac_secret_key=SECRET, engine="redis", redis_address=(redis_server.address,), redis_prefix="gone"
    )
    staying, leaving = [Node(config, *create_redis_engine(config)) for _ in range(2)]
    for node in (staying, leaving):
        await node.start()
    try:
        await wait_for(lambda: len(staying.cluster.nodes()) == 2, timeout=10)
        await leaving.shutdown()
        await wait_for(lambda: len(staying.cluster.nodes()) == 1, timeout=2)  # well before NODE_EXPIRY
        assert await staying.cluster.channels() == {}  # no survey waiting for the node that left
    finally:
        await staying.shutdown()
