"""Which PUB/SUB channels a node wants from one Redis server, and their SUBSCRIBE / UNSUBSCRIBE commands.

Requests made in one event-loop iteration go out together, as few commands as possible (consecutive
subscribes in one ``SUBSCRIBE`` of up to :data:`BATCH` channels, likewise unsubscribes), in the order they
were made. :meth:`Subscriptions.subscribe` returns a future that Redis' confirmation of the channel resolves;
asking again for a channel whose confirmation is pending returns the same future, so concurrent
subscribers of one channel wait for one command.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from neoevents.engines.base import EngineError
from neoevents.engines.redis_connection import RedisConnection, pack_command

BATCH: Final = 512  # channels per SUBSCRIBE / UNSUBSCRIBE command


def consume(future: asyncio.Future[Any]) -> None:
    """A done callback that retrieves the exception: no "exception was never retrieved" warning."""
    if not future.cancelled():
        future.exception()


class Subscriptions:
    def __init__(self) -> None:
        self.wanted: set[bytes] = set()
        self.connection: RedisConnection | None = None  # the PUB/SUB connection commands go to, when up
        self._pending: dict[bytes, list[Any]] = {}  # channel -> [SUBSCRIBEs not yet confirmed, future]
        self._ops: list[tuple[bool, bytes]] = []

    def subscribe(self, channel: bytes) -> asyncio.Future[Any] | None:
        """Want ``channel``: a future confirmed by Redis, or None when it is subscribed already."""
        if channel in self.wanted:
            entry = self._pending.get(channel)
            return entry[1] if entry is not None else None
        self.wanted.add(channel)
        return self.send(channel)

    def unsubscribe(self, channel: bytes) -> None:
        if channel in self.wanted:
            self.wanted.discard(channel)
            self._queue(False, channel)

    def send(self, channel: bytes) -> asyncio.Future[Any]:
        """SUBSCRIBE ``channel`` (again, after a reconnect, or a fixed channel); the confirmation's future."""
        entry = self._pending.get(channel)
        if entry is None:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            future.add_done_callback(consume)
            entry = self._pending[channel] = [0, future]
        entry[0] += 1
        self._queue(True, channel)
        result: asyncio.Future[Any] = entry[1]
        return result

    def confirmed(self, channel: bytes) -> None:
        """Redis confirmed one SUBSCRIBE of ``channel``; the future resolves with the last one pending."""
        entry = self._pending.get(channel)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] <= 0:
            del self._pending[channel]
            if not entry[1].done():
                entry[1].set_result(None)

    def connection_lost(self, error: EngineError) -> None:
        """Pending confirmations fail, queued commands are dropped; ``wanted`` stays for the next connection."""
        self.connection = None
        self._ops.clear()
        pending, self._pending = self._pending, {}
        for _, future in pending.values():
            if not future.done():
                future.set_exception(error)

    def _queue(self, subscribe: bool, channel: bytes) -> None:
        if self.connection is None:
            return
        self._ops.append((subscribe, channel))
        if len(self._ops) == 1:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        ops, self._ops = self._ops, []
        conn = self.connection
        if conn is None:
            return
        start = 0
        while start < len(ops):
            kind = ops[start][0]
            stop = start
            while stop < len(ops) and ops[stop][0] == kind and stop - start < BATCH:
                stop += 1
            names = [channel for _, channel in ops[start:stop]]
            conn.send_only(pack_command((b"SUBSCRIBE" if kind else b"UNSUBSCRIBE", *names)))
            start = stop
