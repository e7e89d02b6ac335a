"""Shared pieces of the SDK conformance tests.

The tests drive the official SDKs (centrifuge-python, centrifuge-js, cent) against a real
server process. Which server kinds they run against is chosen with the environment
variable NEOEVENTS_CONFORMANCE_TARGETS: a comma separated list of "neoevents" and
"centrifugo" (default "neoevents").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
from centrifuge import (
    Client,
    ClientEventHandler,
    ConnectedContext,
    ConnectingContext,
    DisconnectedContext,
    ErrorContext,
    JoinContext,
    LeaveContext,
    PublicationContext,
    ServerJoinContext,
    ServerLeaveContext,
    ServerPublicationContext,
    ServerSubscribedContext,
    ServerSubscribingContext,
    ServerUnsubscribedContext,
    SubscribedContext,
    SubscribingContext,
    Subscription,
    SubscriptionErrorContext,
    SubscriptionEventHandler,
    UnsubscribedContext,
)

from tests.support.servers import RunningServer, ServerOptions

if TYPE_CHECKING:
    from tests.conftest import ServerPool

TARGETS_ENV = "NEOEVENTS_CONFORMANCE_TARGETS"
KNOWN_TARGETS = ("neoevents", "centrifugo")

# How long a test waits for something the server should do promptly.
WAIT = 10.0


def conformance_targets() -> list[str]:
    raw = os.environ.get(TARGETS_ENV, "neoevents")
    targets = [t.strip() for t in raw.split(",") if t.strip()]
    unknown = [t for t in targets if t not in KNOWN_TARGETS]
    if unknown:
        raise ValueError(f"{TARGETS_ENV}: unknown server kinds {unknown}, expected some of {KNOWN_TARGETS}")
    return targets


# Channel namespaces of the conformance server, with Centrifugo v5 flat option names.
# Each test uses fresh channel names inside them, so one server serves a whole module.
HISTORY_TTL = "300s"
NAMESPACES: list[dict[str, Any]] = [
    {
        # Everything a chat needs: presence, join/leave, history with recovery, clients
        # may subscribe and publish.
        "name": "chat",
        "presence": True,
        "join_leave": True,
        "history_size": 100,
        "history_ttl": HISTORY_TTL,
        "force_recovery": True,
        "allow_subscribe_for_client": True,
        "allow_publish_for_client": True,
        "allow_history_for_subscriber": True,
        "allow_presence_for_subscriber": True,
    },
    {
        # Clients may subscribe and read history, but not publish.
        "name": "news",
        "history_size": 10,
        "history_ttl": HISTORY_TTL,
        "allow_subscribe_for_client": True,
        "allow_history_for_subscriber": True,
    },
    {
        # A history window smaller than what the recovery tests miss.
        "name": "tiny",
        "history_size": 2,
        "history_ttl": HISTORY_TTL,
        "force_recovery": True,
        "allow_subscribe_for_client": True,
    },
    {
        # Subscribing needs a subscription token; subscribers may publish.
        "name": "secure",
        "history_size": 10,
        "history_ttl": HISTORY_TTL,
        "allow_publish_for_subscriber": True,
        "allow_history_for_subscriber": True,
    },
    {
        # For server-side subscriptions (the `channels` claim of connection tokens).
        "name": "srv",
        "presence": True,
        "join_leave": True,
        "force_push_join_leave": True,
        "history_size": 100,
        "history_ttl": HISTORY_TTL,
        "force_recovery": True,
    },
]

# Connections whose token expired are closed this long after the expiry.
EXPIRED_CLOSE_DELAY = 1.0


def conformance_options() -> ServerOptions:
    return ServerOptions(
        secret="conformance-hmac-secret-0123456789abcdef",
        api_key="conformance-api-key",
        namespaces=NAMESPACES,
        client_expired_close_delay=EXPIRED_CLOSE_DELAY,
    )


def conformance_server(server_pool: ServerPool, kind: str) -> RunningServer:
    """The server of ``kind`` with the conformance configuration, shared by all tests of the session.
    Skips when the kind cannot run here."""
    return server_pool.shared(kind, "sdk-conformance", conformance_options())


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


async def wait_until(cond: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Polls cond until it holds; fails the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = WAIT) -> None:
    """Awaits check() until it returns True; fails the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


# --- server HTTP API -----------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"API error {code}: {message}")
        self.code = code
        self.message = message


async def api(server: RunningServer, method: str, params: dict[str, Any]) -> Any:
    """Calls the server API without blocking the event loop; returns "result"."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.api_url}/{method}",
            data=json.dumps(params),
            headers={"X-API-Key": server.api_key, "Content-Type": "application/json"},
        ) as resp,
    ):
        assert resp.status == 200, f"API {method}: HTTP {resp.status}"
        body = await resp.json(content_type=None)
    if "error" in body:
        raise ApiError(body["error"]["code"], body["error"].get("message", ""))
    return body.get("result", {})


async def publish(server: RunningServer, channel: str, data: Any, **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = await api(server, "publish", {"channel": channel, "data": data, **extra})
    return result


# --- payloads ------------------------------------------------------------------------


@dataclass(frozen=True)
class Payloads:
    """JSON values with the JSON protocol; JSON text in bytes with Protobuf."""

    protobuf: bool

    def encode(self, value: Any) -> Any:
        return json.dumps(value).encode() if self.protobuf else value

    def decode(self, data: Any) -> Any:
        if data is None:
            return None
        if isinstance(data, bytes | bytearray):
            return json.loads(data) if data else None
        return data


# --- recording SDK events --------------------------------------------------------------


@dataclass
class Recorder:
    """Events of a client or a subscription, in the order the SDK emitted them."""

    events: list[tuple[str, Any]] = field(default_factory=list)

    def add(self, name: str, ctx: Any) -> None:
        self.events.append((name, ctx))

    def of(self, name: str) -> list[Any]:
        return [ctx for n, ctx in self.events if n == name]

    def names(self) -> list[str]:
        return [n for n, _ in self.events]

    async def wait(self, name: str, count: int = 1, timeout: float = WAIT) -> list[Any]:
        await wait_until(lambda: len(self.of(name)) >= count, f"{count} {name!r} event(s)", timeout)
        return self.of(name)


class ClientEvents(ClientEventHandler):
    def __init__(self, recorder: Recorder) -> None:
        self.rec = recorder

    async def on_connecting(self, ctx: ConnectingContext) -> None:
        self.rec.add("connecting", ctx)

    async def on_connected(self, ctx: ConnectedContext) -> None:
        self.rec.add("connected", ctx)

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        self.rec.add("disconnected", ctx)

    async def on_error(self, ctx: ErrorContext) -> None:
        self.rec.add("error", ctx)

    async def on_subscribed(self, ctx: ServerSubscribedContext) -> None:
        self.rec.add("server_subscribed", ctx)

    async def on_subscribing(self, ctx: ServerSubscribingContext) -> None:
        self.rec.add("server_subscribing", ctx)

    async def on_unsubscribed(self, ctx: ServerUnsubscribedContext) -> None:
        self.rec.add("server_unsubscribed", ctx)

    async def on_publication(self, ctx: ServerPublicationContext) -> None:
        self.rec.add("server_publication", ctx)

    async def on_join(self, ctx: ServerJoinContext) -> None:
        self.rec.add("server_join", ctx)

    async def on_leave(self, ctx: ServerLeaveContext) -> None:
        self.rec.add("server_leave", ctx)


class SubEvents(SubscriptionEventHandler):
    def __init__(self, recorder: Recorder) -> None:
        self.rec = recorder

    async def on_subscribing(self, ctx: SubscribingContext) -> None:
        self.rec.add("subscribing", ctx)

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.rec.add("subscribed", ctx)

    async def on_unsubscribed(self, ctx: UnsubscribedContext) -> None:
        self.rec.add("unsubscribed", ctx)

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.rec.add("publication", ctx)

    async def on_join(self, ctx: JoinContext) -> None:
        self.rec.add("join", ctx)

    async def on_leave(self, ctx: LeaveContext) -> None:
        self.rec.add("leave", ctx)

    async def on_error(self, ctx: SubscriptionErrorContext) -> None:
        self.rec.add("error", ctx)


@dataclass
class SdkClient:
    client: Client
    events: Recorder
    payloads: Payloads

    def subscribe_to(self, channel: str, **kwargs: Any) -> tuple[Subscription, Recorder]:
        rec = Recorder()
        sub = self.client.new_subscription(channel, events=SubEvents(rec), **kwargs)
        return sub, rec


@contextlib.asynccontextmanager
async def sdk_client(
    url: str,
    protobuf: bool,
    token: str = "",
    get_token: Callable[[], Awaitable[str]] | None = None,
    **kwargs: Any,
) -> AsyncIterator[SdkClient]:
    """A centrifuge-python client (not connected yet), disconnected on exit."""
    rec = Recorder()
    client = Client(
        url,
        events=ClientEvents(rec),
        token=token,
        get_token=get_token,
        use_protobuf=protobuf,
        min_reconnect_delay=0.05,
        max_reconnect_delay=0.3,
        proxy=None,
        **kwargs,
    )
    try:
        yield SdkClient(client, rec, Payloads(protobuf))
    finally:
        await client.disconnect()


# --- a TCP proxy that can cut connections ------------------------------------------


class GatedProxy:
    """Forwards TCP connections to the server. While the gate is closed, new connections
    are closed right after accept, so a client fails to reconnect until it opens again.
    It counts the connections it accepted."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.gate_open = True
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def url_for(self, server_url: str) -> str:
        """The server URL with its host and port replaced by the proxy's."""
        parts = urlsplit(server_url)
        return urlunsplit(parts._replace(netloc=f"127.0.0.1:{self.port}"))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if not self.gate_open:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()
            self._writers.discard(dst)

    def cut(self) -> None:
        """Drops every open connection at once, both ways, without a WebSocket close."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()


@contextlib.asynccontextmanager
async def gated_proxy(server: RunningServer) -> AsyncIterator[GatedProxy]:
    proxy = GatedProxy(server.host, server.port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


# --- centrifuge-js -------------------------------------------------------------------

JS_DIR = Path(__file__).parent / "js"


def js_available() -> bool:
    return (JS_DIR / "node_modules" / "centrifuge" / "package.json").exists()


async def run_js(script: str, scenario: dict[str, Any], timeout: float = 45.0) -> list[dict[str, Any]]:
    """Runs a scenario script with node and returns the JSON events it printed."""
    proc = await asyncio.create_subprocess_exec(
        "node",
        script,
        cwd=JS_DIR,
        env={**os.environ, "SCENARIO": json.dumps(scenario)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"node {script} did not finish in {timeout} s")
    events = [json.loads(line) for line in stdout.decode().splitlines() if line.startswith("{")]
    last = events[-1] if events else {}
    if proc.returncode != 0 or last.get("event") != "done":
        pytest.fail(
            f"node {script} exited with {proc.returncode}; last event {last}\n"
            f"stdout:\n{stdout.decode()}\nstderr:\n{stderr.decode()}"
        )
    return events


def js_events(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]


def js_event(events: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = js_events(events, name)
    assert len(found) == 1, f"expected one {name!r} event, got {found}"
    return found[0]
