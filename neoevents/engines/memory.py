"""In-memory engine for a single node: the default.

Everything happens synchronously on the event loop, so ``publish`` is trivially atomic and ordered.
Expired streams, idempotency results and presence entries are swept by :meth:`MemoryBroker.sweep` /
:meth:`MemoryPresenceManager.sweep`, which the node calls about once a second.
"""

from __future__ import annotations

import secrets
import string
import time
from collections import deque
from collections.abc import Callable

import msgspec

from neoevents.engines.base import BrokerEventHandler, HistoryFilter, PublishOptions, StreamPosition
from neoevents.protocol.messages import ClientInfo, Publication

_EPOCH_ALPHABET = string.ascii_letters + string.digits
#: The position of a publication into a channel without history (frozen, so one object serves them all).
_NO_POSITION = StreamPosition()


def new_epoch() -> str:
    return "".join(secrets.choice(_EPOCH_ALPHABET) for _ in range(8))


class _Stream:
    __slots__ = ("epoch", "expire_at", "meta_expire_at", "offset", "pubs")

    def __init__(self) -> None:
        self.epoch = new_epoch()
        self.offset = 0
        self.pubs: deque[Publication] = deque()
        self.expire_at = 0.0
        self.meta_expire_at = 0.0


class MemoryBroker:
    """Broker + history in process memory. Default meta TTL is 30 days like the reference server."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, default_meta_ttl: float = 30 * 86400) -> None:
        self._clock = clock
        self._default_meta_ttl = default_meta_ttl
        self._handler: BrokerEventHandler | None = None
        self._node_id = ""
        self._streams: dict[str, _Stream] = {}
        self._results: dict[tuple[str, str], tuple[StreamPosition, float]] = {}

    async def start(self, handler: BrokerEventHandler, node_id: str = "") -> None:
        self._handler = handler
        self._node_id = node_id

    async def close(self) -> None:
        self._handler = None

    async def subscribe(self, channel: str) -> None:
        return None

    async def unsubscribe(self, channel: str) -> None:
        return None

    def _stream(self, channel: str, meta_ttl: float, create: bool) -> _Stream | None:
        now = self._clock()
        stream = self._streams.get(channel)
        if stream is not None and stream.meta_expire_at and now >= stream.meta_expire_at:
            del self._streams[channel]
            stream = None
        if stream is None:
            if not create:
                return None
            stream = self._streams[channel] = _Stream()
        if stream.expire_at and now >= stream.expire_at:
            stream.pubs.clear()
        stream.meta_expire_at = now + (meta_ttl or self._default_meta_ttl)
        return stream

    async def publish(self, channel: str, data: bytes, options: PublishOptions) -> tuple[StreamPosition, bool]:
        return self.publish_now(channel, data, options)

    def publish_now(self, channel: str, data: bytes, options: PublishOptions) -> tuple[StreamPosition, bool]:
        """Synchronous publish (the memory engine never waits)."""
        key = (channel, options.idempotency_key) if options.idempotency_key else None
        history = options.history_size > 0 and options.history_ttl > 0
        now = self._clock() if key is not None or history else 0.0
        if key is not None:
            previous = self._results.get(key)
            if previous is not None and previous[1] > now:
                return previous[0], True
        pub = Publication(data=msgspec.Raw(data), info=options.info, tags=options.tags)
        position = _NO_POSITION
        if history and not options.skip_history:
            stream = self._stream(channel, options.history_meta_ttl, create=True)
            assert stream is not None
            stream.offset += 1
            pub.offset = stream.offset
            stream.pubs.append(pub)
            if pub.offset == 1:
                # A subscriber that joined an empty stream learns its epoch from the first publication.
                pub = msgspec.structs.replace(pub, epoch=stream.epoch)
            while len(stream.pubs) > options.history_size:
                stream.pubs.popleft()
            stream.expire_at = now + options.history_ttl
            position = StreamPosition(stream.offset, stream.epoch)
        elif history:
            stream = self._stream(channel, options.history_meta_ttl, create=True)
            assert stream is not None
            position = StreamPosition(stream.offset, stream.epoch)
        if key is not None:
            self._results[key] = (position, now + options.idempotent_result_ttl)
        if self._handler is not None:
            self._handler.handle_publication(channel, pub, position)
        return position, False

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        if self._handler is not None:
            self._handler.handle_join(channel, info)

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        if self._handler is not None:
            self._handler.handle_leave(channel, info)

    async def publish_control(self, data: bytes, node_id: str = "") -> None:
        if self._handler is not None and (not node_id or node_id == self._node_id):
            self._handler.handle_control(data)

    async def history(
        self, channel: str, flt: HistoryFilter, history_ttl: float = 0.0, meta_ttl: float = 0.0
    ) -> tuple[list[Publication], StreamPosition]:
        return self.history_now(channel, flt, meta_ttl)

    def history_now(
        self, channel: str, flt: HistoryFilter, meta_ttl: float = 0.0
    ) -> tuple[list[Publication], StreamPosition]:
        stream = self._stream(channel, meta_ttl, create=True)
        assert stream is not None
        position = StreamPosition(stream.offset, stream.epoch)
        if flt.limit == 0:
            return [], position
        pubs = list(stream.pubs)
        if flt.since is not None:
            after = flt.since.offset
            if flt.reverse:
                pubs = [p for p in pubs if p.offset < after] if after else pubs
            else:
                pubs = [p for p in pubs if p.offset > after]
        if flt.reverse:
            pubs.reverse()
        if flt.limit > 0:
            pubs = pubs[: flt.limit]
        return pubs, position

    async def remove_history(self, channel: str) -> None:
        stream = self._streams.get(channel)
        if stream is not None:
            stream.pubs.clear()

    def sweep(self) -> None:
        now = self._clock()
        for key in [k for k, (_, exp) in self._results.items() if exp <= now]:
            del self._results[key]
        for channel in [c for c, s in self._streams.items() if s.meta_expire_at and s.meta_expire_at <= now]:
            del self._streams[channel]
        for stream in self._streams.values():
            if stream.expire_at and stream.expire_at <= now and stream.pubs:
                stream.pubs.clear()


class MemoryPresenceManager:
    """Presence in process memory: channel -> client id -> ClientInfo."""

    def __init__(self) -> None:
        self._presence: dict[str, dict[str, ClientInfo]] = {}

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        return dict(self._presence.get(channel, {}))

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        entries = self._presence.get(channel, {})
        return len(entries), len({info.user for info in entries.values()})

    async def add_presence(self, channel: str, client_id: str, info: ClientInfo) -> None:
        self._presence.setdefault(channel, {})[client_id] = info

    async def remove_presence(self, channel: str, client_id: str, user: str) -> None:
        entries = self._presence.get(channel)
        if entries is not None:
            entries.pop(client_id, None)
            if not entries:
                del self._presence[channel]

    async def close(self) -> None:
        self._presence.clear()
