"""The WebSocket connection: an asyncio protocol around the sans-I/O ``websockets`` state machine.

Almost every frame a client sends is a complete, unfragmented, masked text or binary frame: those are
unmasked and delivered directly. So is the usual end of a connection: a valid close frame from the client is
echoed, and a close frame of ours is written by hand and completed by the client's. Anything else (pings,
fragments, a frame split across reads, reserved bits, unmasked, over-limit or invalid frames) engages
:class:`websockets.server.ServerProtocol`, which from then on parses every byte of the connection, answers
pings, enforces the message size limit (close 1009) and runs the closing handshake. The state machine is
built only then: most connections never need one, which saves its construction and memory.

Complete messages are passed to the session (:class:`~neoevents.client.Client`). Outgoing data frames bypass
the library: fan-out hands us frames framed once for every subscriber, and we queue them and write once per
loop iteration (:class:`~neoevents.transport.flusher.Flusher`). A connection whose unsent output exceeds the
queue limit is closed with 3008, so a client that does not read cannot hold memory or slow anyone else down.
"""

from __future__ import annotations

import asyncio
import codecs
import fnmatch
import logging
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ProtocolError
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - the C extension ships in the wheels
    from websockets.utils import apply_mask

from neoevents.client import Client
from neoevents.protocol import codes
from neoevents.protocol.codec import JSON, PROTOBUF, Codec
from neoevents.transport.flusher import Flusher
from neoevents.transport.frames import close_frame, ws_frame
from neoevents.transport.handshake import forbidden, handshake

if TYPE_CHECKING:
    from typing import TypeAlias

    from neoevents.hub import SharedFrames
    from neoevents.node import Node

    # What a connection has queued for its next write: one frame or batch as is, several in a list.
    Pending: TypeAlias = bytes | SharedFrames | list[bytes | SharedFrames]

log = logging.getLogger("neoevents.websocket")
# The sans-I/O state machine logs every opened connection at INFO; keep that out of the server log.
_protocol_log = logging.getLogger("neoevents.websocket.protocol")
_protocol_log.setLevel(logging.WARNING)

SUBPROTOCOL_JSON = "centrifuge-json"
SUBPROTOCOL_PROTOBUF = "centrifuge-protobuf"
CLOSE_GRACE = 2.0  # seconds to wait for the peer's close frame before dropping the TCP connection
_UTF8_DECODER = codecs.getincrementaldecoder("utf-8")


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class _ServerProtocol(ServerProtocol):
    """The library's state machine, closing over-limit messages with 1009 and no reason, like the reference."""

    def fail(self, code: int, reason: str = "") -> None:
        super().fail(code, "" if code == 1009 else reason)

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.CLOSE:
            # RFC 6455 §5.4: control frames may come in the middle of a fragmented message, and a close there
            # ends the connection normally. The library would fail it with 1002 ("incomplete fragmented
            # message"); forget the unfinished message instead (Autobahn 7.1.5).
            self.current_size = None
        super().recv_frame(frame)


def _joined(pending: Pending) -> bytes:
    """The bytes of a connection's queued output (a channel batch is framed once for all its subscribers)."""
    if type(pending) is bytes:
        return pending
    if type(pending) is list:
        return b"".join([item if type(item) is bytes else item.data() for item in pending])  # type: ignore[union-attr]
    return pending.data()  # type: ignore[union-attr]


def origin_allowed(origin: str | None, allowed: tuple[str, ...], host: str | None = None) -> bool:
    """No Origin header means a non-browser client (allowed). Otherwise the Origin must match one of the
    ``allowed`` patterns; with no patterns configured, only a same-origin request (Origin host = Host) passes."""
    if origin is None:
        return True
    origin = origin.lower()
    if not allowed:
        return host is not None and urlsplit(origin).netloc == host.lower()
    return any(p == "*" or fnmatch.fnmatchcase(origin, p.lower()) for p in allowed)


class WebSocketConnection(asyncio.Protocol):
    __slots__ = (
        "_abort_handle",
        "_close_sent",
        "_closing",
        "_flusher",
        "_frag",
        "_frag_text",
        "_max_size",
        "_node",
        "_pending",
        "_shared",
        "_utf8",
        "_ws",
        "client",
        "codec",
        "framing",
        "transport",
    )

    def __init__(self, node: Node, flusher: Flusher, transport: asyncio.Transport) -> None:
        self._node = node
        self._flusher = flusher
        self.transport = transport
        # The handshake is answered by transport.handshake; the library's state machine is built on demand.
        self._ws: _ServerProtocol | None = None
        self._max_size = node.config.websocket_message_size_limit or None
        self.codec: Codec = JSON
        self.framing = 0
        self.client: Client | None = None
        # Output queued for the next flush: one frame as is (the common case, and no GC-tracked container per
        # connection per fan-out), several in a list.
        self._pending: Pending | None = None
        # The channel batch (hub.SharedFrames) that ends the queue while it may still grow: anything else
        # queued after it closes it, so that it cannot grow past what was queued later.
        self._shared: SharedFrames | None = None
        # The event loop tells us (pause_writing) when unsent output passes the client queue limit.
        transport.set_write_buffer_limits(high=node.config.client_queue_max_size)
        self._closing = False
        self._close_sent = False  # our close frame went out without the state machine (see close())
        self._frag: list[bytes] | None = None
        self._frag_text = False
        self._utf8: codecs.IncrementalDecoder | None = None
        self._abort_handle: asyncio.TimerHandle | None = None

    # ---- handshake -----------------------------------------------------------------------------

    def start(self, method: str, headers: dict[str, str], query: str, rest: bytes) -> None:
        """Answer the opening handshake of an already parsed request head (header names lower-case), then
        feed any bytes that followed it."""
        if not origin_allowed(headers.get("origin"), self._node.config.allowed_origins, headers.get("host")):
            self._node.metrics.auth_failure("origin_not_allowed")
            result = forbidden("Forbidden origin\n")
        else:
            result = handshake(method, headers, (SUBPROTOCOL_PROTOBUF, SUBPROTOCOL_JSON))
        self.transport.write(result.response)
        if result.status != 101:
            self._closing = True
            self.transport.close()
            return
        if self._wants_protobuf(query, result.subprotocol):
            self.codec = PROTOBUF
            self.framing = 1
        self._session_opened()
        if rest:
            self.data_received(rest)

    def _session_opened(self) -> None:
        """The handshake succeeded: start the protocol session."""
        self.client = Client(self._node, self)

    @staticmethod
    def _wants_protobuf(query: str, subprotocol: str | None) -> bool:
        if subprotocol == SUBPROTOCOL_PROTOBUF:
            return True
        if not query:
            return False
        params = parse_qs(query)
        return "protobuf" in params.get("format", ()) or "protobuf" in params.get("cf_protocol", ())

    # ---- incoming ------------------------------------------------------------------------------

    def _library(self) -> _ServerProtocol:
        """The state machine, built the first time a frame needs it (it starts at a frame boundary, with no
        fragmented message in progress: the fast path only takes complete, final data frames)."""
        ws = self._ws
        if ws is None:
            ws = self._ws = _ServerProtocol(state=State.OPEN, logger=_protocol_log, max_size=self._max_size)
        return ws

    def data_received(self, data: bytes) -> None:
        if self._ws is None:
            pos = self._fast_frames(data)
            if pos == len(data) or self._close_sent:
                return  # after our close frame, whatever the fast path does not take is discarded
            data = data[pos:]
        ws = self._library()
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.PING or event.opcode is Opcode.CLOSE:
                    # Write the library's answer (pong, close) after what earlier frames produced and before
                    # what later frames will, so the peer sees them in the order it sent the frames.
                    self._write_library_output()
                elif not self._on_frame(event):
                    break  # this connection failed on that frame: what follows it is not processed
        self._write_library_output()

    def _fast_frames(self, data: bytes) -> int:
        """Deliver the complete, final, masked text/binary frames at the start of ``data``; returns how many
        bytes were consumed (the rest, from a frame boundary, is the state machine's)."""
        pos = 0
        end = len(data)
        limit = self._max_size
        while end - pos >= 6:  # the smallest masked frame
            b0 = data[pos]
            if b0 != 0x81 and b0 != 0x82:  # FIN, no reserved bits, text or binary
                if b0 == 0x88 and self._fast_close(data, pos):
                    return end  # nothing after a close frame is processed
                break
            b1 = data[pos + 1]
            if not b1 & 0x80:  # unmasked: a protocol error the state machine reports
                break
            n = b1 & 0x7F
            head = pos + 2
            if n == 126:
                n = int.from_bytes(data[head : head + 2], "big")
                head += 2
            elif n == 127:
                if end - head < 8:
                    break
                n = int.from_bytes(data[head : head + 8], "big")
                head += 8
            start = head + 4
            stop = start + n
            if stop > end or (limit is not None and n > limit):
                break
            payload = apply_mask(data[start:stop], data[head:start])
            text = b0 == 0x81
            if text and not _valid_utf8(payload):
                self._library().fail(1007, "invalid UTF-8")
                self._write_library_output()
                return end  # the connection failed: nothing after this frame is processed
            pos = stop
            self._deliver(payload, text)
        return pos

    def _fast_close(self, data: bytes, pos: int) -> bool:
        """The closing handshake without the state machine, for a complete, masked close frame at ``pos``
        with a valid payload; False (nothing done) for anything else, which the state machine then handles.

        The peer's close is answered with its own code and reason, as the state machine would, after what is
        already queued; the TCP connection is closed once that is written. After our own close (see
        :meth:`close`), the peer's close frame completes the handshake."""
        b1 = data[pos + 1]
        n = b1 & 0x7F
        if not b1 & 0x80 or n > 125 or pos + 6 + n > len(data):
            return False
        payload = apply_mask(data[pos + 6 : pos + 6 + n], data[pos + 2 : pos + 6])
        if not self._close_sent:
            try:
                Close.parse(payload)  # checks the status code and that the reason is UTF-8
            except (ProtocolError, UnicodeDecodeError):
                return False
            self.send_frame(close_frame(payload))
            self.flush()
        self._closing = True
        self.transport.close()
        return True

    def _on_frame(self, frame: Frame) -> bool:
        """Handle a data frame; False when it failed the connection (invalid UTF-8).

        The state machine has already refused bad sequences (a continuation without a start, a new message
        inside a fragmented one), reserved bits and opcodes, and over-limit sizes; it yields no frame after
        such a failure, so every frame seen here came before it and is handled.
        """
        op = frame.opcode
        if not (op is Opcode.TEXT or op is Opcode.BINARY or op is Opcode.CONT):
            return True
        payload = bytes(frame.data)
        if op is not Opcode.CONT:
            if frame.fin:
                if op is Opcode.TEXT and not _valid_utf8(payload):
                    self._library().fail(1007, "invalid UTF-8")
                    return False
                self._deliver(payload, op is Opcode.TEXT)
                return True
            self._frag = [payload]
            self._frag_text = op is Opcode.TEXT
            self._utf8 = _UTF8_DECODER() if self._frag_text else None
        elif self._frag is not None:
            self._frag.append(payload)
        else:  # pragma: no cover - the state machine never yields an unexpected continuation
            return True
        if self._utf8 is not None:
            # Validate fragmented text as it arrives, so a bad sequence fails the connection at once.
            try:
                self._utf8.decode(payload, frame.fin)
            except UnicodeDecodeError:
                self._frag = self._utf8 = None
                self._library().fail(1007, "invalid UTF-8")
                return False
        if frame.fin:
            data = b"".join(self._frag)
            self._frag = self._utf8 = None
            self._deliver(data, self._frag_text)
        return True

    def _deliver(self, data: bytes, text: bool) -> None:
        """A complete, valid message (text already checked to be UTF-8)."""
        client = self.client
        if client is not None and not self._closing:
            client.on_message(data)

    def eof_received(self) -> bool | None:
        if self._ws is None:
            # The peer went away without a closing handshake (1006) and no frame is half-read (the fast path
            # hands a split frame to the state machine): nothing to parse or answer, so none is built for it.
            self._closing = True
            self.transport.close()
            return None
        self._library().receive_eof()
        self._write_library_output()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._pending = None
        self._shared = None
        if self._abort_handle is not None:
            self._abort_handle.cancel()
            self._abort_handle = None
        if self.client is not None:
            self.client.on_closed()

    # ---- outgoing (ClientTransport) ------------------------------------------------------------

    def frame(self, payload: bytes) -> bytes:
        return ws_frame(payload, self.codec.binary)

    def send(self, payload: bytes) -> None:
        self.send_frame(ws_frame(payload, self.codec.binary))

    def send_frame(self, frame: bytes) -> None:
        if not self._closing:
            self._queue(frame)

    def send_shared(self, batch: SharedFrames) -> bool:
        if self._closing:
            return False
        if self._pending is None:  # the usual case, once per subscriber of a busy channel: kept lean
            self._pending = self._shared = batch
            self._flusher.mark_holding(self)
            return True
        self._queue(batch)
        self._shared = batch
        self._flusher.hold()
        return True

    def _queue(self, item: bytes | SharedFrames) -> None:
        pending = self._pending
        if pending is None:
            self._pending = item
            self._flusher.mark(self)
            return
        shared = self._shared
        if shared is not None:
            shared.close()  # it must not grow past what is queued after it
            self._shared = None
        if type(pending) is list:
            pending.append(item)
        else:
            self._pending = [pending, item]  # type: ignore[list-item]

    def flush(self) -> None:
        pending = self._pending
        if pending is None or self._closing:
            return
        self._pending = None
        self._shared = None
        self.transport.write(_joined(pending))

    def pause_writing(self) -> None:
        """More than the client queue limit is waiting to be sent: the client does not keep up."""
        if self._closing:
            return
        self._node.metrics.disconnect(codes.DISCONNECT_SLOW.code)
        if self.client is not None:
            self.client.disconnect(codes.DISCONNECT_SLOW)
        else:
            self.close(codes.DISCONNECT_SLOW)

    def resume_writing(self) -> None:
        pass

    def close(self, disconnect: codes.Disconnect) -> None:
        """Send what is queued, then a close frame with the disconnect code, then drop the connection."""
        if self._closing:
            return
        self._node.metrics.disconnect(disconnect.code)
        pending = self._pending
        self._pending = None
        self._shared = None
        # Closing from here on: should this last write pass the queue limit, the event loop's pause_writing
        # must not replace the code this connection is closing with by 3008.
        self._closing = True
        if pending is not None:
            self.transport.write(_joined(pending))
        reason = codes.close_reason(disconnect.reason)  # also for commands from other nodes
        ws = self._ws
        if ws is None:
            # No frame has needed the state machine: the close frame is written here, and the fast path
            # takes the peer's answer.
            self._close_sent = True
            self.transport.write(close_frame(Close(disconnect.code, reason).serialize()))
        else:
            if ws.state is State.OPEN:
                ws.send_close(disconnect.code, reason)
            self._write_library_output()
        loop = asyncio.get_running_loop()
        self._abort_handle = loop.call_later(CLOSE_GRACE, self.transport.abort)

    def _write_library_output(self) -> None:
        ws = self._ws
        if ws is None:
            return
        chunks = ws.data_to_send()
        if not chunks:
            return
        eof = False
        out: list[bytes] = []
        for chunk in chunks:
            if chunk:
                out.append(chunk)
            else:
                eof = True
        if out:
            if self._pending is not None and not self._closing:
                for chunk in out:
                    self.send_frame(chunk)
                self.flush()
            else:
                self.transport.write(b"".join(out))
        if eof and ws.state is not State.CLOSED and ws.close_rcvd is None and self.transport.can_write_eof():
            # We failed the connection (protocol error, invalid UTF-8, message too big) while the peer may still
            # be sending: closing the socket with unread data would reset the connection, and the peer could
            # lose our close frame. Half-close instead, discard what still arrives, and drop the connection
            # when the peer closes its side or after CLOSE_GRACE.
            self._closing = True
            self.transport.write_eof()
            if self._abort_handle is None:
                self._abort_handle = asyncio.get_running_loop().call_later(CLOSE_GRACE, self.transport.abort)
        elif eof or ws.state is State.CLOSED:
            self._closing = True
            self.transport.close()
        elif ws.state is State.CLOSING and not self._closing:
            # The peer started the closing handshake (or the parser failed): stop sending data.
            self._closing = True
            loop = asyncio.get_running_loop()
            self._abort_handle = loop.call_later(CLOSE_GRACE, self.transport.abort)
