"""The per-connection session: protocol state machine and command handlers.

A :class:`Client` never touches a socket. Its transport hands it complete messages (``on_message``)
and tells it when the connection is gone (``on_closed``); the client answers through
``transport.send`` and ends the connection with ``transport.close(disconnect)``. Commands of one
connection are handled strictly in order; pushes and replies share one outgoing queue, so a client
sees them in the order they happened.

Every failure a client can cause is a :class:`~neoevents.exceptions.ProtocolError` (an error reply)
or a :class:`~neoevents.exceptions.DisconnectError` (a close code); both are mapped in
:meth:`Client._run_command` and nowhere else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
from msgspec import Raw

from neoevents.auth.rules import ANONYMOUS
from neoevents.auth.tokens import ConnectClaims, SigningKeyUnavailable, SubscribeClaims, TokenError, TokenExpired
from neoevents.config import NamespaceOptions
from neoevents.exceptions import DisconnectError, ProtocolError
from neoevents.protocol import codes
from neoevents.protocol.codec import Codec
from neoevents.protocol.messages import (
    EMPTY,
    REQUEST_FIELDS,
    ClientInfo,
    Command,
    ConnectRequest,
    ConnectResult,
    Error,
    HistoryRequest,
    HistoryResult,
    PingRequest,
    PresenceRequest,
    PresenceResult,
    PresenceStatsRequest,
    PresenceStatsResult,
    PublishRequest,
    PublishResult,
    RefreshRequest,
    RefreshResult,
    Reply,
    RPCRequest,
    SendRequest,
    SubRefreshRequest,
    SubRefreshResult,
    SubscribeRequest,
    SubscribeResult,
    UnsubscribeRequest,
    UnsubscribeResult,
)

if TYPE_CHECKING:
    from neoevents.hub import SharedFrames
    from neoevents.node import Node

log = logging.getLogger("neoevents.client")

VERSION = "neoevents"
MAX_TTL = 365 * 24 * 3600  # TTLs sent to clients are capped at one year, as the reference does
MAX_INBOX = 64  # frames waiting while a previous frame's commands are still being handled


class ClientTransport(Protocol):
    """What a session needs from its connection."""

    codec: Codec
    framing: int  # cache key of the frame format: equal values produce identical frame bytes

    def send(self, payload: bytes) -> None:
        """Queue one encoded protocol message for writing."""

    def send_frame(self, frame: bytes) -> None:
        """Queue bytes already framed by :meth:`frame` (used by fan-out to share one encoding)."""

    def send_shared(self, batch: SharedFrames) -> bool:
        """Queue a channel's batch of frames, which may still grow until anything else is queued after it
        (see :mod:`neoevents.hub`); False when nothing is sent any more (closing)."""

    def frame(self, payload: bytes) -> bytes: ...

    def close(self, disconnect: codes.Disconnect) -> None: ...


class _ClosedTransport:
    """Stands in for the connection of a closed session: the same codec, nothing is sent any more. The session
    keeps no reference to its connection, so the two are freed as soon as the connection is dropped, not by
    a garbage collection (each refers to the other while open)."""

    __slots__ = ("codec",)

    framing = -1  # never shared with a live connection's frames

    def __init__(self, codec: Codec) -> None:
        self.codec = codec

    def send(self, payload: bytes) -> None:
        return None

    def send_frame(self, frame: bytes) -> None:
        return None

    def send_shared(self, batch: SharedFrames) -> bool:
        return False

    def frame(self, payload: bytes) -> bytes:
        return b""

    def close(self, disconnect: codes.Disconnect) -> None:
        return None


# Command field -> handler method. A command carries exactly one request; the first set field wins.
_HANDLERS: dict[str, str] = {name: f"_{name}" for name in REQUEST_FIELDS}


def _method_of(cmd: Command) -> str | None:
    for name in REQUEST_FIELDS:
        if getattr(cmd, name) is not None:
            return name
    return None


def _failure(what: codes.ErrorCode | codes.Disconnect) -> ProtocolError | DisconnectError:
    """The exception for an error reply or a disconnect."""
    return DisconnectError(what) if isinstance(what, codes.Disconnect) else ProtocolError(what)


class Subscription(msgspec.Struct, eq=False, gc=False):
    """One channel of one client (mutable, compared by identity; holds no containers, so it is not tracked
    by the garbage collector)."""

    server_side: bool = False
    join_leave: bool = False
    recoverable: bool = False
    positioned: bool = False
    expire_at: int = 0
    info: bytes = b""


_STATE_CONNECTING = 0
_STATE_CONNECTED = 1
_STATE_CLOSED = 2


class Client:
    """A connection's session. Created by the transport when the connection opens."""

    __slots__ = (
        "_after",
        "_busy",
        "_inbox",
        "_unusable",
        "created_at",
        "exp",
        "id",
        "identity",
        "info",
        "node",
        "ping_sent",
        "rate",
        "roles",
        "state",
        "subs",
        "tenant_id",
        "transport",
        "user",
    )

    def __init__(self, node: Node, transport: ClientTransport) -> None:
        self.node = node
        self.transport = transport
        self.id = node.ids.new()
        self.user = ""
        self.info: bytes = b""
        self.tenant_id = ""
        self.roles: tuple[str, ...] = ()
        self.identity = ANONYMOUS  # as the channel rules see this connection (set from the token)
        self.state = _STATE_CONNECTING
        self.subs: dict[str, Subscription] = {}
        self.exp = 0
        self.ping_sent = 0.0
        self.rate = node.limits.client() if node.limits is not None else None
        self.created_at = time.monotonic()
        self._busy = False
        self._inbox: list[bytes] | None = None
        self._unusable = False
        self._after: list[Coroutine[Any, Any, None]] | None = None
        node.on_client_opened(self)

    # ---- transport callbacks -------------------------------------------------------------------

    def on_message(self, data: bytes) -> None:
        """A complete message arrived. Never raises."""
        if self.state == _STATE_CLOSED:
            return
        if self._busy:
            if self._inbox is None:
                self._inbox = []
            if len(self._inbox) >= MAX_INBOX:
                self.disconnect(codes.DISCONNECT_TOO_MANY_REQUESTS)
                return
            self._inbox.append(data)
            return
        commands, ok = self.transport.codec.decode_commands(data)
        if ok and len(commands) == 1 and self._is_pong(commands[0]):
            self._handle_pong()
            return
        if not commands:
            self.disconnect(codes.DISCONNECT_BAD_REQUEST)
            return
        self._busy = True
        self.node.run(self._process(commands, ok))

    def on_closed(self) -> None:
        """The connection is gone (either side closed it)."""
        if self.state == _STATE_CLOSED:
            return
        was_connected = self.state == _STATE_CONNECTED
        self.state = _STATE_CLOSED
        self.transport = _ClosedTransport(self.transport.codec)
        self.node.on_client_closed(self, was_connected)

    # ---- command loop --------------------------------------------------------------------------

    @staticmethod
    def _is_pong(cmd: Command) -> bool:
        return cmd.id == 0 and cmd.send is None

    def _handle_pong(self) -> None:
        if self.state != _STATE_CONNECTED or self.ping_sent <= 0:
            self.disconnect(codes.DISCONNECT_BAD_REQUEST)
            return
        self.ping_sent = 0.0

    async def _process(self, commands: list[Command], ok: bool) -> None:
        """Run a frame's commands in order; a malformed tail closes the connection after the valid head."""
        try:
            while True:
                for cmd in commands:
                    if self.state == _STATE_CLOSED:
                        return
                    await self._run_command(cmd)
                if not ok:
                    self.disconnect(codes.DISCONNECT_BAD_REQUEST)
                    return
                inbox = self._inbox
                if not inbox:
                    return
                commands, ok = self.transport.codec.decode_commands(inbox.pop(0))
        finally:
            self._busy = False

    async def _run_command(self, cmd: Command) -> None:
        if self._is_pong(cmd):
            self._handle_pong()
            return
        method = _method_of(cmd)
        if self._unusable or method is None or (cmd.id == 0 and method != "send"):
            self.disconnect(codes.DISCONNECT_BAD_REQUEST)
            return
        if self.state == _STATE_CONNECTING and method != "connect":
            self.disconnect(codes.DISCONNECT_BAD_REQUEST)
            return
        handler = getattr(self, _HANDLERS[method])
        try:
            if self.rate is not None and method != "connect":
                self.rate.check(self.user)  # 111, or 3013 for a connection that keeps flooding
            reply = await handler(getattr(cmd, method))
        except ProtocolError as exc:
            if method == "connect":
                self._unusable = True
            self.node.metrics.command_error(exc.code)
            reply = Reply(error=Error(exc.code, str(exc), exc.error.temporary))
        except DisconnectError as exc:
            self.disconnect(exc.disconnect)
            return
        except Exception:
            log.exception("internal error handling a command", extra={"client": self.id})
            reply = Reply(error=Error(100, codes.ERROR_INTERNAL.message, True))
        after, self._after = self._after, None
        if reply is None or self.state == _STATE_CLOSED:
            for coro in after or ():
                coro.close()
            return
        reply.id = cmd.id
        self.transport.send(self.transport.codec.encode_reply(reply))
        for coro in after or ():
            await coro

    async def run_after_reply(self) -> None:
        """Run what :meth:`after_reply` deferred, for actions that are not replies to a command."""
        after, self._after = self._after, None
        for coro in after or ():
            await coro

    def after_reply(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` once the reply to the current command has been queued (e.g. join pushes)."""
        if self._after is None:
            self._after = []
        self._after.append(coro)

    # ---- outgoing ------------------------------------------------------------------------------

    def send_reply(self, reply: Reply) -> None:
        if self.state != _STATE_CLOSED:
            self.transport.send(self.transport.codec.encode_reply(reply))

    def disconnect(self, disconnect: codes.Disconnect) -> None:
        """Close the connection with a documented code (idempotent)."""
        if self.state == _STATE_CLOSED:
            return
        self.transport.close(disconnect)
        self.on_closed()

    def client_info(self, channel_info: bytes = b"") -> ClientInfo:
        return ClientInfo(
            user=self.user,
            client=self.id,
            conn_info=Raw(self.info) if self.info else EMPTY,
            chan_info=Raw(channel_info) if channel_info else EMPTY,
        )

    # ---- handlers ------------------------------------------------------------------------------

    async def _connection_claims(self, token: str, *, expired: codes.ErrorCode | codes.Disconnect) -> ConnectClaims:
        """Verify a connection token (connect and refresh); ``expired`` is what an expired token gets (an error
        reply or a disconnect)."""
        node = self.node
        try:
            return await node.tokens.verify_connect_async(token)
        except TokenExpired as exc:
            node.metrics.auth_failure("token_expired")
            raise _failure(expired) from exc
        except SigningKeyUnavailable as exc:
            raise ProtocolError(codes.ERROR_INTERNAL) from exc
        except TokenError as exc:
            node.metrics.auth_failure("invalid_token")
            log.info("invalid connection token: %s", exc.reason)
            raise DisconnectError(codes.DISCONNECT_INVALID_TOKEN) from exc

    async def _subscription_claims(
        self, token: str, channel: str, *, invalid: codes.ErrorCode | codes.Disconnect
    ) -> SubscribeClaims:
        """Verify a subscription token for ``channel`` (subscribe and sub_refresh); ``invalid`` is what a
        token that does not verify gets; a token for another channel or user always ends the connection."""
        node = self.node
        try:
            claims = await node.tokens.verify_subscribe_async(token)
        except TokenExpired as exc:
            raise ProtocolError(codes.ERROR_TOKEN_EXPIRED) from exc
        except SigningKeyUnavailable as exc:
            raise ProtocolError(codes.ERROR_INTERNAL) from exc
        except TokenError as exc:
            node.metrics.auth_failure("invalid_subscription_token")
            raise _failure(invalid) from exc
        if claims.channel != channel or claims.user != self.user:
            node.metrics.auth_failure("subscription_token_mismatch")
            raise DisconnectError(codes.DISCONNECT_INVALID_TOKEN)
        return claims

    async def _connect(self, req: ConnectRequest) -> Reply:
        node = self.node
        if self.state != _STATE_CONNECTING:
            raise DisconnectError(codes.DISCONNECT_BAD_REQUEST)
        config = node.config
        channels: tuple[str, ...] = ()
        if req.token:
            claims = await self._connection_claims(req.token, expired=codes.ERROR_TOKEN_EXPIRED)
            self.user = claims.user
            self.info = claims.info
            self.tenant_id = claims.tenant_id
            self.roles = claims.roles
            self.identity = node.rules.identity(claims.user, claims.payload)
            self.exp = claims.exp if claims.expire_at is None else claims.expire_at
            channels = claims.channels
            if claims.subs:
                channels += tuple(ch for ch in claims.subs if ch not in claims.channels)
        elif config.client_insecure or config.client_anonymous:
            self.user = ""
        else:
            node.metrics.auth_failure("no_credentials")
            raise DisconnectError(codes.DISCONNECT_BAD_REQUEST)
        if node.user_connection_limit_reached(self.user):
            raise DisconnectError(codes.DISCONNECT_CONNECTION_LIMIT)
        result = ConnectResult(
            client=self.id,
            version=VERSION,
            ping=int(config.ping_interval),
            pong=True,
        )
        if self.exp:
            ttl = min(self.exp - int(time.time()), MAX_TTL)
            if ttl <= 0:
                raise ProtocolError(codes.ERROR_TOKEN_EXPIRED)
            result.expires = True
            result.ttl = ttl
        self.state = _STATE_CONNECTED
        node.on_client_connected(self)
        subs: dict[str, SubscribeResult] = {}
        for channel in channels:
            if channel in subs:
                continue
            recover_req = req.subs.get(channel)
            ns = node.namespace_for(channel)
            if ns is not None:
                try:
                    # A token claiming a channel its own claims may not have is refused as a whole (3500).
                    node.authorize(self, channel, ns, "subscribe", from_token=True)
                except ProtocolError as exc:
                    raise DisconnectError(codes.DISCONNECT_INVALID_TOKEN) from exc
            try:
                subs[channel] = await self._subscribe_channel(
                    channel, recover_req or SubscribeRequest(channel=channel), server_side=True
                )
            except ProtocolError as exc:
                log.info("server-side subscription to %r failed: %s", channel, exc)
                raise DisconnectError(codes.DISCONNECT_INTERNAL) from exc
        result.subs = subs
        return Reply(connect=result)

    def _check_channel(self, channel: str) -> None:
        if not channel:
            raise DisconnectError(codes.DISCONNECT_BAD_REQUEST)

    async def _subscribe(self, req: SubscribeRequest) -> Reply:
        node = self.node
        channel = req.channel
        self._check_channel(channel)
        if len(channel) > node.config.channel_max_length:
            raise ProtocolError(codes.ERROR_BAD_REQUEST)
        if channel in self.subs:
            raise ProtocolError(codes.ERROR_ALREADY_SUBSCRIBED)
        if len(self.subs) >= node.config.client_channel_limit > 0:
            raise ProtocolError(codes.ERROR_LIMIT_EXCEEDED)
        ns = node.namespace_for(channel)
        if ns is None:
            raise ProtocolError(codes.ERROR_UNKNOWN_CHANNEL)
        expire_at = 0
        chan_info = b""
        if req.token:
            # As the reference does: a bad subscription token fails the subscribe (103).
            claims = await self._subscription_claims(req.token, channel, invalid=codes.ERROR_PERMISSION_DENIED)
            expire_at = claims.expire_at if claims.expire_at is not None else claims.exp
            chan_info = claims.info
            node.authorize(self, channel, ns, "subscribe", sub_token=True)
        else:
            node.authorize(self, channel, ns, "subscribe")
        result = await self._subscribe_channel(channel, req, server_side=False, chan_info=chan_info, ns=ns)
        if expire_at:
            ttl = min(expire_at - int(time.time()), MAX_TTL)
            if ttl <= 0:
                await self._unsubscribe_channel(channel)
                raise ProtocolError(codes.ERROR_TOKEN_EXPIRED)
            self.subs[channel].expire_at = expire_at
            node.schedule_subscription_expiry(self, channel, expire_at)
            result.expires = True
            result.ttl = ttl
        return Reply(subscribe=result)

    async def _subscribe_channel(
        self,
        channel: str,
        req: SubscribeRequest,
        *,
        server_side: bool,
        chan_info: bytes = b"",
        ns: NamespaceOptions | None = None,
    ) -> SubscribeResult:
        """Register the subscription, recover if asked, and build the result (shared by both paths);
        ``ns`` is the channel's namespace when the caller has already looked it up."""
        node = self.node
        if ns is None:
            ns = node.namespace_for(channel)
            if ns is None:
                raise ProtocolError(codes.ERROR_UNKNOWN_CHANNEL)
        sub = Subscription()
        sub.server_side = server_side
        sub.join_leave = (req.join_leave or server_side or ns.force_push_join_leave) and ns.join_leave
        sub.info = chan_info
        self.subs[channel] = sub
        return await node.subscribe_client(self, channel, sub, req, ns)

    async def _unsubscribe(self, req: UnsubscribeRequest) -> Reply:
        self._check_channel(req.channel)
        await self._unsubscribe_channel(req.channel)
        return Reply(unsubscribe=UnsubscribeResult())

    async def _unsubscribe_channel(self, channel: str) -> None:
        sub = self.subs.pop(channel, None)
        if sub is not None:
            await self.node.unsubscribe_client(self, channel, sub)

    def _namespace(self, channel: str) -> NamespaceOptions:
        """The channel's namespace: empty channel -> 3501, unknown namespace -> 102."""
        self._check_channel(channel)
        ns = self.node.namespace_for(channel)
        if ns is None:
            raise ProtocolError(codes.ERROR_UNKNOWN_CHANNEL)
        return ns

    async def _publish(self, req: PublishRequest) -> Reply:
        ns = self._namespace(req.channel)
        if req.data == EMPTY:
            raise ProtocolError(codes.ERROR_BAD_REQUEST)
        self.node.authorize(self, req.channel, ns, "publish")
        await self.node.publish(req.channel, bytes(req.data), info=self.client_info())
        return Reply(publish=PublishResult())

    def _presence_allowed(self, channel: str) -> None:
        ns = self._namespace(channel)
        if not ns.presence:
            raise ProtocolError(codes.ERROR_NOT_AVAILABLE)
        self.node.authorize(self, channel, ns, "presence")

    async def _presence(self, req: PresenceRequest) -> Reply:
        self._presence_allowed(req.channel)
        return Reply(presence=PresenceResult(presence=await self.node.presence.presence(req.channel)))

    async def _presence_stats(self, req: PresenceStatsRequest) -> Reply:
        self._presence_allowed(req.channel)
        clients, users = await self.node.presence.presence_stats(req.channel)
        return Reply(presence_stats=PresenceStatsResult(num_clients=clients, num_users=users))

    async def _history(self, req: HistoryRequest) -> Reply:
        node = self.node
        ns = self._namespace(req.channel)
        if not ns.history_enabled:
            raise ProtocolError(codes.ERROR_NOT_AVAILABLE)
        node.authorize(self, req.channel, ns, "history")
        limit = req.limit
        max_limit = node.config.client_history_max_publication_limit
        if max_limit > 0 and (limit < 0 or limit > max_limit):
            limit = max_limit
        since = req.since
        pubs, position = await node.history(
            req.channel,
            limit=limit,
            since=(since.offset, since.epoch) if since else None,
            reverse=req.reverse,
        )
        return Reply(history=HistoryResult(publications=pubs, epoch=position.epoch, offset=position.offset))

    async def _ping(self, req: PingRequest) -> Reply:
        # Protocol v2 has no ping command (pings are empty messages); the reference closes with 3501.
        raise DisconnectError(codes.DISCONNECT_BAD_REQUEST)

    async def _send(self, req: SendRequest) -> Reply | None:
        # No asynchronous message handler is configured: the reference server disconnects.
        raise DisconnectError(codes.DISCONNECT_NOT_AVAILABLE)

    async def _rpc(self, req: RPCRequest) -> Reply:
        raise ProtocolError(codes.ERROR_METHOD_NOT_FOUND)

    async def _refresh(self, req: RefreshRequest) -> Reply:
        node = self.node
        if not req.token:
            raise DisconnectError(codes.DISCONNECT_BAD_REQUEST)
        claims = await self._connection_claims(req.token, expired=codes.DISCONNECT_EXPIRED)
        if claims.user != self.user:
            node.metrics.auth_failure("refresh_user_mismatch")
            raise DisconnectError(codes.DISCONNECT_INVALID_TOKEN)
        self.exp = claims.exp if claims.expire_at is None else claims.expire_at
        self.identity = node.rules.identity(claims.user, claims.payload)
        if claims.info:
            self.info = claims.info
        result = RefreshResult()
        if self.exp:
            ttl = min(self.exp - int(time.time()), MAX_TTL)
            if ttl <= 0:
                raise DisconnectError(codes.DISCONNECT_EXPIRED)
            result.expires = True
            result.ttl = ttl
        node.on_client_refreshed(self)
        return Reply(refresh=result)

    async def _sub_refresh(self, req: SubRefreshRequest) -> Reply:
        node = self.node
        self._check_channel(req.channel)
        sub = self.subs.get(req.channel)
        if sub is None:
            raise ProtocolError(codes.ERROR_PERMISSION_DENIED)
        if not req.token:
            raise DisconnectError(codes.DISCONNECT_BAD_REQUEST)
        # As the reference does: a bad token on refresh ends the connection (3500).
        claims = await self._subscription_claims(req.token, req.channel, invalid=codes.DISCONNECT_INVALID_TOKEN)
        sub.expire_at = claims.expire_at if claims.expire_at is not None else claims.exp
        if sub.expire_at:
            node.schedule_subscription_expiry(self, req.channel, sub.expire_at)
        result = SubRefreshResult()
        if sub.expire_at:
            ttl = min(sub.expire_at - int(time.time()), MAX_TTL)
            if ttl <= 0:
                raise ProtocolError(codes.ERROR_TOKEN_EXPIRED)
            result.expires = True
            result.ttl = ttl
        return Reply(sub_refresh=result)
