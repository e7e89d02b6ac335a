"""The session state machine driven with bytes through an in-memory transport (no sockets)."""

from __future__ import annotations

import asyncio
import time

import jwt
import msgspec
import pytest

from neoevents.client import Client
from neoevents.config import Config, NamespaceOptions
from neoevents.engines.memory import MemoryBroker, MemoryPresenceManager
from neoevents.node import Node
from neoevents.protocol import codes
from neoevents.protocol.codec import JSON, Codec

SECRET = "unit-test-secret-0123456789abcdef0123"


class MemoryTransport:
    """Collects what the session sends; frames are the payloads themselves."""

    def __init__(self, codec: Codec = JSON) -> None:
        self.codec = codec
        self.framing = 0
        self.sent: list[bytes] = []
        self.closed: codes.Disconnect | None = None

    def frame(self, payload: bytes) -> bytes:
        return payload

    def send(self, payload: bytes) -> None:
        self.sent.append(payload)

    def send_frame(self, frame: bytes) -> None:
        self.sent.append(frame)

    def close(self, disconnect: codes.Disconnect) -> None:
        self.closed = disconnect

    def replies(self) -> list[dict[str, object]]:
        out = [msgspec.json.decode(s) for s in self.sent]
        self.sent.clear()
        return out


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


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


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
    unsigned = jwt.encode({"sub": "mallory"}, None, algorithm="none")
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


async def test_stale_connection_disconnects_with_3502(node: Node) -> None:
    t = MemoryTransport()
    c = Client(node, t)
    node._pending[c] = 0.0
    node.tick()
    assert t.closed == codes.DISCONNECT_STALE
