"""The node: owns the configuration, the engine, the hub and every client session.

Clients and the server API call into the node; the broker calls back into it
(:class:`~neoevents.engines.base.BrokerEventHandler`). A once-a-second tick drives pings, pong
deadlines, stale connections and token expiry with a timing wheel, so idle connections cost no
timers of their own.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from msgspec import Raw

from neoevents.auth.rules import AccessRules, Identity
from neoevents.auth.tokens import TokenVerifier
from neoevents.cluster import Cluster
from neoevents.config import Config, NamespaceOptions
from neoevents.eager import run_eagerly
from neoevents.engines.base import (
    Broker,
    HistoryFilter,
    PresenceManager,
    PublishOptions,
    SharedBudgets,
    StreamPosition,
)
from neoevents.exceptions import ProtocolError
from neoevents.hub import Hub
from neoevents.ids import IdGenerator
from neoevents.metrics import Metrics
from neoevents.protocol import codes
from neoevents.protocol.messages import (
    EMPTY,
    ClientInfo,
    Publication,
    Push,
    Refresh,
    Reply,
    SubscribeRequest,
    SubscribeResult,
    Unsubscribe,
)
from neoevents.ratelimit import RateLimits

if TYPE_CHECKING:
    from neoevents.client import Client, Subscription

MAX_TTL = 365 * 24 * 3600
#: Seconds between housekeeping ticks: the ping wheel has one slot per tick of the ping interval. A tenth of a
#: second spread the pings finer but cost about a quarter more CPU per idle connection (pongs then arrive in
#: smaller batches, each with its own loop iteration).
TICK = 1.0
#: Ticks between sweeps of the engine's expired entries (10 s).
SWEEP_TICKS = round(10 / TICK)

log = logging.getLogger("neoevents.node")

_ACTIONS = ("subscribe", "publish", "history", "presence")


# Marks the place of possibly lost publications among those held for a joining subscriber.
_GAP: tuple[Publication, StreamPosition] = (Publication(), StreamPosition())


class Subject(Protocol):
    """Who asks for a channel action: a client connection, or a user token on the HTTP API."""

    @property
    def user(self) -> str: ...

    @property
    def identity(self) -> Identity: ...

    @property
    def subs(self) -> Mapping[str, object]: ...


class Node:
    def __init__(
        self,
        config: Config,
        broker: Broker,
        presence: PresenceManager,
        *,
        metrics: Metrics | None = None,
        tokens: TokenVerifier | None = None,
    ) -> None:
        self.config = config
        self.broker = broker
        self.presence = presence
        self.metrics = metrics or Metrics()
        self.tokens = tokens or TokenVerifier(config)
        # None unless enable_rate_limit: the hot paths check only this attribute.
        # With an engine whose budgets every node shares (Redis), the tenants' API quota is cluster-wide.
        shared = cast(SharedBudgets, broker) if callable(getattr(broker, "spend", None)) else None
        self.limits = RateLimits(config, self.metrics, shared=shared) if config.enable_rate_limit else None
        self.rules = AccessRules(config)
        self.hub = Hub()
        self.ids = IdGenerator()
        self.started_at = time.time()
        self.cluster = Cluster(self)
        self._namespaces: dict[str, NamespaceOptions] = {ns.name: ns for ns in config.namespaces}
        self._namespaces[""] = config.channel
        self.clients: dict[str, Client] = {}
        self.users: dict[str, set[Client]] = {}
        self._pending: dict[Client, float] = {}  # opened, not yet connected -> stale deadline
        self._wheel_size = max(1, round(config.ping_interval / TICK))
        self._wheel: list[set[Client]] = [set() for _ in range(self._wheel_size)]
        self._slot_of: dict[Client, int] = {}
        self._tick_count = 0
        self._pongs: dict[Client, float] = {}
        # Expiry deadlines refer to clients by id, so that a closed client is not kept alive until its deadline.
        self._expiry: list[tuple[float, int, str]] = []
        self._sub_expiry: list[tuple[float, int, str, str, int]] = []
        self._seq = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._plain_options: dict[str, PublishOptions] = {}
        # Engines that never wait (memory) publish through a plain call: no coroutine on the hot path.
        self._publish_now: Callable[[str, bytes, PublishOptions], tuple[StreamPosition, bool]] | None = getattr(
            broker, "publish_now", None
        )
        self._ticker: asyncio.Task[None] | None = None
        self._ping_cache: dict[int, bytes] = {}
        # channel -> subscribers whose subscribe is in progress -> publications held for them
        self._joining: dict[str, dict[Client, list[tuple[Publication, StreamPosition]]]] = {}

    # ---- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.broker.start(self, node_id=self.cluster.uid)
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())
        self.cluster.start()

    async def shutdown(self) -> None:
        """Close every client with 3001 (reconnect) and stop the engine."""
        for client in list(self._pending) + list(self.clients.values()):
            client.disconnect(codes.DISCONNECT_SHUTDOWN)
        if self._ticker is not None:
            self._ticker.cancel()
        await self.cluster.stop()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
        await self.broker.close()
        await self.presence.close()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def run(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` now, up to its first suspension; if it suspends, it goes on as a task (as with
        :meth:`spawn`). A command that needs no I/O (the memory engine, tokens with keys in memory) is
        then handled in the callback that received it: no task, no extra loop iteration."""
        run_eagerly(coro, self.spawn, log)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    # ---- channels and permissions --------------------------------------------------------------

    def namespace_for(self, channel: str) -> NamespaceOptions | None:
        name = channel[1:] if channel.startswith("$") else channel
        idx = name.find(":")
        return self._namespaces.get(name[:idx] if idx >= 0 else "")

    def authorize(
        self,
        subject: Subject | None,
        channel: str,
        ns: NamespaceOptions,
        action: str,
        *,
        sub_token: bool = False,
        from_token: bool = False,
    ) -> None:
        """The one authorisation entry point for a channel action: raises 107 (a name its namespace's pattern
        does not accept) or 103 when :meth:`permission` refuses, after counting and logging the reason."""
        if subject is None and ns.name not in self.rules.namespaces:
            return  # the trusted server, and no rules to check the channel name against
        reason = self.permission(subject, channel, ns, action, sub_token=sub_token, from_token=from_token)
        if reason is None:
            return
        self.metrics.auth_failure(reason)
        user = subject.user if subject is not None else "(server)"
        log.info("%s %r by user %r refused: %s", action, channel[:300], user[:100], reason)
        raise ProtocolError(codes.ERROR_BAD_REQUEST if reason == "invalid_channel" else codes.ERROR_PERMISSION_DENIED)

    def permission(
        self,
        subject: Subject | None,
        channel: str,
        ns: NamespaceOptions,
        action: str,
        *,
        sub_token: bool = False,
        from_token: bool = False,
    ) -> str | None:
        """None when ``subject`` may do ``action`` on ``channel``, else the reason it may not (no side effects).

        ``subject`` None is the trusted server (API key): only the channel name is checked. ``sub_token``: the
        subscribe carries a valid subscription token for this user and channel; ``from_token``: a server-side
        subscription from the connection token's ``channels``/``subs``. A namespace with rules checks the name
        against its pattern (``invalid_channel``) and the action's rule; one without keeps the Centrifugo
        options, where a subscription token or the connection token grants the subscription.
        """
        rules = self.rules.get(ns.name)
        if rules is not None:
            values = rules.match(channel)
            if values is None:
                return "invalid_channel"
            if subject is None:
                return None
            rule = rules.rules[action]
            if rule is None:
                return "token_channel_denied" if from_token else f"{action}_denied"
            allowed = rule.evaluate(subject.identity, channel, values, channel in subject.subs, sub_token)
            if allowed is True:
                return None
            if from_token:
                return "token_channel_denied"
            return "rule_error" if allowed is None else f"{action}_denied"
        if subject is None or sub_token or from_token:
            return None
        anonymous = subject.user == ""
        subscribed = channel in subject.subs
        if channel.startswith("$") and action == "subscribe":
            allowed = False
        elif action == "subscribe":
            allowed = ns.allow_subscribe_for_client and (not anonymous or ns.allow_subscribe_for_anonymous)
        elif action == "publish":
            allowed = (ns.allow_publish_for_client or (ns.allow_publish_for_subscriber and subscribed)) and (
                not anonymous or ns.allow_publish_for_anonymous
            )
        elif action == "history":
            allowed = (ns.allow_history_for_client or (ns.allow_history_for_subscriber and subscribed)) and (
                not anonymous or ns.allow_history_for_anonymous
            )
        elif action == "presence":
            allowed = (ns.allow_presence_for_client or (ns.allow_presence_for_subscriber and subscribed)) and (
                not anonymous or ns.allow_presence_for_anonymous
            )
        else:  # pragma: no cover - closed set
            allowed = False
        return None if allowed else f"{action}_denied"

    def user_connection_limit_reached(self, user: str) -> bool:
        """Whether a new connection of ``user`` is over ``client_connection_limit`` (the node's connections)
        or ``client_user_connection_limit`` (the user's, on this node); either closes it with 3504."""
        node_limit = self.config.client_connection_limit
        if node_limit > 0 and len(self.clients) >= node_limit:
            return True
        limit = self.config.client_user_connection_limit
        if limit <= 0 or not user:
            return False
        return len(self.users.get(user, ())) >= limit

    # ---- client life cycle ---------------------------------------------------------------------

    def on_client_opened(self, client: Client) -> None:
        self._pending[client] = time.monotonic() + self.config.client_stale_close_delay

    def on_client_connected(self, client: Client) -> None:
        self._pending.pop(client, None)
        self.clients[client.id] = client
        users = self.users.get(client.user)
        if users is None:
            users = self.users[client.user] = set()
        users.add(client)
        if self.config.ping_interval > 0:  # 0: no pings (the connect reply says so with "ping": 0)
            # The first ping comes between half an interval and a full interval after connect (uniformly).
            first = (self._wheel_size + 1) // 2
            delay = first + int(random.random() * (self._wheel_size - first + 1))
            slot = (self._tick_count + delay) % self._wheel_size
            self._wheel[slot].add(client)
            self._slot_of[client] = slot
        self._schedule_expiry(client)
        self.metrics.connections += 1

    def on_client_refreshed(self, client: Client) -> None:
        self._schedule_expiry(client)

    def schedule_subscription_expiry(self, client: Client, channel: str, expire_at: int) -> None:
        """Unsubscribe (2501, the SDK resubscribes with a fresh token) if not refreshed in time."""
        self._seq += 1
        deadline = expire_at + self.config.client_expired_sub_close_delay
        heapq.heappush(self._sub_expiry, (deadline, self._seq, client.id, channel, expire_at))

    def _expire_subscriptions(self, wall: float) -> None:
        while self._sub_expiry and self._sub_expiry[0][0] <= wall:
            _, _, client_id, channel, expire_at = heapq.heappop(self._sub_expiry)
            client = self.clients.get(client_id)
            sub = client.subs.get(channel) if client is not None else None
            if client is None or sub is None or sub.expire_at != expire_at:
                continue  # gone, unsubscribed, or refreshed since
            del client.subs[channel]
            expired = Unsubscribe(code=codes.UNSUBSCRIBE_EXPIRED.code, reason=codes.UNSUBSCRIBE_EXPIRED.reason)
            client.send_reply(Reply(push=Push(channel=channel, unsubscribe=expired)))
            self.spawn(self.unsubscribe_client(client, channel, sub))

    def _schedule_expiry(self, client: Client) -> None:
        if client.exp:
            self._seq += 1
            deadline = client.exp + self.config.client_expired_close_delay
            heapq.heappush(self._expiry, (deadline, self._seq, client.id))

    def on_client_closed(self, client: Client, was_connected: bool) -> None:
        self._pending.pop(client, None)
        self._pongs.pop(client, None)
        slot = self._slot_of.pop(client, None)
        if slot is not None:
            self._wheel[slot].discard(client)
        if not was_connected:
            return
        self.metrics.connections -= 1
        self.clients.pop(client.id, None)
        users = self.users.get(client.user)
        if users is not None:
            users.discard(client)
            if not users:
                del self.users[client.user]
        subs = client.subs
        client.subs = {}
        for channel, sub in subs.items():
            # Eagerly: with the memory engine nothing here waits, and a storm of closes then costs no task each.
            self.run(self.unsubscribe_client(client, channel, sub))

    # ---- subscriptions -------------------------------------------------------------------------

    async def subscribe_client(
        self, client: Client, channel: str, sub: Subscription, req: SubscribeRequest, ns: NamespaceOptions
    ) -> SubscribeResult:
        result = SubscribeResult()
        recoverable = ns.history_enabled and (ns.force_recovery or (ns.allow_recovery and req.recoverable))
        positioned = ns.history_enabled and (
            recoverable or ns.force_positioning or (ns.allow_positioning and req.positioned)
        )
        # Until the reply is out, the channel's publications for this subscriber are held back (_joined).
        self._joining.setdefault(channel, {})[client] = []
        info = client.client_info(sub.info) if ns.presence or ns.join_leave else None
        try:
            if not self.hub.num_subscribers(channel):
                await self.broker.subscribe(channel)
            if info is not None and ns.presence:
                await self.presence.add_presence(channel, client.id, info)
            if req.recover:
                result.was_recovering = True
            if positioned:
                sub.positioned = True
                sub.recoverable = recoverable
                result.positioned = True
                result.recoverable = recoverable
                if recoverable and req.recover:
                    await self._recover(channel, req, result, ns)
                else:
                    _, position = await self.broker.history(
                        channel, HistoryFilter(limit=0), ns.history_ttl, ns.history_meta_ttl
                    )
                    result.offset, result.epoch = position.offset, position.epoch
        except BaseException:
            await self._abandon_join(client, channel, sub, ns.presence)
            raise
        client.after_reply(self._joined(client, channel, sub, result))
        if info is not None and ns.join_leave:
            # Announced once the subscriber has its subscribe reply, so it can receive its own join.
            client.after_reply(self.broker.publish_join(channel, info))
        self.metrics.subscriptions += 1
        return result

    async def _recover(
        self, channel: str, req: SubscribeRequest, result: SubscribeResult, ns: NamespaceOptions
    ) -> None:
        limit = self.config.client_recovery_max_publication_limit
        pubs, position = await self.broker.history(
            channel,
            HistoryFilter(since=StreamPosition(req.offset, req.epoch), limit=-1),
            ns.history_ttl,
            ns.history_meta_ttl,
        )
        result.epoch = position.epoch
        recovered = req.epoch == position.epoch
        if recovered:
            recovered = pubs[0].offset == req.offset + 1 if pubs else position.offset == req.offset
        if recovered and limit > 0 and len(pubs) > limit:
            recovered = False
            pubs = pubs[-limit:]
        result.recovered = recovered
        result.publications = pubs if recovered else []
        result.offset = req.offset if recovered and pubs else position.offset
        self.metrics.recovery(recovered)

    async def unsubscribe_client(self, client: Client, channel: str, sub: Subscription) -> None:
        self.hub.remove(channel, client)
        self._leave_joining(channel, client)
        await self._release(channel)
        ns = self.namespace_for(channel)
        self.metrics.subscriptions -= 1
        if ns is None:
            return
        if ns.presence:
            await self.presence.remove_presence(channel, client.id, client.user)
        if ns.join_leave:
            await self.broker.publish_leave(channel, client.client_info(sub.info))

    # ---- subscriptions in progress (an engine that answers asynchronously) ------------------------
    #
    # A subscriber joins the hub only once its subscribe reply is out: publications that arrive while the
    # engine is being asked (PUB/SUB subscription, presence, history) are held in ``_joining`` and sent
    # right after the reply, without those a positioned subscriber already has (offset <= its position).

    def _leave_joining(self, channel: str, client: Client) -> list[tuple[Publication, StreamPosition]] | None:
        joining = self._joining.get(channel)
        held = joining.pop(client, None) if joining is not None else None
        if joining is not None and not joining:
            del self._joining[channel]
        return held

    async def _release(self, channel: str) -> None:
        """Stop receiving ``channel`` from the broker when no subscriber is left or joining."""
        if not self.hub.num_subscribers(channel) and channel not in self._joining:
            await self.broker.unsubscribe(channel)

    async def _abandon_join(self, client: Client, channel: str, sub: Subscription, presence: bool) -> None:
        """A subscribe failed half-way (engine error): undo it, so the client can simply try again."""
        if client.subs.get(channel) is sub:
            del client.subs[channel]
        else:
            self.metrics.subscriptions += 1  # unsubscribe_client ran for it and counted it down
        if self._leave_joining(channel, client) is not None:
            await self._release(channel)
        if presence:
            await self.presence.remove_presence(channel, client.id, client.user)

    async def _joined(self, client: Client, channel: str, sub: Subscription, result: SubscribeResult) -> None:
        held = self._leave_joining(channel, client)
        if held is None:
            return  # unsubscribed meanwhile: unsubscribe_client did the rest
        if client.subs.get(channel) is not sub:
            await self._release(channel)  # dropped meanwhile; its unsubscribe_client finds nothing to release
            return
        self.hub.add(channel, client, sub)
        last = max(result.offset, result.publications[-1].offset if result.publications else 0)
        for pub, position in held:
            if sub.positioned and (pub is _GAP[0] or (pub.offset and position.epoch != result.epoch)):
                self._insufficient_state(client, channel, sub)
                return
            if pub is _GAP[0]:
                continue
            if sub.positioned and pub.offset:
                if pub.offset > last + 1:
                    self._insufficient_state(client, channel, sub)
                    return
                if pub.offset <= last:
                    continue
                last = pub.offset
            client.send_reply(Reply(push=Push(channel=channel, pub=pub)))

    def _insufficient_state(self, client: Client, channel: str, sub: Subscription) -> None:
        """The subscriber may have missed publications: 2500 (the SDK resubscribes and recovers), or 3010
        for a server-side subscription, as the reference server does."""
        if client.subs.get(channel) is not sub:
            return
        if sub.server_side:
            client.disconnect(codes.DISCONNECT_INSUFFICIENT_STATE)
            return
        del client.subs[channel]
        self.hub.remove(channel, client)
        code = codes.UNSUBSCRIBE_INSUFFICIENT
        unsubscribe = Unsubscribe(code=code.code, reason=code.reason)
        client.send_reply(Reply(push=Push(channel=channel, unsubscribe=unsubscribe)))
        self.spawn(self.unsubscribe_client(client, channel, sub))

    # ---- publishing, history -------------------------------------------------------------------

    def publish_options(
        self,
        ns: NamespaceOptions,
        info: ClientInfo | None = None,
        tags: dict[str, str] | None = None,
        idempotency_key: str = "",
        skip_history: bool = False,
    ) -> PublishOptions:
        """What the engine needs to know about one publication into a channel of ``ns``."""
        if info is None and not tags and not idempotency_key and not skip_history:
            # The common case: the namespace's options as they are (one struct per namespace, reused).
            options = self._plain_options.get(ns.name)
            if options is None:
                options = self._plain_options[ns.name] = PublishOptions(
                    history_size=ns.history_size, history_ttl=ns.history_ttl, history_meta_ttl=ns.history_meta_ttl
                )
            return options
        return PublishOptions(
            history_size=ns.history_size,
            history_ttl=ns.history_ttl,
            history_meta_ttl=ns.history_meta_ttl,
            skip_history=skip_history,
            idempotency_key=idempotency_key,
            tags=tags or {},
            info=info,
        )

    async def publish(
        self,
        channel: str,
        data: bytes,
        *,
        info: ClientInfo | None = None,
        tags: dict[str, str] | None = None,
        idempotency_key: str = "",
        skip_history: bool = False,
        ns: NamespaceOptions | None = None,
    ) -> tuple[StreamPosition, bool]:
        """Publish into ``channel`` (its namespace ``ns`` when the caller has already looked it up)."""
        if ns is None:
            ns = self.namespace_for(channel)
            if ns is None:
                raise ProtocolError(codes.ERROR_UNKNOWN_CHANNEL)
        started = time.perf_counter()
        options = self.publish_options(ns, info, tags, idempotency_key, skip_history)
        if self._publish_now is not None:
            result = self._publish_now(channel, data, options)
        else:
            result = await self.broker.publish(channel, data, options)
        self.metrics.published(ns.name, time.perf_counter() - started)
        return result

    @property
    def engine_publish_now(self) -> Callable[[str, bytes, PublishOptions], tuple[StreamPosition, bool]] | None:
        """The engine's own synchronous publish (None unless :attr:`publishes_synchronously`): no namespace
        check and no metric, for a caller that does both itself on a hot path."""
        return self._publish_now

    @property
    def publishes_synchronously(self) -> bool:
        """True when the engine publishes without waiting (the memory engine): :meth:`publish_now` works."""
        return self._publish_now is not None

    def publish_now(
        self,
        channel: str,
        data: bytes,
        ns: NamespaceOptions,
        *,
        info: ClientInfo | None = None,
        tags: dict[str, str] | None = None,
        idempotency_key: str = "",
        skip_history: bool = False,
    ) -> tuple[StreamPosition, bool]:
        """:meth:`publish` without a coroutine, for engines that never wait (see :attr:`publishes_synchronously`)."""
        publish_now = self._publish_now
        if publish_now is None:
            raise RuntimeError("the engine publishes asynchronously: use publish()")
        started = time.perf_counter()
        result = publish_now(channel, data, self.publish_options(ns, info, tags, idempotency_key, skip_history))
        self.metrics.published(ns.name, time.perf_counter() - started)
        return result

    async def publish_many(
        self, items: Sequence[tuple[str, bytes, NamespaceOptions, PublishOptions]]
    ) -> list[tuple[StreamPosition, bool] | ProtocolError]:
        """Publish every ``(channel, data, namespace, options)`` of ``items``, issued together in this order
        (batch and broadcast API calls): one call when the engine has ``publish_many``
        (:class:`~neoevents.engines.base.BatchPublisher`), else one publication after another. Each item gets
        its own result: (position, suppressed), or the :class:`ProtocolError` that failed it."""
        publish_many = getattr(self.broker, "publish_many", None)
        published = self.metrics.published
        results: list[tuple[StreamPosition, bool] | ProtocolError] = []
        if publish_many is None:
            for channel, data, ns, options in items:
                started = time.perf_counter()
                try:
                    results.append(await self.broker.publish(channel, data, options))
                except ProtocolError as exc:
                    results.append(exc)
                    continue
                published(ns.name, time.perf_counter() - started)
            return results
        if not items:
            return results
        started = time.perf_counter()
        results.extend(await publish_many([(channel, data, options) for channel, data, _, options in items]))
        elapsed = time.perf_counter() - started
        counts: dict[str, int] = {}
        for item, result in zip(items, results, strict=True):
            if type(result) is tuple:
                name = item[2].name
                counts[name] = counts.get(name, 0) + 1
        self.metrics.published_concurrently(counts, elapsed)
        return results

    async def history(
        self, channel: str, *, limit: int, since: tuple[int, str] | None = None, reverse: bool = False
    ) -> tuple[list[Publication], StreamPosition]:
        ns = self.namespace_for(channel)
        if ns is None:
            raise ProtocolError(codes.ERROR_UNKNOWN_CHANNEL)
        if not ns.history_enabled:
            raise ProtocolError(codes.ERROR_NOT_AVAILABLE)
        flt = HistoryFilter(since=StreamPosition(*since) if since else None, limit=limit, reverse=reverse)
        pubs, position = await self.broker.history(channel, flt, ns.history_ttl, ns.history_meta_ttl)
        if since is not None and since[1] and since[1] != position.epoch:
            raise ProtocolError(codes.ERROR_UNRECOVERABLE_POSITION)
        return pubs, position

    # ---- broker events -------------------------------------------------------------------------

    def handle_publication(self, channel: str, pub: Publication, position: StreamPosition) -> None:
        delivered = self.hub.broadcast_publication(channel, pub)
        if delivered:
            self.metrics.delivered(delivered)
        if self._joining:
            for held in self._joining.get(channel, {}).values():
                held.append((pub, position))

    def handle_join(self, channel: str, info: ClientInfo) -> None:
        self.hub.broadcast_join(channel, info)

    def handle_leave(self, channel: str, info: ClientInfo) -> None:
        self.hub.broadcast_leave(channel, info)

    def handle_control(self, data: bytes) -> None:
        self.cluster.handle(data)

    def handle_insufficient_state(self, channel: str) -> None:
        """Publications of ``channel`` may have been lost before this node: positioned subscribers recover."""
        for client, sub in self.hub.subscribers(channel):
            if sub.positioned:
                self._insufficient_state(client, channel, sub)
        for held in self._joining.get(channel, {}).values():
            held.append(_GAP)

    # ---- server-side actions (server API) ------------------------------------------------------

    def user_clients(self, user: str, client_id: str = "") -> list[Client]:
        if not user:
            return []
        clients = list(self.users.get(user, ()))
        if client_id:
            clients = [c for c in clients if c.id == client_id]
        return clients

    def disconnect_user(
        self, user: str, disconnect: codes.Disconnect, client_id: str = "", whitelist: tuple[str, ...] = ()
    ) -> None:
        for client in self.user_clients(user, client_id):
            if client.id not in whitelist:
                client.disconnect(disconnect)

    async def unsubscribe_user(self, user: str, channel: str, client_id: str = "") -> None:
        for client in self.user_clients(user, client_id):
            sub = client.subs.pop(channel, None)
            # The push goes out even when the client was not subscribed, as the reference does.
            push = Push(
                channel=channel,
                unsubscribe=Unsubscribe(code=codes.UNSUBSCRIBE_SERVER.code, reason=codes.UNSUBSCRIBE_SERVER.reason),
            )
            client.send_reply(Reply(push=push))
            if sub is not None:
                await self.unsubscribe_client(client, channel, sub)

    async def subscribe_user(
        self, user: str, channel: str, client_id: str = "", *, info: bytes = b"", data: bytes = b""
    ) -> None:
        """Subscribe the user's connections (all, or one client) and tell them with a ``subscribe`` push."""
        from neoevents.client import Subscription
        from neoevents.protocol.messages import Subscribe

        ns = self.namespace_for(channel)
        if ns is None:
            raise ProtocolError(codes.ERROR_UNKNOWN_CHANNEL)
        for client in self.user_clients(user, client_id):
            if channel in client.subs:
                continue
            sub = Subscription()
            sub.server_side = True
            sub.join_leave = ns.join_leave
            sub.info = info
            client.subs[channel] = sub
            result = await self.subscribe_client(client, channel, sub, SubscribeRequest(channel=channel), ns)
            push = Push(
                channel=channel,
                subscribe=Subscribe(
                    recoverable=result.recoverable,
                    epoch=result.epoch,
                    offset=result.offset,
                    positioned=result.positioned,
                    data=Raw(data) if data else EMPTY,
                ),
            )
            client.send_reply(Reply(push=push))
            await client.run_after_reply()

    def refresh_user(self, user: str, client_id: str = "", expired: bool = False, expire_at: int = 0) -> None:
        for client in self.user_clients(user, client_id):
            if expired:
                client.disconnect(codes.DISCONNECT_EXPIRED)
                continue
            client.exp = expire_at
            self._schedule_expiry(client)
            ttl = min(max(0, expire_at - int(time.time())), MAX_TTL) if expire_at else 0
            client.send_reply(Reply(push=Push(refresh=Refresh(expires=bool(expire_at), ttl=ttl))))

    # ---- housekeeping --------------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                self.tick()
            except Exception:  # pragma: no cover - must never stop the ticker
                log.exception("housekeeping tick failed")

    def tick(self) -> None:
        now = time.monotonic()
        self._tick_count += 1
        # Stale connections: opened but never sent connect.
        for client in _due(self._pending, now):
            client.disconnect(codes.DISCONNECT_STALE)
        # Pong deadlines.
        for client in _due(self._pongs, now):
            del self._pongs[client]
            if client.ping_sent > 0:
                client.disconnect(codes.DISCONNECT_NO_PONG)
        # Pings for this wheel slot.
        slot = self._wheel[self._tick_count % self._wheel_size]
        pong_deadline = now + self.config.pong_timeout
        for client in slot:
            transport = client.transport
            frame = self._ping_cache.get(transport.framing)
            if frame is None:
                frame = self._ping_cache[transport.framing] = transport.frame(transport.codec.ping)
            transport.send_frame(frame)
            if client.ping_sent <= 0:
                client.ping_sent = now
                self._pongs.pop(client, None)  # (re)inserted last: the table stays in deadline order
                self._pongs[client] = pong_deadline
        # Connection token expiry.
        wall = time.time()
        while self._expiry and self._expiry[0][0] <= wall:
            _, _, client_id = heapq.heappop(self._expiry)
            expiring = self.clients.get(client_id)
            if expiring is not None and expiring.exp and expiring.exp + self.config.client_expired_close_delay <= wall:
                expiring.disconnect(codes.DISCONNECT_EXPIRED)
        self._expire_subscriptions(wall)
        sweep = getattr(self.broker, "sweep", None)
        if sweep is not None and self._tick_count % SWEEP_TICKS == 0:
            sweep()


def _due(deadlines: dict[Client, float], now: float) -> list[Client]:
    """The clients whose deadline has passed. Deadlines are added in the order they fall due (a fixed delay
    from the monotonic clock), so the scan stops at the first one still ahead: a tick costs what is due."""
    due = []
    for client, deadline in deadlines.items():
        if deadline > now:
            break
        due.append(client)
    return due
