"""The server API executor: one transport-agnostic implementation of every server API method.

Input is validated into typed structs (wrong shape -> 107 bad request); the result is a plain value
ready for JSON. The HTTP layer (:mod:`neoevents.api.http`) only decodes bodies and wraps results.

Every method runs either for the trusted server (the API key: ``who`` is None) or for a user who sent their
own JWT (an :class:`ApiUser`). A user may call only :data:`USER_METHODS`, and each channel goes through
:meth:`Node.authorize <neoevents.node.Node.authorize>` exactly as a WebSocket command would.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
from msgspec import Raw, Struct

from neoevents.auth.rules import Identity
from neoevents.config import NamespaceOptions
from neoevents.engines.base import PublishOptions, StreamPosition
from neoevents.exceptions import ProtocolError
from neoevents.node import Node
from neoevents.protocol import codes
from neoevents.protocol.messages import EMPTY, ClientInfo

log = logging.getLogger("neoevents.api")


class _P(Struct, forbid_unknown_fields=False):
    pass


class PublishParams(_P):
    channel: str = ""
    data: Raw = EMPTY
    b64data: str = ""
    skip_history: bool = False
    tags: dict[str, str] = {}
    idempotency_key: str = ""
    delta: bool = False


class BroadcastParams(_P):
    channels: list[str] = []
    data: Raw = EMPTY
    b64data: str = ""
    skip_history: bool = False
    tags: dict[str, str] = {}
    idempotency_key: str = ""
    delta: bool = False


class UserChannelParams(_P):
    user: str = ""
    channel: str = ""
    client: str = ""
    session: str = ""


class SubscribeParams(UserChannelParams):
    info: Raw = EMPTY
    data: Raw = EMPTY


class DisconnectObj(_P):
    code: int = 0
    reason: str = ""


class DisconnectParams(_P):
    user: str = ""
    client: str = ""
    session: str = ""
    whitelist: list[str] = []
    disconnect: DisconnectObj | None = None


class RefreshParams(_P):
    user: str = ""
    client: str = ""
    session: str = ""
    expired: bool = False
    expire_at: int = 0


class ChannelParams(_P):
    channel: str = ""


class StreamPositionParams(_P):
    offset: int = 0
    epoch: str = ""


class HistoryParams(_P):
    channel: str = ""
    limit: int = 0
    since: StreamPositionParams | None = None
    reverse: bool = False


class ChannelsParams(_P):
    pattern: str = ""


class InfoParams(_P):
    pass


def _bad_request() -> ProtocolError:
    return ProtocolError(codes.ERROR_BAD_REQUEST)


def _payload(data: Raw, b64data: str) -> bytes:
    if b64data:
        try:
            return base64.b64decode(b64data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _bad_request() from exc
    if data == EMPTY:
        raise _bad_request()
    return bytes(data)


def _is_plain(p: PublishParams) -> bool:
    """Plain data with no tags, idempotency key or history skip: when the server publishes it into a namespace
    without publish rules, nothing beyond the namespace needs working out (see Executor._plain_target)."""
    return not (p.b64data or p.tags or p.idempotency_key or p.skip_history) and p.data != EMPTY


def _error(exc: ProtocolError) -> dict[str, Any]:
    return {"error": {"code": exc.code, "message": str(exc)}}


#: How many channels :meth:`Executor._plain_target` remembers one by one; a full table starts over.
_PLAIN_CHANNELS: Final = 16_384
#: The reply to a publication without a stream position (never changed: replies only get encoded).
_NO_POSITION: Final[dict[str, Any]] = {"publish": {}}


def _position(offset: int, epoch: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if offset:
        out["offset"] = offset
    if epoch:
        out["epoch"] = epoch
    return out


#: Methods a user token may call (everything else is the trusted server's).
USER_METHODS: Final = frozenset({"publish", "broadcast", "history", "presence", "presence_stats"})


@dataclass(frozen=True, slots=True)
class ApiUser:
    """A user authenticated by their own connection JWT on the HTTP API (never subscribed to anything)."""

    user: str
    identity: Identity
    info: bytes = b""
    subs: Mapping[str, object] = field(default_factory=dict)

    def client_info(self) -> ClientInfo:
        return ClientInfo(user=self.user, client="", conn_info=Raw(self.info) if self.info else EMPTY)


Method = Callable[[Any, "ApiUser | None"], Awaitable[Any]]
# A publication ready for Node.publish_many (channel, data, namespace, options), or why it cannot be made.
_Prepared = tuple[str, bytes, NamespaceOptions, PublishOptions] | ProtocolError


class Executor:
    """Runs server API commands against a node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        # Per namespace name: (its options, the plain target or None); and the plain targets of the first
        # channels published to (see _plain_target).
        self._plain_targets: dict[str, tuple[NamespaceOptions, tuple[NamespaceOptions, PublishOptions] | None]] = {}
        self._plain_channels: dict[str, tuple[NamespaceOptions, PublishOptions]] = {}
        self._methods: dict[str, tuple[type[Struct], Method]] = {
            "publish": (PublishParams, self.publish),
            "broadcast": (BroadcastParams, self.broadcast),
            "subscribe": (SubscribeParams, self.subscribe),
            "unsubscribe": (UserChannelParams, self.unsubscribe),
            "disconnect": (DisconnectParams, self.disconnect),
            "refresh": (RefreshParams, self.refresh),
            "presence": (ChannelParams, self.presence),
            "presence_stats": (ChannelParams, self.presence_stats),
            "history": (HistoryParams, self.history),
            "history_remove": (ChannelParams, self.history_remove),
            "channels": (ChannelsParams, self.channels),
            "info": (InfoParams, self.info),
        }

    def has_method(self, method: str) -> bool:
        return method in self._methods or method == "batch"

    def decode_params(self, method: str, params: Any) -> Struct:
        spec = self._methods.get(method)
        if spec is None:
            raise ProtocolError(codes.ERROR_METHOD_NOT_FOUND)
        try:
            if isinstance(params, bytes | bytearray | memoryview):
                return msgspec.json.decode(params, type=spec[0])
            return msgspec.convert(params, spec[0])
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            # RecursionError: a body nested deeper than the decoder allows.
            raise _bad_request() from exc

    async def call(self, method: str, params: Any, who: ApiUser | None = None) -> Any:
        """Run one method on raw (JSON bytes) or decoded params; raises ProtocolError for caller mistakes."""
        spec = self._methods.get(method)
        if spec is None:
            raise ProtocolError(codes.ERROR_METHOD_NOT_FOUND)
        if who is not None and method not in USER_METHODS:
            self.node.metrics.auth_failure("api_method_denied")
            raise ProtocolError(codes.ERROR_PERMISSION_DENIED)
        decoded = params if isinstance(params, spec[0]) else self.decode_params(method, params)
        result = await spec[1](decoded, who)
        self.node.metrics.api_request(method, True)
        return result

    async def call_safe(self, method: str, params: Any, who: ApiUser | None = None) -> dict[str, Any]:
        """``{"result": ...}`` or ``{"error": {...}}``; never raises."""
        try:
            return {"result": await self.call(method, params, who)}
        except Exception as exc:
            return self._error_reply(method, exc)

    def publish_reply_now(self, p: PublishParams) -> dict[str, Any]:
        """:meth:`call_safe` of the server's ``publish`` without a coroutine (``node.publishes_synchronously``)."""
        try:
            result = self.publish_now(p)
        except Exception as exc:
            return self._error_reply("publish", exc)
        self.node.metrics.api_request("publish", True)
        return {"result": result}

    def _error_reply(self, method: str, exc: Exception) -> dict[str, Any]:
        if isinstance(exc, ProtocolError):
            # Only known method names become label values: callers choose what they send.
            self.node.metrics.api_request(method if method in self._methods else "unknown", False)
            return {"error": {"code": exc.code, "message": str(exc)}}
        log.error("internal error in API method %s", method, exc_info=exc)
        return {"error": {"code": 100, "message": codes.ERROR_INTERNAL.message}}

    # ---- methods -------------------------------------------------------------------------------

    def _check_channel(self, channel: str, action: str = "", who: ApiUser | None = None) -> NamespaceOptions:
        """Empty (107) and unknown (102) channels; with ``action``, the channel rules (names are checked for
        the trusted server too, the rules themselves for a user). Returns the channel's namespace."""
        if not channel:
            raise _bad_request()
        ns = self.node.namespace_for(channel)
        if ns is None:
            raise ProtocolError(codes.ERROR_UNKNOWN_CHANNEL)
        if action:
            self.node.authorize(who, channel, ns, action)
        return ns

    def publish_now(self, p: PublishParams, who: ApiUser | None = None) -> dict[str, Any]:
        """``publish`` as a plain call, when the engine publishes synchronously (``node.publishes_synchronously``)."""
        ns = self._check_channel(p.channel, "publish", who)
        position, _ = self.node.publish_now(
            p.channel,
            _payload(p.data, p.b64data),
            ns,
            info=who.client_info() if who is not None else None,
            tags=p.tags,
            idempotency_key=p.idempotency_key,
            skip_history=p.skip_history,
        )
        return {} if p.skip_history else _position(position.offset, position.epoch)

    async def publish(self, p: PublishParams, who: ApiUser | None = None) -> dict[str, Any]:
        if self.node.publishes_synchronously:
            return self.publish_now(p, who)
        ns = self._check_channel(p.channel, "publish", who)
        position, _ = await self.node.publish(
            p.channel,
            _payload(p.data, p.b64data),
            info=who.client_info() if who is not None else None,
            tags=p.tags,
            idempotency_key=p.idempotency_key,
            skip_history=p.skip_history,
            ns=ns,
        )
        return {} if p.skip_history else _position(position.offset, position.epoch)

    async def broadcast(self, p: BroadcastParams, who: ApiUser | None = None) -> dict[str, Any]:
        if not p.channels:
            raise _bad_request()
        info = who.client_info() if who is not None else None
        prepared: list[_Prepared] = []
        for channel in p.channels:
            try:
                data = _payload(p.data, p.b64data)
                ns = self._check_channel(channel, "publish", who)
                options = self.node.publish_options(ns, info, p.tags, p.idempotency_key, p.skip_history)
                prepared.append((channel, data, ns, options))
            except ProtocolError as exc:
                prepared.append(exc)
        responses: list[dict[str, Any]] = []
        for result in await self._publish_prepared(prepared):
            if isinstance(result, ProtocolError):
                responses.append(_error(result))
            else:
                responses.append({"result": {} if p.skip_history else _position(result[0].offset, result[0].epoch)})
        return {"responses": responses}

    async def _publish_prepared(self, prepared: list[_Prepared]) -> list[tuple[StreamPosition, bool] | ProtocolError]:
        """Publish the prepared items together (:meth:`Node.publish_many`); errors stay in their places."""
        items = [item for item in prepared if not isinstance(item, ProtocolError)]
        if len(items) == len(prepared):
            return await self.node.publish_many(items)
        results = iter(await self.node.publish_many(items))
        return [item if isinstance(item, ProtocolError) else next(results) for item in prepared]

    async def subscribe(self, p: SubscribeParams, who: ApiUser | None = None) -> dict[str, Any]:
        self._check_channel(p.channel, "subscribe", who)
        await self.node.cluster.subscribe(p.user, p.channel, p.client, info=bytes(p.info), data=bytes(p.data))
        return {}

    async def unsubscribe(self, p: UserChannelParams, who: ApiUser | None = None) -> dict[str, Any]:
        self._check_channel(p.channel)
        await self.node.cluster.unsubscribe(p.user, p.channel, p.client)
        return {}

    async def disconnect(self, p: DisconnectParams, who: ApiUser | None = None) -> dict[str, Any]:
        disconnect = codes.DISCONNECT_FORCE_NO_RECONNECT
        if p.disconnect is not None and p.disconnect.code:
            code = p.disconnect.code
            if not (3000 <= code <= 4999):
                raise _bad_request()
            disconnect = codes.Disconnect(code, codes.close_reason(p.disconnect.reason))  # as sent to other nodes too
        await self.node.cluster.disconnect(p.user, disconnect, p.client, tuple(p.whitelist))
        return {}

    async def refresh(self, p: RefreshParams, who: ApiUser | None = None) -> dict[str, Any]:
        await self.node.cluster.refresh(p.user, p.client, p.expired, p.expire_at)
        return {}

    async def presence(self, p: ChannelParams, who: ApiUser | None = None) -> dict[str, Any]:
        self._check_channel(p.channel)
        ns = self.node.namespace_for(p.channel)
        if ns is None or not ns.presence:
            raise ProtocolError(codes.ERROR_NOT_AVAILABLE)
        self.node.authorize(who, p.channel, ns, "presence")
        entries = await self.node.presence.presence(p.channel)
        return {"presence": entries}

    async def presence_stats(self, p: ChannelParams, who: ApiUser | None = None) -> dict[str, Any]:
        self._check_channel(p.channel)
        ns = self.node.namespace_for(p.channel)
        if ns is None or not ns.presence:
            raise ProtocolError(codes.ERROR_NOT_AVAILABLE)
        self.node.authorize(who, p.channel, ns, "presence")
        clients, users = await self.node.presence.presence_stats(p.channel)
        return {"num_clients": clients, "num_users": users}

    async def history(self, p: HistoryParams, who: ApiUser | None = None) -> dict[str, Any]:
        self._check_channel(p.channel)
        ns = self.node.namespace_for(p.channel)
        if ns is not None and ns.history_enabled:
            self.node.authorize(who, p.channel, ns, "history")
        since = (p.since.offset, p.since.epoch) if p.since is not None else None
        pubs, position = await self.node.history(p.channel, limit=p.limit, since=since, reverse=p.reverse)
        return {"publications": pubs, "epoch": position.epoch, "offset": position.offset}

    async def history_remove(self, p: ChannelParams, who: ApiUser | None = None) -> dict[str, Any]:
        self._check_channel(p.channel, "history", who)
        ns = self.node.namespace_for(p.channel)
        if ns is None or not ns.history_enabled:
            raise ProtocolError(codes.ERROR_NOT_AVAILABLE)
        await self.node.broker.remove_history(p.channel)
        return {}

    async def channels(self, p: ChannelsParams, who: ApiUser | None = None) -> dict[str, Any]:
        found = await self.node.cluster.channels(p.pattern)
        return {"channels": {ch: {"num_clients": n} for ch, n in found.items()}}

    async def info(self, p: InfoParams, who: ApiUser | None = None) -> dict[str, Any]:
        return {"nodes": self.node.cluster.nodes()}

    def decode_batch(self, commands: list[dict[str, Raw]]) -> list[tuple[str, Struct | ProtocolError]]:
        """Decode each ``{"<method>": params}`` of a batch once, straight from its raw bytes into the method's
        struct (payloads keep their exact bytes); a command that cannot be decoded carries its error."""
        decoded: list[tuple[str, Struct | ProtocolError]] = []
        for command in commands:
            if len(command) != 1:
                decoded.append(("", ProtocolError(codes.ERROR_BAD_REQUEST)))
                continue
            ((method, raw),) = command.items()
            try:
                decoded.append((method, self.decode_params(method, bytes(raw))))
            except ProtocolError as exc:
                decoded.append((method, exc))
        return decoded

    async def batch(
        self, commands: list[tuple[str, Struct | ProtocolError]], who: ApiUser | None = None
    ) -> list[dict[str, Any]]:
        """Run decoded batch commands in order; replies are ``{"<method>": result}`` or ``{"error": ...}``.

        With an engine that publishes synchronously (memory), publications go through :meth:`publish_now`: a
        batch of publications is then one loop over plain calls, with no coroutine per command. Otherwise
        consecutive publications are published together (:meth:`Node.publish_many`).
        """
        if not self.node.publishes_synchronously:
            return await self._batch_pipelined(commands, who)
        replies: list[dict[str, Any]] = []
        metrics = self.node.metrics
        published = 0
        # The common publication (the trusted server, plain data, no tags, idempotency key or history skip,
        # a namespace without publish rules) goes straight to the engine: the checks and the metrics of
        # publish_now(), without its call layers. Runs of such publications are timed together.
        plain = self._plain_target
        engine_publish = self.node.engine_publish_now
        assert engine_publish is not None
        counts: dict[str, int] = {}
        perf_counter = time.perf_counter
        started = perf_counter()
        for method, params in commands:
            if isinstance(params, ProtocolError):
                replies.append({"error": {"code": params.code, "message": str(params)}})
                continue
            if type(params) is PublishParams:
                try:
                    if who is None and _is_plain(params) and (target := plain(params.channel)) is not None:
                        position, _ = engine_publish(params.channel, bytes(params.data), target[1])
                        name = target[0].name
                        counts[name] = counts.get(name, 0) + 1
                        replies.append(
                            {"publish": _position(position.offset, position.epoch)}
                            if position.offset or position.epoch
                            else _NO_POSITION
                        )
                    else:
                        replies.append({"publish": self.publish_now(params, who)})
                    published += 1
                except ProtocolError as exc:
                    metrics.api_request("publish", False)
                    replies.append({"error": {"code": exc.code, "message": str(exc)}})
                except Exception:
                    log.exception("internal error in API method publish")
                    replies.append({"error": {"code": 100, "message": codes.ERROR_INTERNAL.message}})
                continue
            if counts:
                metrics.published_together(counts, perf_counter() - started)
                counts = {}
            reply = await self.call_safe(method, params, who)
            replies.append({method: reply["result"]} if "result" in reply else reply)
            started = perf_counter()
        if counts:
            metrics.published_together(counts, perf_counter() - started)
        if published:
            metrics.api_request("publish", True, published)
        return replies

    def _plain_target(self, channel: str) -> tuple[NamespaceOptions, PublishOptions] | None:
        """The namespace and engine options of a channel whose publications by the server need no check beyond
        its namespace (a known one without publish rules), or None: the publication then takes the full path,
        which reports why it cannot be published. Remembered per namespace, and also per channel (a dictionary
        hit instead of the namespace lookup) in a table of ``_PLAIN_CHANNELS`` that starts over when full: on a
        long-running server whose channels come and go, the channels published to now keep their fast path,
        each back in the table after one miss."""
        target = self._plain_channels.get(channel)
        if target is not None:
            return target
        if not channel:
            return None
        node = self.node
        ns = node.namespace_for(channel)
        if ns is None:
            return None
        entry = self._plain_targets.get(ns.name)
        if entry is None or entry[0] is not ns:
            found = None if ns.name in node.rules.namespaces else (ns, node.publish_options(ns))
            entry = self._plain_targets[ns.name] = (ns, found)
        target = entry[1]
        if target is not None:
            if len(self._plain_channels) >= _PLAIN_CHANNELS:
                self._plain_channels.clear()
            self._plain_channels[channel] = target
        return target

    async def _batch_pipelined(
        self, commands: list[tuple[str, Struct | ProtocolError]], who: ApiUser | None
    ) -> list[dict[str, Any]]:
        replies: list[dict[str, Any]] = []
        start = 0
        while start < len(commands):
            method, params = commands[start]
            if isinstance(params, ProtocolError):
                replies.append(_error(params))
                start += 1
                continue
            if method != "publish":
                reply = await self.call_safe(method, params, who)
                replies.append({method: reply["result"]} if "result" in reply else reply)
                start += 1
                continue
            stop = start + 1
            while stop < len(commands) and commands[stop][0] == "publish":
                stop += 1
            replies.extend(await self._publish_batch(commands[start:stop], who))
            start = stop
        return replies

    async def _publish_batch(
        self, commands: list[tuple[str, Struct | ProtocolError]], who: ApiUser | None
    ) -> list[dict[str, Any]]:
        """Replies to consecutive ``publish`` commands of a batch, published together: each exactly what
        :meth:`call_safe` answers for it on its own."""
        metrics = self.node.metrics
        prepared: list[_Prepared] = []
        plain = self._plain_target
        for _, p in commands:
            if who is None and type(p) is PublishParams and _is_plain(p) and (target := plain(p.channel)) is not None:
                # The common publication (see batch()): no check or options to work out beyond its namespace.
                prepared.append((p.channel, bytes(p.data), target[0], target[1]))
                continue
            if not isinstance(p, PublishParams):
                prepared.append(p if isinstance(p, ProtocolError) else _bad_request())
                continue
            try:
                ns = self._check_channel(p.channel, "publish", who)
                data = _payload(p.data, p.b64data)
            except ProtocolError as exc:
                metrics.api_request("publish", False)
                prepared.append(exc)
                continue
            info = who.client_info() if who is not None else None
            options = self.node.publish_options(ns, info, p.tags, p.idempotency_key, p.skip_history)
            prepared.append((p.channel, data, ns, options))
        try:
            results = await self._publish_prepared(prepared)
        except Exception:
            log.exception("internal error in API method publish")
            internal = {"error": {"code": 100, "message": codes.ERROR_INTERNAL.message}}
            return [_error(item) if isinstance(item, ProtocolError) else internal for item in prepared]
        replies: list[dict[str, Any]] = []
        published = 0
        for (_, p), item, result in zip(commands, prepared, results, strict=True):
            if isinstance(result, ProtocolError):
                if not isinstance(item, ProtocolError):
                    metrics.api_request("publish", False)
                replies.append(_error(result))
            else:
                published += 1
                position = result[0]
                if isinstance(p, PublishParams) and p.skip_history:
                    replies.append({"publish": {}})
                elif position.offset or position.epoch:
                    replies.append({"publish": _position(position.offset, position.epoch)})
                else:
                    replies.append(_NO_POSITION)
        if published:
            metrics.api_request("publish", True, published)
        return replies


class _BatchCommand(Struct, forbid_unknown_fields=True):
    """One batch command decoded straight into its method's params: exactly one field is set."""

    publish: PublishParams | None = None
    broadcast: BroadcastParams | None = None
    subscribe: SubscribeParams | None = None
    unsubscribe: UserChannelParams | None = None
    disconnect: DisconnectParams | None = None
    refresh: RefreshParams | None = None
    presence: ChannelParams | None = None
    presence_stats: ChannelParams | None = None
    history: HistoryParams | None = None
    history_remove: ChannelParams | None = None
    channels: ChannelsParams | None = None
    info: InfoParams | None = None


class _TypedBatch(Struct):
    commands: list[_BatchCommand] = []


class _PublishCommand(Struct, forbid_unknown_fields=True):
    """A batch command that is a ``publish``: the usual batch has nothing else."""

    publish: PublishParams


class _PublishBatch(Struct):
    commands: list[_PublishCommand] = []


_typed_batch_decoder = msgspec.json.Decoder(_TypedBatch)
_publish_batch_decoder = msgspec.json.Decoder(_PublishBatch)
_BATCH_METHODS: Final = _BatchCommand.__struct_fields__
_ONE_SET: Final = len(_BATCH_METHODS) - 1  # Nones in a command with exactly one method


def decode_typed_batch(body: bytes) -> list[tuple[str, Struct | ProtocolError]] | None:
    """A well-formed batch body decoded in one pass into typed commands, or None when anything in it is not
    (an unknown method, bad params, a command naming no or two methods): the caller then decodes command by
    command with :meth:`Executor.decode_batch`, which pins each error on its own command."""
    try:
        publications = _publish_batch_decoder.decode(body)
    except msgspec.ValidationError:
        pass  # not only publications: decoded again below
    except (msgspec.DecodeError, RecursionError):
        return None
    else:
        return [("publish", command.publish) for command in publications.commands]
    try:
        batch = _typed_batch_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    out: list[tuple[str, Struct | ProtocolError]] = []
    for command in batch.commands:
        values = msgspec.structs.astuple(command)
        if values.count(None) != _ONE_SET:
            return None
        first = values[0]
        if first is not None:
            out.append(("publish", first))
            continue
        for name, value in zip(_BATCH_METHODS, values, strict=True):
            if value is not None:
                out.append((name, value))
                break
    return out
