"""Wiring: build a node from a configuration and serve it over HTTP and WebSocket on one port."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable
from typing import Final

from neoevents.api.executor import Executor
from neoevents.api.http import ApiEndpoint
from neoevents.config import Config
from neoevents.engines.memory import MemoryBroker, MemoryPresenceManager
from neoevents.exceptions import ListenError
from neoevents.metrics import CONTENT_TYPE_LATEST
from neoevents.node import Node
from neoevents.ports import claim_port
from neoevents.transport.echo import TEST_ECHO_PATH, EchoConnection
from neoevents.transport.flusher import Flusher
from neoevents.transport.http import Admit, HttpProtocol, HttpRequest, HttpResponse
from neoevents.transport.proxies import TrustedProxies
from neoevents.transport.websocket import WebSocketConnection
from neoevents.workermetrics import SiblingMetrics, WorkerSlot

log = logging.getLogger("neoevents.server")

WEBSOCKET_PATH = "/connection/websocket"

#: Listening sockets per server, all on the same address and port (``SO_REUSEPORT``). libuv accepts one
#: connection per listening socket per loop iteration (it relies on level-triggered polling for the next one),
#: so with a single socket a connection storm is taken in one connection per iteration: every iteration's fixed
#: costs are paid per connection and nothing is batched, while hundreds of finished handshakes wait in the
#: accept queue. The kernel spreads new connections over the sockets, so an iteration accepts up to this many.
LISTENERS: Final = 16


def build_node(config: Config) -> Node:
    """Create the node with the engine the configuration names (memory unless ``engine`` is ``redis``)."""
    if config.engine == "redis":
        from neoevents.engines.redis_engine import create_redis_engine

        broker, presence = create_redis_engine(config)
        log.info("Redis engine: %s, prefix %r", ", ".join(str(s.address) for s in broker.shards), config.redis_prefix)
        return Node(config, broker, presence)
    return Node(config, MemoryBroker(), MemoryPresenceManager())


class Server:
    """A node served on one port. As one of several workers (``slot``, see :mod:`neoevents.workers`) it
    listens with ``SO_REUSEPORT`` and its ``/metrics`` adds up every worker's figures."""

    def __init__(self, config: Config, node: Node | None = None, slot: WorkerSlot | None = None) -> None:
        self.config = config
        self.node = node or build_node(config)
        self._siblings = SiblingMetrics(slot, self.node.metrics) if slot is not None else None
        self.executor = Executor(self.node)
        self.api = ApiEndpoint(config, self.executor)
        self._servers: list[asyncio.Server] = []
        self._http: set[HttpProtocol] = set()
        self._flusher: Flusher | None = None
        self._stopped = asyncio.Event()

    async def start(self, host: str, port: int) -> int:
        """Start listening; returns the bound port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        flusher = self._flusher = Flusher(loop)
        await self.node.start()
        if self._siblings is not None:
            await self._siblings.start()
        node = self.node

        def upgrade(transport: asyncio.Transport, path: str) -> WebSocketConnection:
            if path == TEST_ECHO_PATH:
                return EchoConnection(node, flusher, transport)
            return WebSocketConnection(node, flusher, transport)

        ws_paths = [WEBSOCKET_PATH]
        if self.config.test_echo_endpoint:
            log.warning("test_echo_endpoint is on: serving a WebSocket echo at %s (tests only)", TEST_ECHO_PATH)
            ws_paths.append(TEST_ECHO_PATH)

        limits = node.limits
        admit: Admit | None = None
        if limits is not None:
            admit = limits.admit_connection_async if limits.shares_connection_attempts else limits.admit_connection
        paths = frozenset(ws_paths)
        proxies = TrustedProxies(self.config.client_trusted_proxies)

        def factory() -> HttpProtocol:
            return HttpProtocol(self.handle, upgrade, paths, flusher, self._http, admit, proxies)

        listeners = LISTENERS if hasattr(socket, "SO_REUSEPORT") else 1
        try:
            if self._siblings is None and listeners > 1:
                port = claim_port(host, port)
            reuse_port = listeners > 1 or self._siblings is not None
            first = await loop.create_server(
                factory, host, port, backlog=4096, reuse_address=True, reuse_port=reuse_port
            )
            self._servers = [first]
            port = int(first.sockets[0].getsockname()[1])  # port 0: the others bind the port the first one got
            for _ in range(listeners - 1):
                self._servers.append(
                    await loop.create_server(factory, host, port, backlog=4096, reuse_address=True, reuse_port=True)
                )
        except OSError as exc:
            for server in self._servers:
                server.close()
            self._servers = []
            if self._siblings is not None:
                await self._siblings.close()
            await self.node.shutdown()
            raise ListenError(host, port, exc) from exc
        return port

    async def handle(self, request: HttpRequest) -> HttpResponse:
        path = request.path
        if path == "/api" or path.startswith("/api/"):
            return await self.api.handle(request)
        if path == "/health" and self.config.health:
            return HttpResponse(200, b"{}")
        if path == "/metrics" and self.config.prometheus:
            metrics = self.node.metrics if self._siblings is None else await self._siblings.combined()
            return HttpResponse(200, metrics.render(), CONTENT_TYPE_LATEST)
        if path == WEBSOCKET_PATH:
            return HttpResponse(400, b"WebSocket upgrade expected\n", "text/plain")
        return HttpResponse(404, b"Not Found\n", "text/plain")

    async def shutdown(self) -> None:
        """Stop accepting, close clients with 3001, let in-flight API requests finish."""
        for server in self._servers:
            server.close()
        if self._siblings is not None:
            await self._siblings.close()
        await self.node.shutdown()
        for conn in list(self._http):
            conn.shutdown()
        deadline = asyncio.get_running_loop().time() + self.config.shutdown_timeout
        while any(c for c in self._http) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
            for conn in list(self._http):
                conn.shutdown()
        await asyncio.sleep(0.05)
        self._stopped.set()

    async def run(self, host: str, port: int, on_ready: Callable[[int], None] | None = None) -> None:
        """Serve until SIGTERM/SIGINT, then shut down gracefully."""
        bound = await self.start(host, port)
        if on_ready is not None:
            on_ready(bound)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down")
        await self.shutdown()
