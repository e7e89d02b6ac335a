"""Channel batches (hub.SharedFrames): a busy channel's publications of one loop iteration are queued once
for all its subscribers, framed once (several to a WebSocket frame) and written as the same bytes to each,
without changing what any connection receives or in which order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from neoevents.hub import MERGED_FRAME_MAX, SHARED_MIN, Hub
from neoevents.protocol import client_pb2
from neoevents.protocol.codec import JSON, PROTOBUF
from neoevents.protocol.codes import DISCONNECT_SHUTDOWN
from neoevents.protocol.messages import Publication
from neoevents.transport.echo import EchoConnection
from neoevents.transport.flusher import Flusher
from tests.unit.test_hub import Sub
from tests.unit.test_websocket import FakeNode, FakeTransport

pb: Any = client_pb2  # generated code, untyped

pytestmark = pytest.mark.asyncio

HANDSHAKE = {
    "host": "localhost",
    "upgrade": "websocket",
    "connection": "Upgrade",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
    "sec-websocket-version": "13",
}


class RecordingTransport(FakeTransport):
    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[bytes] = []

    def write(self, data: Any) -> None:
        super().write(data)
        self.chunks.append(data)


@dataclass(eq=False)
class Client:
    transport: EchoConnection


def _connection(flusher: Flusher, protobuf: bool = False) -> tuple[EchoConnection, RecordingTransport]:
    transport = RecordingTransport()
    conn = EchoConnection(FakeNode(), flusher, transport)  # type: ignore[arg-type]
    conn.start("GET", HANDSHAKE, "", b"")
    transport.out.clear()
    transport.chunks.clear()
    if protobuf:
        conn.codec, conn.framing = PROTOBUF, 1
    return conn, transport


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of the unmasked server frames in ``data``."""
    out, pos = [], 0
    while pos < len(data):
        opcode, size = data[pos] & 0x0F, data[pos + 1] & 0x7F
        pos += 2
        if size >= 126:
            width = 2 if size == 126 else 8
            size, pos = int.from_bytes(data[pos : pos + width], "big"), pos + width
        out.append((opcode, data[pos : pos + size]))
        pos += size
    return out


def _received(transport: RecordingTransport) -> list[Any]:
    """The publications' ``n`` (or the raw payload of anything else) in the order the peer gets them (JSON
    messages of one frame are separated by newlines)."""
    out: list[Any] = []
    for opcode, payload in _frames(bytes(transport.out)):
        if opcode == 0x8:
            out.append("close")
            continue
        for line in payload.split(b"\n"):
            if line.startswith(b'{"push"'):
                out.append(msgspec.json.decode(line)["push"]["pub"]["data"]["n"])
            else:
                out.append(line)
    return out


class Setup:
    def __init__(self, n: int, channel: str = "ch") -> None:
        self.flusher = Flusher(asyncio.get_running_loop())
        self.hub = Hub()
        self.clients: list[Client] = []
        self.transports: list[RecordingTransport] = []
        for _ in range(n):
            self.subscribe(channel)

    def subscribe(self, channel: str, client: Client | None = None) -> Client:
        if client is None:
            conn, transport = _connection(self.flusher)
            client = Client(conn)
            self.clients.append(client)
            self.transports.append(transport)
        self.hub.add(channel, client, Sub())  # type: ignore[arg-type]
        return client

    def publish(self, n: int, channel: str = "ch", pad: int = 0) -> int:
        data = msgspec.Raw(msgspec.json.encode({"n": n, "pad": "x" * pad} if pad else {"n": n}))
        return self.hub.broadcast_publication(channel, Publication(data=data, offset=n))

    async def flush(self) -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0)


async def test_publications_of_one_iteration_are_one_write_of_the_same_bytes_for_every_subscriber() -> None:
    s = Setup(SHARED_MIN + 2)
    for n in (1, 2, 3):
        assert s.publish(n) == SHARED_MIN + 2
    await s.flush()
    assert all(t.chunks for t in s.transports)
    first = s.transports[0].chunks[0]
    assert all(len(t.chunks) == 1 and t.chunks[0] is first for t in s.transports)  # framed once, shared
    assert len(_frames(first)) == 1  # the three publications in one frame
    assert all(_received(t) == [1, 2, 3] for t in s.transports)
    # The next iteration starts a new batch.
    s.publish(4)
    await s.flush()
    assert all(_received(t) == [1, 2, 3, 4] for t in s.transports)


async def test_a_merged_frame_carries_at_most_the_limit() -> None:
    s = Setup(SHARED_MIN)
    for n in range(10):
        s.publish(n, pad=MERGED_FRAME_MAX // 4)
    s.publish(10, pad=2 * MERGED_FRAME_MAX)  # bigger than a merged frame: alone in its own
    await s.flush()
    frames = _frames(bytes(s.transports[0].out))
    assert [payload.count(b"\n") + 1 for _, payload in frames] == [3, 3, 3, 1, 1]
    assert all(len(payload) <= MERGED_FRAME_MAX for _, payload in frames[:-1])
    assert all(_received(t) == list(range(11)) for t in s.transports)


async def test_protobuf_messages_of_one_frame_are_length_delimited() -> None:
    s = Setup(0)
    for _ in range(SHARED_MIN):
        conn, transport = _connection(s.flusher, protobuf=True)
        s.subscribe("ch", Client(conn))
        s.transports.append(transport)
    s.publish(1)
    s.publish(2)
    await s.flush()
    [(opcode, payload)] = _frames(bytes(s.transports[0].out))
    assert opcode == 0x2
    replies = _protobuf_messages(payload)
    assert [msgspec.json.decode(r.push.pub.data)["n"] for r in replies] == [1, 2]


def _protobuf_messages(data: bytes) -> list[Any]:
    out, pos = [], 0
    while pos < len(data):
        size = shift = 0
        while True:
            b = data[pos]
            pos += 1
            size |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        out.append(pb.Reply.FromString(data[pos : pos + size]))
        pos += size
    return out


async def test_something_else_queued_for_one_subscriber_keeps_its_order() -> None:
    s = Setup(SHARED_MIN)
    s.publish(1)
    s.clients[3].transport.send(b"reply")
    s.publish(2)
    s.publish(3)
    await s.flush()
    assert _received(s.transports[3]) == [1, b"reply", 2, 3]
    assert all(_received(t) == [1, 2, 3] for k, t in enumerate(s.transports) if k != 3)


async def test_a_subscriber_added_during_the_iteration_gets_only_what_follows() -> None:
    s = Setup(SHARED_MIN)
    s.publish(1)
    late = s.subscribe("ch")
    assert s.publish(2) == SHARED_MIN + 1
    await s.flush()
    assert _received(s.transports[s.clients.index(late)]) == [2]
    assert all(_received(t) == [1, 2] for t in s.transports[:SHARED_MIN])


async def test_a_subscriber_removed_during_the_iteration_gets_nothing_after() -> None:
    s = Setup(SHARED_MIN + 1)
    s.publish(1)
    s.hub.remove("ch", s.clients[0])  # type: ignore[arg-type]
    s.publish(2)
    await s.flush()
    assert _received(s.transports[0]) == [1]
    assert all(_received(t) == [1, 2] for t in s.transports[1:])


async def test_a_connection_closing_during_the_iteration_sends_what_it_had_then_its_close() -> None:
    s = Setup(SHARED_MIN + 1)
    s.publish(1)
    s.clients[0].transport.close(DISCONNECT_SHUTDOWN)
    s.publish(2)
    await s.flush()
    assert _received(s.transports[0]) == [1, "close"]
    assert all(_received(t) == [1, 2] for t in s.transports[1:])


async def test_publications_of_two_channels_keep_their_order_on_a_connection_subscribed_to_both() -> None:
    s = Setup(SHARED_MIN, channel="a")
    both = s.clients[0]
    for _ in range(SHARED_MIN - 1):
        s.subscribe("b")
    s.subscribe("b", both)
    s.publish(1, "a")
    s.publish(2, "b")
    s.publish(3, "a")
    s.publish(4, "b")
    await s.flush()
    assert _received(s.transports[0]) == [1, 2, 3, 4]
    assert all(_received(t) == [1, 3] for t in s.transports[1:SHARED_MIN])
    assert all(_received(t) == [2, 4] for t in s.transports[SHARED_MIN:])


async def test_subscribers_of_mixed_formats_each_get_their_own_encoding() -> None:
    s = Setup(SHARED_MIN)
    conn, transport = _connection(s.flusher, protobuf=True)
    s.subscribe("ch", Client(conn))
    s.publish(1)
    s.publish(2)
    await s.flush()
    assert all(_received(t) == [1, 2] for t in s.transports)
    payloads = [payload for _, payload in _frames(bytes(transport.out))]
    assert len(payloads) == 2 and all(not p.startswith(b"{") for p in payloads)  # Protobuf, not JSON
    assert conn.codec is PROTOBUF and s.clients[0].transport.codec is JSON


async def test_a_small_channel_is_not_batched() -> None:
    s = Setup(SHARED_MIN - 1)
    s.publish(1)
    s.publish(2)
    await s.flush()
    assert all(_received(t) == [1, 2] for t in s.transports)
    assert not s.hub._shared


async def test_a_batch_no_subscriber_took_collects_nothing() -> None:
    s = Setup(SHARED_MIN)
    for client in s.clients:
        client.transport.close(DISCONNECT_SHUTDOWN)  # closing, still in the hub until the connection drops
    s.publish(1)
    s.publish(2)
    assert not s.hub._shared
    await s.flush()
    assert all(_received(t) == ["close"] for t in s.transports)


async def test_a_publication_read_between_slices_of_a_big_flush_joins_the_subscribers_not_yet_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("neoevents.transport.flusher.SLICE", 4)
    s = Setup(SHARED_MIN + 2)  # ten subscribers: three slices
    s.publish(1)
    await s.flush()  # held once for the batch, then the first slice
    assert [len(t.chunks) for t in s.transports] == [1] * 4 + [0] * 6
    s.publish(2)  # read while the rest of the round waits
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    # The first four got the second publication on its own; the others got both in one write (the same
    # bytes for each of them, and what the first four got in two).
    assert [len(t.chunks) for t in s.transports] == [2] * 4 + [1] * 6
    joined = s.transports[4].chunks[0]
    assert all(t.chunks == [joined] for t in s.transports[5:]) and joined == s.transports[0].out
    assert all(_received(t) == [1, 2] for t in s.transports)
