"""Publishers: how the coordinator injects publications into a target.

* :class:`HttpApiPublisher` — the Centrifugo server API (``POST /api/publish``, or ``/api/batch`` for several
  publications at once) over a few keep-alive connections with pipelined requests; responses are parsed
  with httptools and every reply is checked for an error.
* :class:`WsPublisher` — the floor servers: frames ``<channel>\\n<payload>`` on a ``/pub`` WebSocket.
* :class:`NatsPublisher` — ``PUB`` over the NATS client port.

``send(items)`` takes ``[(channel, payload), ...]``; it returns once the server acknowledged them where the
protocol has acknowledgements (HTTP), otherwise once they are handed to the kernel.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Protocol

import httptools

from bench import wire

ENCODED_CACHE = 1024  # requests an HTTP publisher keeps encoded for lists of publications sent again


class Publisher(Protocol):
    errors: int
    first_error: str

    async def send(self, items: list[tuple[str, bytes]]) -> None: ...

    async def close(self) -> None: ...


class _Flow(asyncio.Protocol):
    """Write-side flow control shared by the publishers."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._can_write.set()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    async def drain(self) -> None:
        await self._can_write.wait()


class _HttpConn(_Flow):
    def __init__(self) -> None:
        super().__init__()
        self._parser = httptools.HttpResponseParser(self)
        self._pending: deque[asyncio.Future[tuple[int, bytes]]] = deque()
        self._body: list[bytes] = []

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        while self._pending:
            fut = self._pending.popleft()
            if not fut.done():
                fut.set_exception(ConnectionError(f"HTTP connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self._body)
        self._body = []
        fut = self._pending.popleft()
        if not fut.done():
            fut.set_result((self._parser.get_status_code(), body))

    def request(self, raw: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        fut: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        if self.transport.is_closing():
            fut.set_exception(ConnectionError("HTTP connection closed"))
            return fut
        self._pending.append(fut)
        self.transport.write(raw)
        return fut


class HttpApiPublisher:
    """Centrifugo server API client: ``connections`` keep-alive connections, requests pipelined on them."""

    def __init__(self, host: str, port: int, api_key: str, connections: int = 4) -> None:
        self.host, self.port, self.api_key = host, port, api_key
        self._n = connections
        self._conns: list[_HttpConn] = []
        self._next = 0
        self.errors = 0
        self.first_error = ""
        self.requests = 0
        self._encoded: dict[int, tuple[list[tuple[str, bytes]], bytes]] = {}

    async def start(self) -> HttpApiPublisher:
        loop = asyncio.get_running_loop()
        for _ in range(self._n):
            _, conn = await loop.create_connection(_HttpConn, self.host, self.port)
            self._conns.append(conn)
        return self

    def _raw(self, method: str, body: bytes) -> bytes:
        head = (
            f"POST /api/{method} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nX-API-Key: {self.api_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    @staticmethod
    def body(items: list[tuple[str, bytes]]) -> tuple[str, bytes]:
        if len(items) == 1:
            channel, data = items[0]
            return "publish", b'{"channel":%s,"data":%s}' % (json.dumps(channel).encode(), data)
        commands = b",".join(
            b'{"publish":{"channel":%s,"data":%s}}' % (json.dumps(channel).encode(), data) for channel, data in items
        )
        return "batch", b'{"commands":[' + commands + b"]}"

    async def send(self, items: list[tuple[str, bytes]]) -> None:
        # A list sent again (the API scenario cycles through batches prepared once, so that building requests
        # does not bound the load generator) is encoded once; the entry keeps the list, so its id stays unique.
        cached = self._encoded.get(id(items))
        if cached is not None and cached[0] is items:
            await self._send_raw(cached[1])
            return
        method, body = self.body(items)
        raw = self._raw(method, body)
        if len(self._encoded) < ENCODED_CACHE:
            self._encoded[id(items)] = (items, raw)
        await self._send_raw(raw)

    async def request(self, method: str, body: bytes) -> None:
        await self._send_raw(self._raw(method, body))

    async def _send_raw(self, raw: bytes) -> None:
        conn = self._conns[self._next % self._n]
        self._next += 1
        await conn.drain()
        self.requests += 1
        try:
            status, reply = await conn.request(raw)
        except ConnectionError as exc:
            self._error(repr(exc))
            raise
        if status != 200 or b'"error"' in reply:
            self._error(f"HTTP {status}: {reply[:300]!r}")

    def _error(self, text: str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = text

    async def close(self) -> None:
        for conn in self._conns:
            if conn.transport is not None:
                conn.transport.close()


class _WsPubConn(_Flow):
    def __init__(self, ready: asyncio.Future[None]) -> None:
        super().__init__()
        self._ready = ready
        self._buf = b""

    def data_received(self, data: bytes) -> None:
        if self._ready.done():
            return
        self._buf += data
        if b"\r\n\r\n" in self._buf:
            if self._buf.startswith(b"HTTP/1.1 101"):
                self._ready.set_result(None)
            else:
                self._ready.set_exception(ConnectionError(self._buf[:200].decode(errors="replace")))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self._ready.done():
            self._ready.set_exception(ConnectionError(f"closed: {exc!r}"))


class WsPublisher:
    """A ``/pub`` WebSocket: one frame per publication, or with ``batched`` one frame per ``send``."""

    def __init__(self, host: str, port: int, path: str = "/pub", batched: bool = False) -> None:
        self.host, self.port, self.path, self.batched = host, port, path, batched
        self._conn: _WsPubConn | None = None
        self.errors = 0
        self.first_error = ""

    async def start(self) -> WsPublisher:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        _, self._conn = await loop.create_connection(lambda: _WsPubConn(ready), self.host, self.port)
        assert self._conn.transport is not None
        self._conn.transport.write(wire.upgrade_request(self.host, self.port, self.path))
        await asyncio.wait_for(ready, 10)
        return self

    async def send(self, items: list[tuple[str, bytes]]) -> None:
        conn = self._conn
        assert conn is not None and conn.transport is not None
        if conn.closed.done() or conn.transport.is_closing():
            self.errors += 1
            self.first_error = self.first_error or "publish connection closed"
            raise ConnectionError("publish connection closed")
        await conn.drain()
        if self.batched:
            conn.transport.write(wire.client_frame(b"\n".join(ch.encode() + b"\n" + data for ch, data in items)))
        else:
            conn.transport.write(b"".join(wire.client_frame(ch.encode() + b"\n" + data) for ch, data in items))

    async def close(self) -> None:
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()


class _NatsConn(_Flow):
    def __init__(self, ready: asyncio.Future[None]) -> None:
        super().__init__()
        self._ready = ready
        self.err = b""

    def data_received(self, data: bytes) -> None:
        if not self._ready.done() and data.startswith(b"INFO"):
            self._ready.set_result(None)
        if b"PING\r\n" in data and self.transport is not None:
            self.transport.write(b"PONG\r\n")
        if b"-ERR" in data and not self.err:
            self.err = data[:300]


class NatsPublisher:
    """``PUB`` over the NATS client protocol (TCP)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._conn: _NatsConn | None = None
        self.errors = 0
        self.first_error = ""

    async def start(self) -> NatsPublisher:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        _, self._conn = await loop.create_connection(lambda: _NatsConn(ready), self.host, self.port)
        await asyncio.wait_for(ready, 10)
        assert self._conn.transport is not None
        self._conn.transport.write(b'CONNECT {"verbose":false,"pedantic":false,"protocol":1}\r\n')
        return self

    async def send(self, items: list[tuple[str, bytes]]) -> None:
        conn = self._conn
        assert conn is not None and conn.transport is not None
        if conn.err:
            self.errors += 1
            self.first_error = self.first_error or conn.err.decode(errors="replace")
        if conn.closed.done() or conn.transport.is_closing():
            self.errors += 1
            self.first_error = self.first_error or "NATS connection closed"
            raise ConnectionError("NATS connection closed")
        await conn.drain()
        conn.transport.write(b"".join(b"PUB %s %d\r\n%s\r\n" % (ch.encode(), len(d), d) for ch, d in items))

    async def close(self) -> None:
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()
