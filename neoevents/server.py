"""Wiring: build a node from a configuration and serve it over HTTP and WebSocket on one port."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from neoevents.api.executor import Executor
from neoevents.api.http import ApiEndpoint
from neoevents.config import Config
from neoevents.engines.memory import MemoryBroker, MemoryPresenceManager
from neoevents.metrics import CONTENT_TYPE_LATEST
from neoevents.node import Node
from neoevents.transport.echo import TEST_ECHO_PATH, EchoConnection
from neoevents.transport.flusher import Flusher
from neoevents.transport.http import Admit, HttpProtocol, HttpRequest, HttpResponse
from neoevents.transport.proxies import TrustedProxies
from neoevents.transport.websocket import WebSocketConnection
from neoevents.workermetrics import SiblingMetrics, WorkerSlot

log = logging.getLogger("neoevents.server")

WEBSOCKET_PATH = "/connection/websocket"


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
        self._server: asyncio.Server | None = None
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

        self._server = await loop.create_server(
            factory, host, port, backlog=4096, reuse_address=True, reuse_port=self._siblings is not None
        )
        sock = self._server.sockets[0]
        return int(sock.getsockname()[1])

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
        if self._server is not None:
            self._server.close()
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
