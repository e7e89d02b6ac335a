"""Connection set-up and teardown: commands run in the receiving callback, and nothing of a connection waits for
the cycle collector to be freed."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator

import pytest

from neoevents.client import Client
from neoevents.node import Node
from neoevents.protocol import codes
from neoevents.transport.flusher import Flusher
from neoevents.transport.http import HttpProtocol, HttpRequest, HttpResponse
from neoevents.transport.websocket import WebSocketConnection
from tests.support.memory import MemoryTransport, settle
from tests.unit.test_session import make_node, token


@pytest.fixture
async def node() -> Node:
    n = make_node()
    await n.broker.start(n)
    return n


@pytest.fixture
def no_collection() -> Iterator[None]:
    """Cyclic garbage stays in memory while the test runs: what is freed was freed by reference counting."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _live(kind: type) -> int:
    return sum(1 for obj in gc.get_objects() if type(obj) is kind)


# ---- Node.run ------------------------------------------------------------------------------------------


async def test_run_completes_a_coroutine_that_never_waits_without_a_task(node: Node) -> None:
    steps: list[str] = []

    async def work() -> None:
        steps.append("ran")

    node.run(work())
    assert steps == ["ran"]  # before the callback returned
    assert not node._tasks


async def test_run_continues_as_a_task_after_the_first_wait(node: Node) -> None:
    steps: list[object] = []
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def work() -> None:
        steps.append("before")
        steps.append(await gate)
        await asyncio.sleep(0)
        steps.append("after")

    node.run(work())
    assert steps == ["before"] and len(node._tasks) == 1
    gate.set_result(7)
    await settle()
    assert steps == ["before", 7, "after"] and not node._tasks


async def test_run_lets_several_coroutines_wait_for_one_future(node: Node) -> None:
    shared: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    got: list[int] = []

    async def waits() -> None:
        got.append(await shared)

    for _ in range(3):
        node.run(waits())
    await asyncio.sleep(0)  # the tasks take over
    node.run(waits())
    shared.set_result(5)
    await settle()
    assert got == [5, 5, 5, 5] and not node._tasks


async def test_run_passes_exceptions_and_cancellation_through(node: Node, caplog: pytest.LogCaptureFixture) -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    seen: list[str] = []

    async def fails_at_once() -> None:
        raise ValueError("boom")

    async def fails_later() -> None:
        await gate
        raise KeyError("late")

    async def cancelled() -> None:
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    node.run(fails_at_once())
    node.run(fails_later())
    node.run(cancelled())
    gate.set_result(None)
    await settle()
    [task] = list(node._tasks)
    task.cancel()
    await settle()
    assert seen == ["cancelled"] and not node._tasks
    failures = [r for r in caplog.records if r.getMessage() == "background task failed"]
    assert [type(r.exc_info[1]) for r in failures if r.exc_info] == [ValueError, KeyError]


async def test_connect_and_subscribe_are_answered_in_the_receiving_callback(node: Node) -> None:
    t = MemoryTransport()
    c = Client(node, t)
    c.on_message(
        f'{{"id":1,"connect":{{"token":"{token()}"}}}}\n{{"id":2,"subscribe":{{"channel":"chat:a"}}}}'.encode()
    )
    assert [r["id"] for r in t.replies()] == [1, 2]
    assert not node._tasks


# ---- freeing ------------------------------------------------------------------------------------------


class _Transport:
    """Just enough of an asyncio transport for the HTTP protocol and the WebSocket connection."""

    def __init__(self) -> None:
        self.protocol: asyncio.BaseProtocol | None = None
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if name == "peername" else default

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        return None

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        return None

    def close(self) -> None:
        return None

    def abort(self) -> None:
        return None


UPGRADE = (
    b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def _masked(payload: bytes) -> bytes:
    """A final text frame from a client (zero mask)."""
    assert len(payload) < 65536
    return bytes((0x81, 0x80 | 126)) + len(payload).to_bytes(2, "big") + b"\0\0\0\0" + payload


async def _open(node: Node, flusher: Flusher, user: str) -> _Transport:
    transport = _Transport()

    def upgrade(tr: asyncio.Transport, path: str) -> WebSocketConnection:
        return WebSocketConnection(node, flusher, tr)

    http = HttpProtocol(_unused_handler, upgrade, "/connection/websocket", flusher, set())
    http.connection_made(transport)  # type: ignore[arg-type]
    http.data_received(UPGRADE)
    assert isinstance(transport.protocol, WebSocketConnection)
    exp = int(time.time()) + 3600
    transport.protocol.data_received(_masked(f'{{"id":1,"connect":{{"token":"{token(user, exp=exp)}"}}}}'.encode()))
    await settle()
    assert b'"id":1' in b"".join(transport.written)
    return transport


async def _unused_handler(request: HttpRequest) -> HttpResponse:  # pragma: no cover - no plain HTTP request here
    raise AssertionError("not an upgrade")


async def test_an_upgraded_connection_leaves_no_http_protocol_behind(node: Node, no_collection: None) -> None:
    before = _live(HttpProtocol)
    flusher = Flusher(asyncio.get_running_loop())
    transports = [await _open(node, flusher, f"u{i}") for i in range(3)]
    assert _live(HttpProtocol) == before
    assert all(isinstance(t.protocol, WebSocketConnection) for t in transports)


async def test_a_closed_connection_is_freed_without_a_collection(node: Node, no_collection: None) -> None:
    flusher = Flusher(asyncio.get_running_loop())
    before = _live(WebSocketConnection), _live(Client)
    transport = await _open(node, flusher, "alice")
    assert (_live(WebSocketConnection), _live(Client)) == (before[0] + 1, before[1] + 1)
    conn = transport.protocol
    assert isinstance(conn, WebSocketConnection)
    conn.connection_lost(None)
    transport.protocol = None  # as the event loop's transport lets go of its protocol
    del conn
    await settle()
    assert (_live(WebSocketConnection), _live(Client)) == before
    assert node._expiry  # its token expiry deadline is still queued, without holding the client


async def test_a_closed_client_sends_nothing_more(node: Node) -> None:
    t = MemoryTransport()
    c = Client(node, t)
    c.on_message(f'{{"id":1,"connect":{{"token":"{token()}"}}}}'.encode())
    t.replies()
    c.disconnect(codes.DISCONNECT_SHUTDOWN)
    assert t.closed == codes.DISCONNECT_SHUTDOWN
    assert c.transport is not t and c.transport.codec is t.codec
    c.send_reply(c.transport.codec.decode_commands(b'{"id":5}')[0][0])  # type: ignore[arg-type]
    node.tick()
    assert t.sent == []
