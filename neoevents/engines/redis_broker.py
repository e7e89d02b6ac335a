"""Broker on Redis: publications, history streams, join/leave and control messages shared by every node.

* ``publish`` is one Lua script per publication (:data:`~neoevents.engines.redis_scripts.PUBLISH`):
  idempotency result, epoch creation, offset increment, ``XADD ... MAXLEN``, expiry of stream and meta and
  the ``PUBLISH`` of the publication with its position, all atomic inside Redis. A publication without
  history and without idempotency key is a plain ``PUBLISH``. ``publish_many`` writes the commands of all its
  publications at once and waits for one list of replies. A script call that Redis no longer knows (restarted,
  ``SCRIPT FLUSH``) is sent again whole, so it runs after the commands sent behind it: the one case where a
  channel's publications could be applied out of the order they were issued (only a channel without history
  mixes script calls, with idempotency keys, and plain ``PUBLISH`` commands).
* This node receives a channel's events by subscribing to ``<prefix>.client.<channel>`` while it has local
  subscribers there (:meth:`subscribe` / :meth:`unsubscribe`, batched per event-loop iteration by the
  shard), and control messages on ``<prefix>.control`` and ``<prefix>.node.<node ID>`` (on every shard, as
  Centrifugo publishes them on any).
* Arriving messages are decoded and positions checked in :mod:`~neoevents.engines.redis_receiver`: a gap
  or a new epoch calls the handler's ``handle_insufficient_state`` (the node then unsubscribes the channel's
  positioned subscribers with 2500, and the SDKs recover). After the PUB/SUB connection was re-established,
  each channel's stream position is read and compared with the last one seen, and only the channels that
  missed publications are reported (or those whose position is unknown or cannot be read).
* Failures raise :class:`~neoevents.engines.base.EngineError` (code 100) from ``publish``, ``history``,
  ``remove_history`` and ``subscribe``; ``publish_join``, ``publish_leave`` and ``unsubscribe`` are best
  effort and never raise, since nobody could act on their failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, NamedTuple

from neoevents.engines.base import BrokerEventHandler, EngineError, HistoryFilter, PublishOptions, StreamPosition
from neoevents.engines.memory import new_epoch
from neoevents.engines.redis_address import RedisAddress, shard_index
from neoevents.engines.redis_codec import (
    JOIN_PREFIX,
    LEAVE_PREFIX,
    MalformedMessage,
    decode_publication,
    encode_info,
    encode_publication,
)
from neoevents.engines.redis_connection import ReplyError, bulk, pack_head
from neoevents.engines.redis_receiver import NO_POSITION, Receiver
from neoevents.engines.redis_scripts import HISTORY, PUBLISH, RATE_LIMIT
from neoevents.engines.redis_shard import RedisShard
from neoevents.protocol.messages import ClientInfo, Publication

log = logging.getLogger("neoevents.redis")

DEFAULT_META_TTL: Final = 30 * 86400
PUBLISHED: Final = (NO_POSITION, False)  # the result of a publication without history
#: Channels whose encoded publish command heads (and, apart, script calls) are kept. A full table starts over,
#: so channels that come and go (one per deployment, say) never freeze it: the hot ones are back after one miss.
CACHE_SIZE: Final = 16_384
_PUBLISH_HEAD: Final = b"*3\r\n$7\r\nPUBLISH\r\n"  # a PUBLISH of two arguments, before them
RESUBSCRIBE_CHECKS: Final = 256  # stream positions read at a time after PUB/SUB was re-established


def _seconds(value: float) -> int:
    return max(1, math.ceil(value))


class RedisBroker:
    def __init__(
        self,
        addresses: Sequence[RedisAddress],
        prefix: str = "centrifugo",
        *,
        timeout: float = 5.0,
        start_wait: float = 5.0,
    ) -> None:
        if not addresses:
            raise ValueError("at least one Redis address is needed")
        self.prefix = prefix
        self._client_prefix = prefix + ".client."
        self._control = (prefix + ".control").encode()
        self._start_wait = start_wait
        self._node_prefix = prefix + ".node."  # + node ID: control messages for one node
        self._receiver = Receiver(self._control)
        self._checks: set[asyncio.Task[None]] = set()
        self._epoch = new_epoch()  # offered to the scripts for a stream without one; renewed once taken
        self._publish_heads: dict[str, bytes] = {}
        self._plans: dict[tuple[str, int, float, float, bool], _ScriptCall] = {}
        self.shards = [
            RedisShard(
                address,
                on_message=self._receiver.on_message,
                on_resubscribed=self._resubscribed,
                always_subscribed=(self._control,),
                timeout=timeout,
            )
            for index, address in enumerate(addresses)
        ]

    def shard(self, channel: str) -> RedisShard:
        shards = self.shards
        return shards[0] if len(shards) == 1 else shards[shard_index(channel, len(shards))]

    # ---- life cycle ----------------------------------------------------------------------------

    async def start(self, handler: BrokerEventHandler, node_id: str = "") -> None:
        self._receiver.handler = handler
        if node_id:
            # Control messages come over every shard (Centrifugo spreads them over its shards).
            node_channel = (self._node_prefix + node_id).encode()
            self._receiver.controls.add(node_channel)
            for shard in self.shards:
                shard.always_subscribed = (self._control, node_channel)
        ready = await asyncio.gather(*(shard.start(self._start_wait) for shard in self.shards))
        if not all(ready):
            log.error("starting without Redis: operations that need it fail with 100 until it is reachable")

    async def close(self) -> None:
        self._receiver.handler = None
        for task in self._checks:
            task.cancel()
        await asyncio.gather(*(shard.close() for shard in self.shards))

    # ---- PUB/SUB -------------------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        key = (self._client_prefix + channel).encode()
        self._receiver.add(key, channel)
        waiter = self.shard(channel).subscribe(key)
        if waiter is not None:
            await waiter

    async def unsubscribe(self, channel: str) -> None:
        key = (self._client_prefix + channel).encode()
        self.shard(channel).unsubscribe(key)
        self._receiver.remove(key, channel)

    def _resubscribed(self, keys: list[bytes]) -> None:
        channels = self._receiver.resubscribed(keys)
        if channels:
            task = asyncio.get_running_loop().create_task(self._check_positions(channels))
            self._checks.add(task)
            task.add_done_callback(self._checks.discard)

    async def _check_positions(self, channels: list[str]) -> None:
        """Compare re-subscribed channels with their streams, ``RESUBSCRIBE_CHECKS`` reads at a time."""
        limit = asyncio.Semaphore(RESUBSCRIBE_CHECKS)

        async def check(channel: str) -> None:
            async with limit:
                try:
                    _, top = await self.history(channel, HistoryFilter(limit=0))
                except EngineError:
                    self._receiver.checked(channel, None)
                    return
                self._receiver.checked(channel, top)

        await asyncio.gather(*(check(channel) for channel in channels))

    # ---- publishing ----------------------------------------------------------------------------

    def _take_epoch(self, used: str) -> None:
        if used == self._epoch:
            self._epoch = new_epoch()

    def _encode(
        self, channel: str, data: bytes, options: PublishOptions
    ) -> tuple[bytes, _ScriptCall | None, bytes, bytes]:
        """One publication's command: (encoded command, its script call or None for a plain ``PUBLISH``,
        epoch offered to the script, publication)."""
        payload = encode_publication(data, options.info, options.tags)
        key = options.idempotency_key
        if not key and (options.history_size <= 0 or options.history_ttl <= 0):
            head = self._publish_heads.get(channel)
            if head is None:
                head = _PUBLISH_HEAD + bulk((self._client_prefix + channel).encode())
                if len(self._publish_heads) >= CACHE_SIZE:
                    self._publish_heads.clear()
                self._publish_heads[channel] = head
            return b"%b$%d\r\n%b\r\n" % (head, len(payload), payload), None, b"", payload
        history = options.history_size > 0 and options.history_ttl > 0
        plan = (
            self._plan(channel, options, history)
            if not key
            else _ScriptCall.build(self.prefix, channel, options, history)
        )
        epoch = self._epoch.encode()
        return plan.head + bulk(epoch) + bulk(payload), plan, epoch, payload

    def _script_result(self, reply: Any) -> tuple[StreamPosition, bool]:
        offset, used, suppressed = _position_reply(reply)
        self._take_epoch(used)
        return (StreamPosition(offset, used) if used else NO_POSITION), bool(suppressed)

    async def publish(self, channel: str, data: bytes, options: PublishOptions) -> tuple[StreamPosition, bool]:
        shard = self.shard(channel)
        packed, plan, epoch, payload = self._encode(channel, data, options)
        if plan is None:
            await shard.call_packed(packed)
            return PUBLISHED
        reply = await shard.script_packed(PUBLISH, packed, plan.keys, (*plan.args, epoch, payload))
        return self._script_result(reply)

    async def publish_many(
        self, items: Sequence[tuple[str, bytes, PublishOptions]]
    ) -> list[tuple[StreamPosition, bool] | EngineError]:
        """See :class:`~neoevents.engines.base.BatchPublisher`: the publications of one shard go out as one write
        (``PUBLISH`` or the publish script each, in order) and their replies come back as one list. Every
        shard's write is queued before the first reply is awaited."""
        if not items:
            return []
        shards = self.shards
        if len(shards) == 1:
            return await self._results(self._send(shards[0], items))
        groups: dict[int, list[int]] = {}
        for index, item in enumerate(items):
            groups.setdefault(shard_index(item[0], len(shards)), []).append(index)
        sent = [(indexes, self._send(shards[shard], [items[i] for i in indexes])) for shard, indexes in groups.items()]
        results: list[tuple[StreamPosition, bool] | EngineError] = [PUBLISHED] * len(items)
        for indexes, batch in sent:
            for index, result in zip(indexes, await self._results(batch), strict=True):
                results[index] = result
        return results

    def _send(self, shard: RedisShard, items: Sequence[tuple[str, bytes, PublishOptions]]) -> _Sent:
        encoded = [self._encode(channel, data, options) for channel, data, options in items]
        try:
            replies: asyncio.Future[list[Any]] | EngineError = shard.send_many(
                b"".join([command[0] for command in encoded]), len(encoded)
            )
        except EngineError as exc:
            replies = exc
        return _Sent(shard, encoded, replies)

    async def _results(self, sent: _Sent) -> list[tuple[StreamPosition, bool] | EngineError]:
        shard, encoded = sent.shard, sent.encoded
        if isinstance(sent.replies, EngineError):
            return [sent.replies] * len(encoded)
        try:
            replies = await sent.replies
        except EngineError as exc:
            return [exc] * len(encoded)
        results: list[tuple[StreamPosition, bool] | EngineError] = []
        for (_, plan, epoch, payload), reply in zip(encoded, replies, strict=True):
            if type(reply) is ReplyError:
                if plan is None or not str(reply).startswith("NOSCRIPT"):
                    results.append(shard.reply_error(reply))
                    continue
                try:
                    reply = await shard.eval(PUBLISH, plan.keys, (*plan.args, epoch, payload))
                except EngineError as exc:
                    results.append(exc)
                    continue
            if plan is None:
                results.append(PUBLISHED)
                continue
            try:
                results.append(self._script_result(reply))
            except EngineError as exc:
                results.append(exc)
        return results

    def _plan(self, channel: str, options: PublishOptions, history: bool) -> _ScriptCall:
        """The publish script call of a channel without its last two arguments (epoch, publication), cached."""
        cache_key = (channel, options.history_size, options.history_ttl, options.history_meta_ttl, options.skip_history)
        plan = self._plans.get(cache_key)
        if plan is None:
            if len(self._plans) >= CACHE_SIZE:
                self._plans.clear()
            plan = self._plans[cache_key] = _ScriptCall.build(self.prefix, channel, options, history)
        return plan

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        await self._best_effort(channel, JOIN_PREFIX + encode_info(info))

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        await self._best_effort(channel, LEAVE_PREFIX + encode_info(info))

    async def _best_effort(self, channel: str, message: bytes) -> None:
        # Best effort: at most once by design; the connection problem is logged by the shard.
        with contextlib.suppress(EngineError):
            await self.shard(channel).call("PUBLISH", self._client_prefix + channel, message)

    async def publish_control(self, data: bytes, node_id: str = "") -> None:
        channel = (self._node_prefix + node_id).encode() if node_id else self._control
        await self.shards[0].call("PUBLISH", channel, data)

    # ---- history -------------------------------------------------------------------------------

    async def history(
        self, channel: str, flt: HistoryFilter, history_ttl: float = 0.0, meta_ttl: float = 0.0
    ) -> tuple[list[Publication], StreamPosition]:
        include = flt.limit != 0
        since = flt.since
        if not flt.reverse:
            start = str(since.offset + 1) if since is not None else "-"
        elif since is not None and since.offset > 0:
            include = include and since.offset > 1
            start = str(since.offset - 1)
        else:
            start = "+"
        prefix = self.prefix
        shard = self.shard(channel)
        reply = await shard.script(
            HISTORY,
            (prefix + ".stream." + channel, prefix + ".stream.meta." + channel),
            (
                "1" if include else "0",
                start,
                flt.limit if flt.limit > 0 else 0,
                "1" if flt.reverse else "0",
                _seconds(meta_ttl) if meta_ttl else DEFAULT_META_TTL,
                self._epoch,
            ),
        )
        offset, epoch, _ = _position_reply(reply)
        self._take_epoch(epoch)
        if (self._client_prefix + channel).encode() in self._receiver.names:
            # Publications up to this position may still be on their way over PUB/SUB: let them arrive
            # first, so that what comes afterwards is newer than the position returned.
            await shard.pubsub_barrier()
            self._receiver.seen(channel, StreamPosition(offset, epoch))
        pubs = _publications(reply[2]) if include and len(reply) > 2 and reply[2] else []
        return pubs, StreamPosition(offset, epoch)

    async def remove_history(self, channel: str) -> None:
        await self.shard(channel).call("DEL", self.prefix + ".stream." + channel)

    # ---- shared rate-limit budgets (SharedBudgets) ---------------------------------------------

    async def spend(self, name: str, costs: Mapping[str, int], interval: float, period: float) -> float:
        """GCRA in Redis (script ``rate_limit``), one key ``<prefix>.ratelimit.<name>.<key>`` per budget key,
        each on the shard its name hashes to. Several keys are first checked, then counted."""
        keys = [(f"{self.prefix}.ratelimit.{name}.{key}", cost) for key, cost in costs.items()]
        args = (f"{interval * 1000:.6f}", f"{period * 1000:.6f}")
        try:
            if len(keys) > 1:
                waits = await asyncio.gather(*(self._gcra(key, cost, args, count=False) for key, cost in keys))
                if max(waits) > 0:
                    return max(waits)
            waits = await asyncio.gather(*(self._gcra(key, cost, args, count=True) for key, cost in keys))
        except EngineError as exc:
            log.warning("rate limit %s not checked, Redis unavailable: %s", name, exc)
            return 0.0
        return max(waits)

    async def _gcra(self, key: str, cost: int, args: tuple[str, str], *, count: bool) -> float:
        wait = await self.shard(key).script(RATE_LIMIT, (key,), (*args, cost, "1" if count else "0"))
        return int(wait) / 1000.0


class _Sent(NamedTuple):
    """Publications written to one shard: their commands (see ``RedisBroker._encode``) and the future of their
    replies, or why they could not be sent."""

    shard: RedisShard
    encoded: list[tuple[bytes, _ScriptCall | None, bytes, bytes]]
    replies: asyncio.Future[list[Any]] | EngineError


class _ScriptCall(NamedTuple):
    head: bytes  # EVALSHA, keys and every argument but the epoch and the publication, encoded
    keys: tuple[str, ...]
    args: tuple[bytes | str | int, ...]

    @classmethod
    def build(cls, prefix: str, channel: str, options: PublishOptions, history: bool) -> _ScriptCall:
        key = options.idempotency_key
        keys = (prefix + ".stream." + channel, prefix + ".stream.meta." + channel, f"{prefix}.result.{channel}.{key}")
        args: tuple[bytes | str | int, ...] = (
            ("0" if options.skip_history else "1") if history else "-",
            options.history_size,
            _seconds(options.history_ttl),
            _seconds(options.history_meta_ttl) if options.history_meta_ttl else DEFAULT_META_TTL,
            prefix + ".client." + channel,
            _seconds(options.idempotent_result_ttl) if key else "",
        )
        head = pack_head(3 + len(keys) + len(args) + 2, ("EVALSHA", PUBLISH.sha, len(keys), *keys, *args))
        return cls(head, keys, args)


def _position_reply(reply: Any) -> tuple[int, str, int]:
    try:
        offset, epoch = int(reply[0]), reply[1].decode()
        return offset, epoch, int(reply[2]) if len(reply) > 2 and isinstance(reply[2], int) else 0
    except (TypeError, ValueError, IndexError, AttributeError) as exc:
        raise EngineError(f"unexpected reply from Redis: {reply!r:.200}") from exc


def _publications(entries: list[Any]) -> list[Publication]:
    pubs = []
    for entry_id, fields in entries:
        body = b""
        for i in range(0, len(fields) - 1, 2):
            if fields[i] == b"d":
                body = fields[i + 1]
                break
        try:
            pub = decode_publication(body)
            pub.offset = int(entry_id.partition(b"-")[0])
        except (MalformedMessage, UnicodeDecodeError, ValueError) as exc:
            raise EngineError(f"malformed history entry {entry_id!r}: {exc}") from exc
        pubs.append(pub)
    return pubs
