"""Typed messages of the Centrifugal client protocol v2.

Field names are the JSON names of ``client.proto``. Requests are decoded straight into these structs
(unknown fields ignored, wrong types rejected); replies are encoded from them with zero values omitted,
as the reference server does. ``bytes`` payload fields (``data``, ``info``) hold raw JSON in the JSON
protocol and opaque bytes in Protobuf; in memory they are :class:`msgspec.Raw` either way.
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Raw, Struct

Uint32 = Annotated[int, Meta(ge=0, le=4294967295)]
Uint64 = Annotated[int, Meta(ge=0, le=9223372036854775807)]
Int32 = Annotated[int, Meta(ge=-2147483648, le=2147483647)]
EMPTY = Raw()


class _Msg(Struct, omit_defaults=True, gc=False):
    pass


# ---- requests ---------------------------------------------------------------------------------------


class SubscribeRequest(_Msg):
    channel: str = ""
    token: str = ""
    recover: bool = False
    epoch: str = ""
    offset: Uint64 = 0
    data: Raw = EMPTY
    positioned: bool = False
    recoverable: bool = False
    join_leave: bool = False
    delta: str = ""


class ConnectRequest(_Msg):
    token: str = ""
    data: Raw = EMPTY
    subs: dict[str, SubscribeRequest] = {}
    name: str = ""
    version: str = ""
    headers: dict[str, str] = {}


class UnsubscribeRequest(_Msg):
    channel: str = ""


class PublishRequest(_Msg):
    channel: str = ""
    data: Raw = EMPTY


class PresenceRequest(_Msg):
    channel: str = ""


class PresenceStatsRequest(_Msg):
    channel: str = ""


class StreamPosition(_Msg):
    offset: Uint64 = 0
    epoch: str = ""


class HistoryRequest(_Msg):
    channel: str = ""
    limit: Int32 = 0
    since: StreamPosition | None = None
    reverse: bool = False


class PingRequest(_Msg):
    pass


class SendRequest(_Msg):
    data: Raw = EMPTY


class RPCRequest(_Msg):
    data: Raw = EMPTY
    method: str = ""


class RefreshRequest(_Msg):
    token: str = ""


class SubRefreshRequest(_Msg):
    channel: str = ""
    token: str = ""


class Command(_Msg):
    id: Uint32 = 0
    connect: ConnectRequest | None = None
    subscribe: SubscribeRequest | None = None
    unsubscribe: UnsubscribeRequest | None = None
    publish: PublishRequest | None = None
    presence: PresenceRequest | None = None
    presence_stats: PresenceStatsRequest | None = None
    history: HistoryRequest | None = None
    ping: PingRequest | None = None
    send: SendRequest | None = None
    rpc: RPCRequest | None = None
    refresh: RefreshRequest | None = None
    sub_refresh: SubRefreshRequest | None = None


# ---- replies and pushes -----------------------------------------------------------------------------


class Error(_Msg):
    code: int
    message: str
    temporary: bool = False


class ClientInfo(_Msg):
    """Who a presence entry, join, leave or client publication belongs to (user and client always sent)."""

    user: str
    client: str
    conn_info: Raw = EMPTY
    chan_info: Raw = EMPTY


class Publication(_Msg):
    data: Raw = EMPTY
    info: ClientInfo | None = None
    offset: Uint64 = 0
    tags: dict[str, str] = {}
    delta: bool = False
    time: int = 0
    channel: str = ""
    epoch: str = ""


class SubscribeResult(_Msg):
    expires: bool = False
    ttl: Uint32 = 0
    recoverable: bool = False
    epoch: str = ""
    publications: list[Publication] = []
    recovered: bool = False
    offset: Uint64 = 0
    positioned: bool = False
    data: Raw = EMPTY
    was_recovering: bool = False
    delta: bool = False


class ConnectResult(_Msg):
    client: str = ""
    version: str = ""
    expires: bool = False
    ttl: Uint32 = 0
    data: Raw = EMPTY
    subs: dict[str, SubscribeResult] = {}
    ping: Uint32 = 0
    pong: bool = False
    session: str = ""
    node: str = ""
    time: int = 0


class UnsubscribeResult(_Msg):
    pass


class PublishResult(_Msg):
    pass


class PresenceResult(_Msg):
    presence: dict[str, ClientInfo] = {}


class PresenceStatsResult(Struct, gc=False):
    num_clients: int = 0
    num_users: int = 0


class HistoryResult(Struct, gc=False):
    """Always carries ``publications``, ``epoch`` and ``offset`` (even when empty), as the reference does."""

    publications: list[Publication] = []
    epoch: str = ""
    offset: Uint64 = 0


class PingResult(_Msg):
    pass


class RPCResult(_Msg):
    data: Raw = EMPTY


class RefreshResult(_Msg):
    client: str = ""
    version: str = ""
    expires: bool = False
    ttl: Uint32 = 0


class SubRefreshResult(_Msg):
    expires: bool = False
    ttl: Uint32 = 0


class Join(_Msg):
    info: ClientInfo


class Leave(_Msg):
    info: ClientInfo


class Unsubscribe(_Msg):
    code: int = 0
    reason: str = ""


class Subscribe(_Msg):
    recoverable: bool = False
    epoch: str = ""
    offset: Uint64 = 0
    positioned: bool = False
    data: Raw = EMPTY


class Message(_Msg):
    data: Raw = EMPTY


class Connect(_Msg):
    client: str = ""
    version: str = ""
    data: Raw = EMPTY
    subs: dict[str, SubscribeResult] = {}
    expires: bool = False
    ttl: Uint32 = 0
    ping: Uint32 = 0
    pong: bool = False
    session: str = ""
    node: str = ""
    time: int = 0


class Disconnect(_Msg):
    code: int = 0
    reason: str = ""
    reconnect: bool = False


class Refresh(_Msg):
    expires: bool = False
    ttl: Uint32 = 0


class Push(_Msg):
    channel: str = ""
    pub: Publication | None = None
    join: Join | None = None
    leave: Leave | None = None
    unsubscribe: Unsubscribe | None = None
    message: Message | None = None
    subscribe: Subscribe | None = None
    connect: Connect | None = None
    disconnect: Disconnect | None = None
    refresh: Refresh | None = None


class Reply(_Msg):
    id: Uint32 = 0
    error: Error | None = None
    push: Push | None = None
    connect: ConnectResult | None = None
    subscribe: SubscribeResult | None = None
    unsubscribe: UnsubscribeResult | None = None
    publish: PublishResult | None = None
    presence: PresenceResult | None = None
    presence_stats: PresenceStatsResult | None = None
    history: HistoryResult | None = None
    ping: PingResult | None = None
    rpc: RPCResult | None = None
    refresh: RefreshResult | None = None
    sub_refresh: SubRefreshResult | None = None


REQUEST_FIELDS: tuple[str, ...] = tuple(f for f in Command.__struct_fields__ if f != "id")

__all__ = [name for name in dir() if not name.startswith("_") and name not in {"msgspec", "annotations"}]
