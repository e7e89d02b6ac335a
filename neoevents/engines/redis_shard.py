"""One Redis server as the engine uses it: a command connection and a PUB/SUB connection, kept alive.

Behaviour when Redis goes away, which is what operators see:

* Commands on a lost connection fail at once with :class:`~neoevents.engines.base.EngineError` (clients
  and API callers get ``100 internal server error``); nothing waits for a reconnect. A connection that
  stops answering (a paused or overloaded Redis) is dropped after ``timeout`` seconds without a reply
  while commands are waiting; an idle connection is pinged every second so a silent one is noticed too.
* Both connections reconnect by themselves, with exponential backoff (50 ms doubling to 1 s, jittered; a
  connection that got through wakes the other one up).
* The loss is logged once per connection, and its end once ("restored after N s"); failed commands are
  not logged one by one.
* After the PUB/SUB connection comes back, every channel this node had subscribed is subscribed again,
  then ``on_resubscribed(channels)`` tells the broker which channels may have missed publications.

PUB/SUB subscriptions are batched per event-loop iteration (:mod:`~neoevents.engines.redis_subscriptions`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from neoevents.engines.base import EngineError
from neoevents.engines.redis_address import RedisAddress
from neoevents.engines.redis_connection import (
    PubSubConnection,
    RedisConnection,
    ReplyError,
    open_connection,
    pack_command,
)
from neoevents.engines.redis_scripts import Script
from neoevents.engines.redis_subscriptions import Subscriptions, consume

log = logging.getLogger("neoevents.redis")

WATCHDOG_INTERVAL: Final = 1.0
BACKOFF_MIN: Final = 0.05
BACKOFF_MAX: Final = 1.0


class RedisShard:
    def __init__(
        self,
        address: RedisAddress,
        *,
        on_message: Callable[[bytes, bytes], None],
        on_resubscribed: Callable[[list[bytes]], None],
        always_subscribed: Iterable[bytes] = (),
        timeout: float = 5.0,
    ) -> None:
        self.address = address
        self.name = str(address)
        self.timeout = timeout
        self.commands: RedisConnection | None = None
        self.pubsub: PubSubConnection | None = None
        self.on_connected: list[Callable[[], None]] = []  # called each time the command connection is (re)made
        self._on_message = on_message
        self._on_resubscribed = on_resubscribed
        self.always_subscribed = tuple(always_subscribed)
        self.subscriptions = Subscriptions()  # PUB/SUB channels wanted, besides the fixed ones
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._down_since: dict[str, float] = {}
        self._pubsub_up = asyncio.Event()
        self._commands_up = asyncio.Event()
        self._retry_now = asyncio.Event()
        self._unknown_errors: dict[str, float] = {}

    # ---- life cycle ----------------------------------------------------------------------------

    async def start(self, wait: float) -> bool:
        """Start connecting; True when both connections are up within ``wait`` seconds (they keep trying)."""
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._keep_commands()),
            loop.create_task(self._keep_pubsub()),
            loop.create_task(self._watchdog()),
        ]
        try:
            async with asyncio.timeout(wait):
                await self._commands_up.wait()
                await self._pubsub_up.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for conn in (self.commands, self.pubsub):
            if conn is not None:
                conn.close()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    # ---- commands ------------------------------------------------------------------------------

    def execute(self, *args: bytes | str | int | float) -> asyncio.Future[Any]:
        """Send a command now; raises :class:`EngineError` when there is no connection."""
        conn = self.commands
        if conn is None or conn.closed:
            raise EngineError(f"no connection to Redis {self.name}")
        return conn.execute(*args)

    def send_packed(self, packed: bytes) -> asyncio.Future[Any]:
        conn = self.commands
        if conn is None or conn.closed:
            raise EngineError(f"no connection to Redis {self.name}")
        return conn.send_packed(packed)

    def send_many(self, packed: bytes, count: int) -> asyncio.Future[list[Any]]:
        """``count`` commands encoded back to back: their replies in one list (see ``RedisConnection.send_many``)."""
        conn = self.commands
        if conn is None or conn.closed:
            raise EngineError(f"no connection to Redis {self.name}")
        return conn.send_many(packed, count)

    async def call(self, *args: bytes | str | int | float) -> Any:
        """Run a command; an error reply becomes :class:`EngineError` (logged at most once a minute)."""
        try:
            return await self.execute(*args)
        except ReplyError as exc:
            raise self.reply_error(exc) from exc

    async def call_packed(self, packed: bytes) -> Any:
        """:meth:`call` for a command already encoded (the publish fast path)."""
        try:
            return await self.send_packed(packed)
        except ReplyError as exc:
            raise self.reply_error(exc) from exc

    async def script(self, script: Script, keys: tuple[str, ...], args: tuple[bytes | str | int, ...]) -> Any:
        """EVALSHA, falling back to EVAL when Redis does not know the script (restarted, SCRIPT FLUSH)."""
        packed = pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))
        return await self.script_packed(script, packed, keys, args)

    async def script_packed(
        self, script: Script, packed: bytes, keys: tuple[str, ...], args: tuple[bytes | str | int, ...]
    ) -> Any:
        """:meth:`script` with its EVALSHA command already encoded from ``keys`` and ``args``."""
        try:
            return await self.send_packed(packed)
        except ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise self.reply_error(exc) from exc
        return await self.eval(script, keys, args)

    async def eval(self, script: Script, keys: tuple[str, ...], args: tuple[bytes | str | int, ...]) -> Any:
        """The script sent whole (``EVAL``): after ``NOSCRIPT``, when Redis does not know it."""
        try:
            return await self.execute("EVAL", script.source, len(keys), *keys, *args)
        except ReplyError as exc:
            raise self.reply_error(exc) from exc

    def reply_error(self, exc: ReplyError) -> EngineError:
        kind = str(exc).split(" ", 1)[0]
        now = time.monotonic()
        if now - self._unknown_errors.get(kind, -1e9) >= 60:
            self._unknown_errors[kind] = now
            log.error("Redis %s refused a command: %s", self.name, exc)
        return EngineError(f"Redis error: {exc}")

    # ---- PUB/SUB subscriptions -----------------------------------------------------------------

    async def pubsub_barrier(self) -> None:
        """Return once every message Redis published to this node before now has been handed over: a PING
        on the PUB/SUB connection is answered after them. Nothing to wait for without a connection."""
        conn = self.pubsub
        if conn is not None:
            with contextlib.suppress(EngineError):
                await conn.execute("PING")

    def subscribe(self, channel: bytes) -> asyncio.Future[Any] | None:
        """Ask for ``channel``; returns a future confirmed by Redis, or None when already subscribed."""
        if self.pubsub is None or self.pubsub.closed:
            raise EngineError(f"no PUB/SUB connection to Redis {self.name}")
        return self.subscriptions.subscribe(channel)

    def unsubscribe(self, channel: bytes) -> None:
        self.subscriptions.unsubscribe(channel)

    # ---- keeping the connections ---------------------------------------------------------------

    def _went_down(self, what: str, reason: object) -> None:
        if what not in self._down_since:
            self._down_since[what] = time.monotonic()
            if isinstance(reason, EngineError):
                reason = reason.reason
            log.error("Redis %s: %s connection unavailable (%s); reconnecting", self.name, what, reason)

    def _came_up(self, what: str) -> None:
        since = self._down_since.pop(what, None)
        if since is not None:
            log.warning("Redis %s: %s connection restored after %.1f s", self.name, what, time.monotonic() - since)

    async def _connect(self, factory: Callable[[], RedisConnection], select: bool) -> RedisConnection:
        """A logged-in connection that answered a PING (so a server still going down does not count)."""
        address = self.address
        conn = await open_connection(
            factory, host=address.host, port=address.port, path=address.path, tls=address.tls, timeout=self.timeout
        )
        try:
            async with asyncio.timeout(self.timeout):
                if address.password:
                    auth = (address.username, address.password) if address.username else (address.password,)
                    await conn.execute("AUTH", *auth)
                if select and address.db:
                    await conn.execute("SELECT", address.db)
                await conn.execute("PING")
        except (ReplyError, TimeoutError, EngineError) as exc:
            conn.abort()
            raise EngineError(f"login failed: {exc or 'timeout'}") from exc
        return conn

    async def _backoff(self, attempt: int) -> None:
        """Wait before the next attempt, or less when the other connection to this server just succeeded."""
        delay = min(BACKOFF_MAX, BACKOFF_MIN * 2**attempt) * random.uniform(0.8, 1.2)
        self._retry_now.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._retry_now.wait()

    async def _keep_commands(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                conn = await self._connect(lambda: RedisConnection(self.name), select=True)
            except EngineError as exc:
                self._went_down("command", exc.reason)
                await self._backoff(attempt)
                attempt += 1
                continue
            attempt = 0
            self.commands = conn
            self._commands_up.set()
            self._retry_now.set()
            self._came_up("command")
            for callback in self.on_connected:
                callback()
            reason = await conn.lost
            self.commands = None
            self._commands_up.clear()
            if not self._closing:
                self._went_down("command", reason or "closed by the server")

    async def _keep_pubsub(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                conn = await self._connect(
                    lambda: PubSubConnection(self.name, self._on_message, self.subscriptions.confirmed), select=False
                )
                assert isinstance(conn, PubSubConnection)
            except EngineError as exc:
                self._went_down("PUB/SUB", exc.reason)
                await self._backoff(attempt)
                attempt += 1
                continue
            self._retry_now.set()
            self.pubsub = self.subscriptions.connection = conn
            resubscribed = list(self.subscriptions.wanted)
            waiters = [self.subscriptions.send(channel) for channel in (*self.always_subscribed, *resubscribed)]
            try:
                async with asyncio.timeout(self.timeout + len(waiters) / 10000):
                    await asyncio.gather(*waiters)
            except (EngineError, TimeoutError) as exc:
                conn.abort()
                await self._lose_pubsub(conn, exc)
                await self._backoff(attempt)
                attempt += 1
                continue
            attempt = 0
            self._pubsub_up.set()
            self._came_up("PUB/SUB")
            if resubscribed:
                # Subscribers are about to recover from history: give the command connection a moment first.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.timeout):
                        await self._commands_up.wait()
                self._on_resubscribed(resubscribed)
            await self._lose_pubsub(conn, await conn.lost)

    async def _lose_pubsub(self, conn: RedisConnection, reason: object) -> None:
        await conn.lost
        if self.pubsub is conn:
            self.pubsub = None
            self._pubsub_up.clear()
        self.subscriptions.connection_lost(EngineError(f"PUB/SUB connection to Redis {self.name} lost"))
        if not self._closing:
            self._went_down("PUB/SUB", reason or "closed by the server")

    async def _watchdog(self) -> None:
        """Drop a connection that has commands waiting and answered nothing for ``timeout`` seconds."""
        seen: dict[RedisConnection, tuple[int, float]] = {}
        while not self._closing:
            await asyncio.sleep(WATCHDOG_INTERVAL)
            now = time.monotonic()
            for conn in (self.commands, self.pubsub):
                if conn is None or conn.closed:
                    continue
                if not conn.pending:
                    conn.execute("PING").add_done_callback(consume)  # so that a silent peer is noticed
                answered, since = seen.get(conn, (-1, now))
                if conn.answered != answered or not conn.pending:
                    seen[conn] = (conn.answered, now)
                elif now - since >= self.timeout:
                    conn.abort(EngineError(f"no reply for {now - since:.0f} s"))
            for conn in [c for c in seen if c.closed]:
                del seen[conn]
