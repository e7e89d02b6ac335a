"""The session state machine driven with bytes through an in-memory transport (no sockets)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from neoevents.client import Client
from neoevents.config import Config, NamespaceOptions
from neoevents.engines.memory import MemoryBroker, MemoryPresenceManager
from neoevents.node import TICK, Node, _due
from neoevents.protocol import codes
from tests.support.memory import MemoryTransport, settle

SECRET = "unit-test-secret-0123456789abcdef0123"


def make_node() -> Node:
    chat = NamespaceOptions(
        name="chat",
        presence=True,
        join_leave=True,
        history_size=10,
        history_ttl=60,
        force_recovery=True,
        allow_subscribe_for_client=True,
        allow_history_for_subscriber=True,
        allow_presence_for_subscriber=True,
    )
    config = Config(token_hmac_secret_key=SECRET, namespaces=(chat,))
    return Node(config, MemoryBroker(), MemoryPresenceManager())


def token(user: str = "alice", **claims: object) -> str:
    return jwt.encode({"sub": user, **claims}, SECRET)


@pytest.fixture
async def node() -> Node:
    n = make_node()
    await n.broker.start(n)
    return n


async def feed(client: Client, *lines: str) -> None:
    client.on_message("\n".join(lines).encode())
    await settle()


async def test_connect_subscribe_publish_history(node: Node) -> None:
    t = MemoryTransport()
    c = Client(node, t)
    await feed(c, f'{{"id":1,"connect":{{"token":"{token()}"}}}}', '{"id":2,"subscribe":{"channel":"chat:1"}}')
    connect, subscribe = t.replies()[:2]
    assert connect["id"] == 1 and connect["connect"]["pong"] is True  # type: ignore[index]
    assert subscribe["id"] == 2 and subscribe["subscribe"]["recoverable"] is True  # type: ignore[index]
    await node.publish("chat:1", b'{"n":1}')
    await settle()
    pushes = [r for r in t.replies() if "push" in r]
    pub = pushes[-1]["push"]["pub"]  # type: ignore[index]
    # The first publication of a stream tells subscribers its epoch.
    assert pub == {"data": {"n": 1}, "offset": 1, "epoch": subscribe["subscribe"]["epoch"]}  # type: ignore[index]
    await feed(c, '{"id":3,"history":{"channel":"chat:1","limit":-1}}')
    [history] = t.replies()
    assert [p["offset"] for p in history["history"]["publications"]] == [1]  # type: ignore[index]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"garbage", 3501),
        (b'{"id":1,"subscribe":{"channel":"chat:1"}}', 3501),
        (b'{"connect":{}}', 3501),
        (b"[]", 3501),
    ],
)
async def test_bad_first_frames_disconnect(node: Node, frame: bytes, code: int) -> None:
    t = MemoryTransport()
    c = Client(node, t)
    c.on_message(frame)
    await settle()
    assert t.closed is not None and t.closed.code == code


async def test_invalid_token_is_terminal_and_expired_token_is_an_error(node: Node) -> None:
    t = MemoryTransport()
    c = Client(node, t)
    await feed(c, '{"id":1,"connect":{"token":"not-a-jwt"}}')
    assert t.closed == codes.DISCONNECT_INVALID_TOKEN

    t2 = MemoryTransport()
    c2 = Client(node, t2)
    await feed(c2, f'{{"id":1,"connect":{{"token":"{token(exp=int(time.time()) - 60)}"}}}}')
    [reply] = t2.replies()
    assert reply["error"] == {"code": 109, "message": "token expired"}
    assert t2.closed is None
    # The reference server refuses any further command on that connection.
    await feed(c2, f'{{"id":2,"connect":{{"token":"{token()}"}}}}')
    assert t2.closed == codes.DISCONNECT_BAD_REQUEST


async def test_subscription_token_cannot_connect(node: Node) -> None:
    t = MemoryTransport()
    c = Client(node, t)
    await feed(c, f'{{"id":1,"connect":{{"token":"{token(channel="chat:1")}"}}}}')
    assert t.closed == codes.DISCONNECT_INVALID_TOKEN


async def test_alg_none_is_refused(node: Node) -> None:
    t = MemoryTransport()
    c = Client(node, t)
    unsigned = jwt.encode({"sub": "mallory"}, None, algorithm="none")  # type: ignore[arg-type]
    await feed(c, f'{{"id":1,"connect":{{"token":"{unsigned}"}}}}')
    assert t.closed == codes.DISCONNECT_INVALID_TOKEN


async def test_unsolicited_pong_is_a_bad_request(node: Node) -> None:
    t = MemoryTransport()
    c = Client(node, t)
    await feed(c, f'{{"id":1,"connect":{{"token":"{token()}"}}}}')
    await feed(c, "{}")
    assert t.closed == codes.DISCONNECT_BAD_REQUEST


async def test_missing_pong_disconnects_with_3012(node: Node) -> None:
    t = MemoryTransport()
    c = Client(node, t)
    await feed(c, f'{{"id":1,"connect":{{"token":"{token()}"}}}}')
    for _ in range(node._wheel_size + 1):  # one full turn of the ping wheel sends the ping
        node.tick()
    assert c.ping_sent > 0
    assert b"{}" in t.sent
    node._pongs[c] = 0.0  # the pong deadline has passed
    node.tick()
    assert t.closed == codes.DISCONNECT_NO_PONG


async def test_pings_are_spread_over_the_ticks_of_the_interval(node: Node) -> None:
    """Every connected client is pinged once per ping interval, and the pings are spread over its ticks."""
    assert node._wheel_size == round(node.config.ping_interval / TICK)
    transports = [MemoryTransport() for _ in range(500)]
    for t in transports:
        c = Client(node, t)
        c.on_message(f'{{"id":1,"connect":{{"token":"{token()}"}}}}'.encode())
        t.sent.clear()
    per_tick = []
    for _ in range(node._wheel_size):
        before = sum(len(t.sent) for t in transports)
        node.tick()
        per_tick.append(sum(len(t.sent) for t in transports) - before)
    assert [t.sent for t in transports] == [[b"{}"]] * len(transports)  # each pinged exactly once per turn
    # The first pings fall in the second half of the turn: on average 1/13 of the clients a tick there.
    assert max(per_tick) <= 3 * len(transports) / (node._wheel_size / 2)


async def test_a_ping_interval_of_zero_sends_no_pings() -> None:
    node = Node(Config(token_hmac_secret_key=SECRET, ping_interval=0), MemoryBroker(), MemoryPresenceManager())
    await node.broker.start(node)
    t = MemoryTransport()
    c = Client(node, t)
    await feed(c, f'{{"id":1,"connect":{{"token":"{token()}"}}}}')
    [connect] = t.replies()
    assert "ping" not in connect["connect"]  # type: ignore[operator]
    t.sent.clear()
    for _ in range(20):
        node.tick()
    assert t.sent == [] and c.ping_sent == 0


def test_due_deadlines_are_found_in_order_and_the_scan_stops_at_the_first_ahead() -> None:
    a, b, c = object(), object(), object()
    deadlines: dict[Any, float] = {a: 1.0, b: 2.0, c: 3.0}
    assert _due(deadlines, 0.5) == []
    assert _due(deadlines, 2.0) == [a, b]
    assert _due(deadlines, 9.0) == [a, b, c]


async def test_stale_connection_disconnects_with_3502(node: Node) -> None:
    t = MemoryTransport()
    c = Client(node, t)
    node._pending[c] = 0.0
    node.tick()
    assert t.closed == codes.DISCONNECT_STALE


async def test_subscription_expires_unless_refreshed(node: Node) -> None:
    t = MemoryTransport()
    c = Client(node, t)
    exp = int(time.time()) + 60
    sub_token = token(channel="chat:tok", exp=exp)
    await feed(c, f'{{"id":1,"connect":{{"token":"{token()}"}}}}')
    await feed(c, f'{{"id":2,"subscribe":{{"channel":"chat:tok","token":"{sub_token}"}}}}')
    replies = t.replies()
    assert any(r.get("subscribe", {}).get("expires") for r in replies), replies  # type: ignore[attr-defined]
    later = exp + node.config.client_expired_sub_close_delay + 1

    refreshed = token(channel="chat:tok", exp=exp + 3600)
    await feed(c, f'{{"id":3,"sub_refresh":{{"channel":"chat:tok","token":"{refreshed}"}}}}')
    node._expire_subscriptions(later)  # the refreshed subscription outlives the first deadline
    assert "chat:tok" in c.subs
    t.replies()

    node._expire_subscriptions(later + 3600)
    await settle()
    [push] = [r for r in t.replies() if "push" in r]
    assert push["push"] == {"channel": "chat:tok", "unsubscribe": {"code": 2501, "reason": "subscription expired"}}
    assert "chat:tok" not in c.subs and t.closed is None
