"""The WebSocket layer (transport/websocket.py) driven byte by byte, with a sans-I/O client as the peer.

The echo connection (transport/echo.py) is the real connection with an echoing session, so these tests
check framing, fragmentation, UTF-8 validation, control frames and the closing handshake of the endpoint
clients use, without sockets.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from neoevents.config import Config
from neoevents.metrics import Metrics
from neoevents.protocol.codes import DISCONNECT_SHUTDOWN, Disconnect
from neoevents.transport.echo import EchoConnection
from neoevents.transport.flusher import Flusher

pytestmark = pytest.mark.asyncio


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.aborted = False
        self.eof_written = False
        self.writes = 0

    def write(self, data: Any) -> None:
        self.out += data
        self.writes += 1

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high_water = high


class FakeNode:
    def __init__(self, **config: Any) -> None:
        self.config = Config(allowed_origins=("*",), **config)
        self.metrics = Metrics()


class Peer:
    """A client state machine wired to an echo connection."""

    def __init__(self, **config: Any) -> None:
        self.transport = FakeTransport()
        loop = asyncio.get_running_loop()
        self.conn = EchoConnection(FakeNode(**config), Flusher(loop), self.transport)  # type: ignore[arg-type]
        self.client = ClientProtocol(parse_uri("ws://localhost/test/echo"), max_size=None)
        request = self.client.connect()
        self.client.send_request(request)
        self.client.data_to_send()  # the HTTP layer has parsed the head; the connection gets its headers
        headers = {name.lower(): value for name, value in request.headers.raw_items()}
        self.conn.start("GET", headers, "", b"")
        self._pump()
        [response] = self.client.events_received()
        assert isinstance(response, Response) and response.status_code == 101

    def _pump(self) -> None:
        if self.transport.out:
            data, self.transport.out = bytes(self.transport.out), bytearray()
            self.client.receive_data(data)

    async def send(self, *frames: Frame | bytes, chunks: int = 1) -> list[Frame]:
        """Send frames (or raw bytes) in one write, or split into ``chunks`` writes; the frames sent back."""
        wire = b"".join(f if isinstance(f, bytes) else f.serialize(mask=True, extensions=[]) for f in frames)
        size = max(1, -(-len(wire) // chunks))
        for start in range(0, len(wire), size):
            self.conn.data_received(wire[start : start + size])
        await asyncio.sleep(0)  # the flusher writes once per loop iteration
        await asyncio.sleep(0)
        self._pump()
        return [event for event in self.client.events_received() if isinstance(event, Frame)]


def text(data: bytes | str, fin: bool = True, opcode: Opcode = Opcode.TEXT) -> Frame:
    return Frame(opcode, data.encode() if isinstance(data, str) else data, fin)


def close_code(frames: list[Frame]) -> int | None:
    for frame in frames:
        if frame.opcode is Opcode.CLOSE:
            return Close.parse(frame.data).code
    return None


async def test_text_and_binary_messages_are_echoed_in_kind() -> None:
    peer = Peer()
    frames = await peer.send(text("hello"), Frame(Opcode.BINARY, b"\x00\xff"))
    assert [(f.opcode, f.data) for f in frames] == [(Opcode.TEXT, b"hello"), (Opcode.BINARY, b"\x00\xff")]


async def test_fragmented_message_with_a_ping_in_between_gets_the_pong_first() -> None:
    peer = Peer()
    frames = await peer.send(text("frag1", fin=False), Frame(Opcode.PING, b"p"), text("frag2", opcode=Opcode.CONT))
    assert [(f.opcode, f.data) for f in frames] == [(Opcode.PONG, b"p"), (Opcode.TEXT, b"frag1frag2")]


async def test_a_message_before_a_ping_is_answered_before_the_pong() -> None:
    peer = Peer()
    frames = await peer.send(text("first"), Frame(Opcode.PING, b"p"))
    assert [f.opcode for f in frames] == [Opcode.TEXT, Opcode.PONG]


async def test_close_in_the_middle_of_a_fragmented_message_is_a_normal_close() -> None:
    peer = Peer()
    frames = await peer.send(text("frag1", fin=False), Frame(Opcode.CLOSE, Close(1000, "").serialize()))
    assert close_code(frames) == 1000
    assert peer.transport.closed


async def test_invalid_utf8_in_one_frame_is_1007() -> None:
    peer = Peer()
    frames = await peer.send(text(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"))
    assert close_code(frames) == 1007


async def test_a_failed_connection_is_half_closed_so_the_peer_reads_the_close_frame() -> None:
    """Closing with unread input would reset the TCP connection and could destroy the close frame."""
    peer = Peer(websocket_message_size_limit=100)
    frames = await peer.send(Frame(Opcode.BINARY, b"z" * 200))
    assert close_code(frames) == 1009
    assert peer.transport.eof_written and not peer.transport.closed
    assert await peer.send(text("still sending")) == [], "what the peer still sends is discarded"
    peer.conn.eof_received()  # the peer closes its side: asyncio then closes the transport


async def test_invalid_utf8_in_a_fragment_fails_before_the_message_ends() -> None:
    peer = Peer()
    frames = await peer.send(text("valid ", fin=False), text(b"\xff", fin=False, opcode=Opcode.CONT))
    assert close_code(frames) == 1007, "fail fast: the final fragment has not been sent"


async def test_utf8_sequence_split_across_fragments_is_valid() -> None:
    peer = Peer()
    euro = "€".encode()
    frames = await peer.send(text(euro[:1], fin=False), text(euro[1:], opcode=Opcode.CONT))
    assert [(f.opcode, f.data) for f in frames] == [(Opcode.TEXT, euro)]


async def test_frames_before_a_protocol_error_are_still_handled() -> None:
    peer = Peer()
    bad = bytes([0x80 | 0x40 | 0x1, 0x80 | 1, 0, 0, 0, 0]) + b"x"  # RSV1 set without an extension
    frames = await peer.send(text("ok"), bad, Frame(Opcode.PING, b""))
    assert [f.opcode for f in frames] == [Opcode.TEXT, Opcode.CLOSE]
    assert frames[0].data == b"ok" and close_code(frames) == 1002


async def test_frames_after_invalid_utf8_are_not_handled() -> None:
    peer = Peer()
    frames = await peer.send(text("ok"), text(b"\xff"), text("never"))
    assert [f.opcode for f in frames] == [Opcode.TEXT, Opcode.CLOSE]
    assert close_code(frames) == 1007


async def test_unexpected_continuation_and_nested_message_are_protocol_errors() -> None:
    assert close_code(await Peer().send(text("x", opcode=Opcode.CONT))) == 1002
    assert close_code(await Peer().send(text("a", fin=False), text("b"))) == 1002


async def test_message_over_the_limit_is_1009_also_when_fragmented() -> None:
    peer = Peer(websocket_message_size_limit=1000)
    assert close_code(await peer.send(text("x" * 600, fin=False), text("y" * 600, opcode=Opcode.CONT))) == 1009
    assert close_code(await Peer(websocket_message_size_limit=1000).send(Frame(Opcode.BINARY, b"z" * 1001))) == 1009


async def test_frames_split_into_many_reads_are_reassembled() -> None:
    peer = Peer()
    frames = await peer.send(text("a" * 300, fin=False), text("b" * 300, opcode=Opcode.CONT), chunks=97)
    assert [f.data for f in frames] == [b"a" * 300 + b"b" * 300]


async def test_client_close_is_echoed_and_the_connection_ends() -> None:
    peer = Peer()
    frames = await peer.send(Frame(Opcode.CLOSE, Close(1001, "bye").serialize()))
    assert close_code(frames) == 1001
    assert peer.transport.closed
    assert peer.client.state in (State.CLOSING, State.CLOSED)


# ---- the closing handshake without the state machine ----------------------------------------------------


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (4001, "ünïcode bye"), (None, "")])
async def test_client_close_is_echoed_without_the_state_machine(code: int | None, reason: str) -> None:
    peer = Peer()
    peer.client.send_close(code, reason)
    [close] = peer.client.data_to_send()
    frames = await peer.send(text("before"), close, text("never"))
    payload = b"" if code is None else Close(code, reason).serialize()
    assert [(f.opcode, f.data) for f in frames] == [(Opcode.TEXT, b"before"), (Opcode.CLOSE, payload)]
    assert peer.transport.closed
    assert peer.conn._ws is None
    # The client got its own close back: for it the handshake is complete.
    assert peer.client.close_sent is not None and peer.client.close_rcvd == peer.client.close_sent


async def test_client_close_echo_comes_after_what_is_queued() -> None:
    peer = Peer()
    peer.conn.send_frame(peer.conn.frame(b"queued"))
    frames = await peer.send(Frame(Opcode.CLOSE, Close(1001, "").serialize()))
    assert [f.opcode for f in frames] == [Opcode.TEXT, Opcode.CLOSE]
    assert frames[0].data == b"queued"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x03", 1002),  # one byte: no room for a status code
        ((1005).to_bytes(2, "big"), 1002),  # a code that may not be sent
        ((2999).to_bytes(2, "big"), 1002),  # an unassigned code
        ((1000).to_bytes(2, "big") + b"\xff", 1007),  # a reason that is not UTF-8
    ],
    ids=["short", "1005", "2999", "bad-utf8"],
)
async def test_invalid_client_close_fails_through_the_state_machine(payload: bytes, code: int) -> None:
    peer = Peer()
    frames = await peer.send(Frame(Opcode.CLOSE, payload))
    assert close_code(frames) == code
    assert peer.conn._ws is not None


async def test_server_close_is_completed_by_the_client_close_without_the_state_machine() -> None:
    peer = Peer()
    peer.conn.send_frame(peer.conn.frame(b"last"))
    peer.conn.close(DISCONNECT_SHUTDOWN)
    peer._pump()
    frames = [f for f in peer.client.events_received() if isinstance(f, Frame)]
    assert [f.opcode for f in frames] == [Opcode.TEXT, Opcode.CLOSE]
    assert Close.parse(frames[1].data) == Close(DISCONNECT_SHUTDOWN.code, DISCONNECT_SHUTDOWN.reason)
    assert not peer.transport.closed  # waiting for the client's close frame
    # The client answers (its state machine echoes our close); data frames it sent before are not handled.
    echo = b"".join(peer.client.data_to_send())
    frames = await peer.send(text("ignored"), echo)
    assert frames == []
    assert peer.transport.closed
    assert peer.conn._ws is None


async def test_server_close_discards_what_the_fast_path_does_not_take() -> None:
    peer = Peer()
    peer.conn.close(DISCONNECT_SHUTDOWN)
    frames = await peer.send(Frame(Opcode.PING, b"p"), text("x"))
    assert frames[-1].opcode is Opcode.CLOSE and len(frames) == 1  # no pong, no echo
    assert not peer.transport.closed and peer.conn._ws is None
    peer.conn.eof_received()  # the client goes away without its close frame
    assert peer.transport.closed


@pytest.mark.parametrize("library", [False, True], ids=["by-hand", "state-machine"])
async def test_a_long_close_reason_is_cut_to_fit_a_control_frame(library: bool) -> None:
    peer = Peer()
    if library:
        await peer.send(Frame(Opcode.PING, b""))  # builds the state machine
        peer.client.events_received()
    peer.conn.close(Disconnect(4500, "é" * 100))  # 200 bytes of UTF-8
    peer._pump()
    [frame] = [f for f in peer.client.events_received() if isinstance(f, Frame)]
    close = Close.parse(frame.data)
    assert close.code == 4500
    assert close.reason == "é" * 61  # 122 bytes: whole characters within 123


# ---- the fast path for plain data frames and the hand-over to the state machine -------------------------


async def test_plain_data_frames_never_build_the_state_machine() -> None:
    peer = Peer(websocket_message_size_limit=300_000)
    for size in (0, 1, 125, 126, 65535, 65536, 200_000):  # every length encoding
        frames = await peer.send(Frame(Opcode.BINARY, bytes(size)), text("é" * 3))
        assert [(f.opcode, len(f.data)) for f in frames] == [(Opcode.BINARY, size), (Opcode.TEXT, 6)]
    assert peer.conn._ws is None


@pytest.mark.parametrize("chunks", [2, 3, 7, 40])
async def test_a_frame_split_across_reads_hands_over_at_a_frame_boundary(chunks: int) -> None:
    peer = Peer()
    messages = [f"message {i}" for i in range(10)]
    frames = await peer.send(*(text(m) for m in messages), Frame(Opcode.PING, b"p"), text("last"), chunks=chunks)
    assert [f.data for f in frames] == [m.encode() for m in messages] + [b"p", b"last"]
    assert peer.conn._ws is not None
    frames = await peer.send(text("after"))  # from now on the state machine parses everything
    assert [f.data for f in frames] == [b"after"]


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"\x81\x05hello", 1002),  # unmasked client frame
        (b"\xc1\x80\x00\x00\x00\x00", 1002),  # reserved bit without an extension
        (b"\x83\x80\x00\x00\x00\x00", 1002),  # reserved opcode
    ],
    ids=["unmasked", "rsv1", "opcode-3"],
)
async def test_frames_the_fast_path_refuses_fail_through_the_state_machine(raw: bytes, code: int) -> None:
    peer = Peer()
    frames = await peer.send(text("ok"), raw, text("never"))
    assert frames[0].data == b"ok"
    assert close_code(frames) == code
    assert b"never" not in [f.data for f in frames]


async def test_over_limit_frame_after_plain_frames_is_1009() -> None:
    peer = Peer(websocket_message_size_limit=1000)
    frames = await peer.send(text("x" * 1000), text("y" * 1001), text("never"))
    assert frames[0].data == b"x" * 1000
    assert close_code(frames) == 1009
    assert b"never" not in [f.data for f in frames]


async def test_invalid_utf8_on_the_fast_path_stops_at_that_frame() -> None:
    peer = Peer()
    frames = await peer.send(text("ok"), text(b"\xff"), text("never"))
    assert [f.data for f in frames if f.opcode is Opcode.TEXT] == [b"ok"]
    assert close_code(frames) == 1007


async def test_frames_queued_in_one_loop_iteration_go_out_in_one_write() -> None:
    peer = Peer()
    writes = peer.transport.writes
    for payload in (b"one", b"two", b"three"):
        peer.conn.send_frame(peer.conn.frame(payload))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert peer.transport.writes == writes + 1
    peer._pump()
    assert [f.data for f in peer.client.events_received() if isinstance(f, Frame)] == [b"one", b"two", b"three"]


async def test_a_client_over_the_queue_limit_is_disconnected_with_3008() -> None:
    peer = Peer(client_queue_max_size=4096)
    assert peer.transport.high_water == 4096  # the event loop calls pause_writing past this many unsent bytes
    peer.conn.send_frame(peer.conn.frame(b"queued before"))
    peer.conn.pause_writing()
    peer._pump()
    frames = [f for f in peer.client.events_received() if isinstance(f, Frame)]
    assert [f.data for f in frames if f.opcode is Opcode.TEXT] == [b"queued before"]
    assert close_code(frames) == 3008
    peer.conn.pause_writing()  # already closing: nothing more is sent
    assert not peer.transport.out


async def test_a_final_write_over_the_queue_limit_keeps_the_close_code() -> None:
    peer = Peer(client_queue_max_size=4096)
    transport = peer.transport
    plain_write = transport.write

    def write(data: Any) -> None:  # as the event loop does: pause_writing once unsent output passes the limit
        plain_write(data)
        if len(transport.out) > 4096:
            peer.conn.pause_writing()

    transport.write = write  # type: ignore[method-assign]
    peer.conn.send_frame(peer.conn.frame(b"x" * 5000))
    peer.conn.close(DISCONNECT_SHUTDOWN)
    peer._pump()
    frames = [f for f in peer.client.events_received() if isinstance(f, Frame)]
    assert [len(f.data) for f in frames if f.opcode is Opcode.TEXT] == [5000]
    assert close_code(frames) == DISCONNECT_SHUTDOWN.code
    assert peer.conn._node.metrics.disconnects == {DISCONNECT_SHUTDOWN.code: 1}


async def test_end_of_stream_without_a_closing_handshake_closes_without_the_state_machine() -> None:
    peer = Peer()
    await peer.send(text("hello"))
    assert peer.conn._ws is None
    peer.conn.eof_received()
    assert peer.transport.closed
    assert peer.conn._ws is None
    peer.conn.send_frame(peer.conn.frame(b"too late"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not peer.transport.out


async def test_end_of_stream_inside_a_split_frame_goes_through_the_state_machine() -> None:
    peer = Peer()
    wire = text("hello").serialize(mask=True, extensions=[])
    peer.conn.data_received(wire[:3])
    peer.conn.eof_received()
    assert peer.conn._ws is not None
    assert peer.transport.closed
