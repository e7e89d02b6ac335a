"""HTTP/1.1 server protocol (httptools parser) serving the API, health, metrics and the WebSocket upgrade.

One protocol instance per TCP connection. Requests on a keep-alive connection are answered in order, each
where it was parsed unless its handler has to wait; the answers made in one loop iteration go out in one
write. Reading pauses while the client does not read its answers or while ``MAX_PIPELINED`` of its requests
wait for their turn. A WebSocket upgrade hands the parsed headers to
:class:`~neoevents.transport.websocket.WebSocketConnection`, which answers the handshake and takes over the
transport.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Coroutine
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import httptools

from neoevents.eager import run_eagerly
from neoevents.ratelimit import retry_after_header
from neoevents.transport.flusher import Flusher
from neoevents.transport.proxies import TrustedProxies
from neoevents.transport.websocket import WebSocketConnection

log = logging.getLogger("neoevents.http")

MAX_HEAD = 65536
MAX_BODY = 16 * 1024 * 1024
MAX_PIPELINED = 64  # requests waiting for their turn on one connection before reading pauses
LINGER = 2.0  # seconds a refused connection may keep sending (discarded) before it is dropped


@dataclass(slots=True)
class HttpRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes = b""
    remote: str = ""


@dataclass(slots=True)
class HttpResponse:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]
# Counts a WebSocket connection attempt from an address: 0.0 admits it, else seconds until one would be; an
# awaitable when the count is kept outside the process (the Redis engine's shared budgets).
Admit = Callable[[str], float | Awaitable[float]]


_STATUS_LINES: dict[int, str] = {status.value: f"HTTP/1.1 {status.value} {status.phrase}" for status in HTTPStatus}


_OK_JSON = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "


def render_response(resp: HttpResponse, keep_alive: bool) -> bytes:
    if resp.status == 200 and keep_alive and not resp.headers and resp.content_type == "application/json":
        # The usual API answer, without building the head line by line.
        return b"%s%d\r\n\r\n%s" % (_OK_JSON, len(resp.body), resp.body)
    lines = [_STATUS_LINES.get(resp.status) or f"HTTP/1.1 {resp.status} "]
    if resp.content_type:
        lines.append(f"Content-Type: {resp.content_type}")
    lines.append(f"Content-Length: {len(resp.body)}")
    for name, value in resp.headers.items():
        lines.append(f"{name}: {value}")
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + resp.body


class HttpProtocol(asyncio.Protocol):
    """Parses requests and dispatches them; see the module docstring.

    The parser calls back into the protocol, so the two form a reference cycle: it is broken (the parser
    dropped) when the connection is upgraded or lost, so that the protocol is freed at once rather than by
    a garbage collection.
    """

    __slots__ = (
        "_admit",
        "_admitting",
        "_body",
        "_body_size",
        "_busy",
        "_closed",
        "_completed",
        "_connections",
        "_flusher",
        "_handler",
        "_head_bytes",
        "_headers",
        "_in_head",
        "_keep_alive",
        "_out",
        "_parser",
        "_proxies",
        "_read_paused",
        "_remote",
        "_requests",
        "_serving",
        "_upgrade",
        "_url",
        "_write_paused",
        "_ws_paths",
        "transport",
    )

    def __init__(
        self,
        handler: Handler,
        upgrade: Callable[[asyncio.Transport, str], WebSocketConnection],
        websocket_path: str | Collection[str],
        flusher: Flusher,
        connections: set[HttpProtocol],
        admit: Admit | None = None,
        proxies: TrustedProxies | None = None,
    ) -> None:
        self._handler = handler
        self._admit = admit
        self._admitting: asyncio.Task[None] | None = None  # an upgrade waiting for a shared admission count
        self._proxies = proxies or None
        self._upgrade = upgrade
        self._ws_paths = (
            websocket_path
            if isinstance(websocket_path, frozenset)
            else frozenset((websocket_path,) if isinstance(websocket_path, str) else websocket_path)
        )
        self._flusher = flusher
        self._connections = connections
        self.transport: asyncio.Transport | None = None
        self._parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._requests: list[HttpRequest] = []
        self._busy = False
        self._serving: asyncio.Task[None] | None = None  # the requests being answered, once they had to wait
        self._closed = False
        self._remote: str | None = None  # the peer's address, looked up when first needed
        self._in_head = True  # until the first request head is complete
        self._completed = False  # a request ended in the chunk being parsed
        self._head_bytes = 0
        self._keep_alive: list[bool] = []
        self._out: list[bytes] = []  # responses not yet written (see flush)
        self._write_paused = False  # the transport's buffer is full: the client is not reading its answers
        self._read_paused = False  # by _flow(): the client waits until it reads answers or they are made

    # ---- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._connections.add(self)

    @property
    def remote(self) -> str:
        """The client's IP address ("" when unknown): the peer's, or behind a trusted proxy the one its headers
        name for the current request (see :mod:`~neoevents.transport.proxies`)."""
        if self._remote is None:
            peer = self.transport.get_extra_info("peername") if self.transport is not None else None
            self._remote = str(peer[0]) if peer else ""
        if self._proxies is not None:
            return self._proxies.client(self._remote, self._headers)
        return self._remote

    def pause_writing(self) -> None:
        self._write_paused = True
        self._flow()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._flow()

    def _flow(self) -> None:
        """Read only while the client reads its answers and few of its requests wait: a client that pipelines
        without reading cannot make the server queue without bound."""
        pause = self._write_paused or len(self._requests) >= MAX_PIPELINED
        if pause == self._read_paused or self._parser is None or self._closed or self.transport is None:
            return  # (an upgrade waiting for admission pauses reading on its own)
        self._read_paused = pause
        if pause:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._parser = None
        self._connections.discard(self)

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if self._closed or parser is None:
            return  # refused (what still arrives is discarded), or handed over
        self._completed = False
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0] if exc.args else len(data)
            self._on_upgrade(data, int(offset))
        except httptools.HttpParserError:
            self._fail(400)
        if self._in_head and not self._closed:
            # A head still incomplete after this chunk: bound it however it is split (the parser keeps
            # partial header values in memory until they are complete). When a request ended in this chunk,
            # the incomplete head began after it: its bytes here are not known, and counting begins with the
            # next chunk (so a head may reach MAX_HEAD plus one read before it is refused).
            if self._completed:
                self._head_bytes = 0
            else:
                self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                self._fail(431)

    # ---- httptools callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        self._in_head = True
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_HEAD:
            raise httptools.HttpParserError("url too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        if len(self._headers) > 100:
            raise httptools.HttpParserError("too many headers")

    def on_headers_complete(self) -> None:
        self._in_head = False

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > MAX_BODY:
            raise httptools.HttpParserError("body too large")
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._completed = True
        parser = self._parser
        assert parser is not None  # called by the parser
        if parser.should_upgrade():
            return
        url = httptools.parse_url(self._url)
        request = HttpRequest(
            method=parser.get_method().decode("latin-1"),
            path=(url.path or b"/").decode("latin-1"),
            query=(url.query or b"").decode("latin-1"),
            headers=self._headers,
            body=b"".join(self._body),
            remote=self.remote,
        )
        self._requests.append(request)
        self._keep_alive.append(parser.should_keep_alive())
        if len(self._requests) >= MAX_PIPELINED:
            self._flow()
        if not self._busy:
            self._busy = True
            # Answered right here unless the handler has to wait (then the rest runs as a task).
            run_eagerly(self._serve(), self._spawn, log)

    # ---- dispatch ------------------------------------------------------------------------------

    async def _serve(self) -> None:
        try:
            while self._requests and not self._closed:
                request = self._requests.pop(0)
                keep_alive = self._keep_alive.pop(0)
                if self._read_paused and not self._write_paused:
                    self._flow()
                try:
                    response = await self._handler(request)
                except Exception:
                    log.exception("unhandled error serving %s %s", request.method, request.path)
                    response = HttpResponse(500, b'{"error":{"code":100,"message":"internal server error"}}')
                if self.transport is None or self._closed:
                    return
                # Responses to pipelined requests answered in the same loop iteration go out in one write.
                out = self._out
                out.append(render_response(response, keep_alive))
                if not keep_alive:
                    self.flush()
                    self._closed = True  # what still arrives is discarded
                    self.transport.close()
                    return
                if len(out) == 1:
                    self._flusher.mark(self)
        finally:
            self._busy = False

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._serving = asyncio.get_running_loop().create_task(coro)

    def flush(self) -> None:
        """Write the responses made since the last flush (called by the flusher, or before closing)."""
        out = self._out
        if not out:
            return
        self._out = []
        if self.transport is not None and not self._closed:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _on_upgrade(self, data: bytes, offset: int) -> None:
        assert self.transport is not None and self._parser is not None
        rest = data[offset:]  # the head ends in this chunk: anything after it is already WebSocket data
        url = httptools.parse_url(self._url)
        path = (url.path or b"/").decode("latin-1")
        query = (url.query or b"").decode("latin-1")
        if path not in self._ws_paths or self._headers.get("upgrade", "").lower() != "websocket":
            self._fail(404)
            return
        method = self._parser.get_method().decode("latin-1")
        if self._admit is not None:
            wait = self._admit(self.remote)
            if not isinstance(wait, int | float):
                # Counted elsewhere: hold the connection (nothing more is read) until the answer comes.
                self._parser = None
                self.transport.pause_reading()
                self._admitting = asyncio.get_running_loop().create_task(
                    self._upgrade_when_admitted(wait, method, path, query, rest)
                )
                return
            if wait > 0:
                self._fail(429, {"Retry-After": retry_after_header(wait)})
                return
        self._finish_upgrade(method, path, query, rest)

    async def _upgrade_when_admitted(
        self, admitted: Awaitable[float], method: str, path: str, query: str, rest: bytes
    ) -> None:
        try:
            wait = await admitted
        except Exception:
            log.exception("connection attempt not counted")
            wait = 0.0
        if self._closed or self.transport is None:
            return
        self.transport.resume_reading()
        if wait > 0:
            self._fail(429, {"Retry-After": retry_after_header(wait)})
            return
        self._finish_upgrade(method, path, query, rest)

    def _finish_upgrade(self, method: str, path: str, query: str, rest: bytes) -> None:
        assert self.transport is not None
        self.flush()  # answers to requests before the upgrade go first
        if self._read_paused:
            self._read_paused = False
            self.transport.resume_reading()
        self._connections.discard(self)
        self._parser = None  # the connection is the WebSocket's from here on
        conn = self._upgrade(self.transport, path)
        self.transport.set_protocol(conn)
        conn.start(method, self._headers, query, rest)

    def _fail(self, status: int, headers: dict[str, str] | None = None) -> None:
        if self.transport is not None and not self._closed:
            self.flush()  # answers to the requests before this one go first
            self._closed = True
            body = HTTPStatus(status).phrase.encode() + b"\n"
            response = HttpResponse(status, body, "text/plain", headers or {})
            transport = self.transport
            transport.write(render_response(response, keep_alive=False))
            if transport.can_write_eof():
                # The client may still be sending (an oversized head, a body): closing now with unread data
                # would reset the connection and could destroy the response before the client reads it.
                # Half-close, discard what still arrives, and drop the connection when the client closes
                # or after a grace period.
                transport.write_eof()
                asyncio.get_running_loop().call_later(LINGER, transport.abort)
            else:
                transport.close()

    def shutdown(self) -> None:
        """Close an idle keep-alive connection; one serving a request closes when it is answered."""
        if self.transport is not None and not self._busy:
            self.flush()
            self.transport.close()
