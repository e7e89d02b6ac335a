"""Presence on Redis: one hash (client id -> ClientInfo) and one sorted set (client id -> expiry time) per
channel, ``<prefix>.presence.data.<ch>`` and ``<prefix>.presence.expire.<ch>``, as in Centrifugo.

Entries expire ``ttl`` seconds (``redis_presence_ttl``, default 60) after they were last written; reads
drop the expired ones first. So that the entries of a node that died disappear while those of a live node
stay, each node refreshes its own entries every ``ttl / 3`` seconds, and at once after the command
connection to a shard was re-established (a restarted Redis gets this node's presence back). The
refresh is one script call per channel and shard, whatever the number of clients in it.

``add_presence``, ``presence`` and ``presence_stats`` raise :class:`~neoevents.engines.base.EngineError`
(code 100) when Redis cannot be reached; ``remove_presence`` is best effort (an entry it could not remove
expires).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from typing import Final

from neoevents.engines.base import EngineError
from neoevents.engines.redis_address import shard_index
from neoevents.engines.redis_codec import MalformedMessage, decode_info, encode_info
from neoevents.engines.redis_scripts import PRESENCE_ADD, PRESENCE_GET, PRESENCE_REMOVE
from neoevents.engines.redis_shard import RedisShard
from neoevents.protocol.messages import ClientInfo

log = logging.getLogger("neoevents.redis")

DEFAULT_PRESENCE_TTL: Final = 60.0
REFRESH_CHUNK: Final = 500  # clients per refresh script call


class RedisPresenceManager:
    def __init__(self, shards: Sequence[RedisShard], prefix: str = "centrifugo", ttl: float = DEFAULT_PRESENCE_TTL):
        self.shards = list(shards)
        self.ttl = max(1, math.ceil(ttl))
        self._data = prefix + ".presence.data."
        self._expire = prefix + ".presence.expire."
        self._own: dict[str, dict[str, bytes]] = {}  # channel -> client id -> encoded info, added by this node
        self._refresher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        for shard in self.shards:
            shard.on_connected.append(self._wake.set)

    def _shard(self, channel: str) -> RedisShard:
        shards = self.shards
        return shards[0] if len(shards) == 1 else shards[shard_index(channel, len(shards))]

    def _keys(self, channel: str) -> tuple[str, str]:
        return self._expire + channel, self._data + channel

    async def add_presence(self, channel: str, client_id: str, info: ClientInfo) -> None:
        encoded = encode_info(info)
        expire_at = int(time.time()) + self.ttl
        own = self._own.setdefault(channel, {})
        own[client_id] = encoded  # before the call: a remove_presence meanwhile must win
        try:
            await self._shard(channel).script(
                PRESENCE_ADD, self._keys(channel), (self.ttl, expire_at, client_id, encoded)
            )
        except EngineError:
            if own.get(client_id) is encoded:
                self.forget(channel, client_id)
            raise
        if self._refresher is None:
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def remove_presence(self, channel: str, client_id: str, user: str) -> None:
        self.forget(channel, client_id)
        # Best effort: expires after ttl; the connection problem is logged by the shard.
        with contextlib.suppress(EngineError):
            await self._shard(channel).script(PRESENCE_REMOVE, self._keys(channel), (client_id,))

    def forget(self, channel: str, client_id: str) -> None:
        own = self._own.get(channel)
        if own is not None:
            own.pop(client_id, None)
            if not own:
                del self._own[channel]

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        flat = await self._shard(channel).script(PRESENCE_GET, self._keys(channel), (int(time.time()),))
        try:
            return {flat[i].decode(): decode_info(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}
        except (MalformedMessage, UnicodeDecodeError) as exc:
            raise EngineError(f"malformed presence entry in {channel!r}: {exc}") from exc

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        entries = await self.presence(channel)
        return len(entries), len({info.user for info in entries.values()})

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        self._own.clear()

    # ---- refreshing this node's entries --------------------------------------------------------

    async def _refresh_forever(self) -> None:
        interval = max(1.0, self.ttl / 3)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.refresh()
            except Exception:  # pragma: no cover - must never stop refreshing
                log.exception("refreshing presence failed")

    async def refresh(self) -> None:
        """Write every entry this node added again, with a new expiry time."""
        expire_at = int(time.time()) + self.ttl
        calls = []
        for channel, clients in list(self._own.items()):
            items = [value for pair in clients.items() for value in pair]
            shard = self._shard(channel)
            for start in range(0, len(items), 2 * REFRESH_CHUNK):
                chunk = items[start : start + 2 * REFRESH_CHUNK]
                calls.append(shard.script(PRESENCE_ADD, self._keys(channel), (self.ttl, expire_at, *chunk)))
        results = await asyncio.gather(*calls, return_exceptions=True)
        del results  # a shard that is down gets everything again when it is back (on_connected)
