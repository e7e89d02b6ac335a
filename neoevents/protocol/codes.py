"""Closed catalogs of the protocol's error, unsubscribe and disconnect codes.

These are the only codes neoevents ever sends to a client or API caller. Numbers, messages and the
reconnect/terminal meaning follow the Centrifugal protocol so that the official SDKs react as designed:

* errors (``{"error": {"code", "message"}}`` in a reply) — 100-113, application codes 400-1999;
* unsubscribe codes (in an ``unsubscribe`` push) — 2000 terminal, 2500-2999 resubscribe;
* disconnect codes (the WebSocket close code and reason) — 3000-3499 reconnect, 3500-3999 terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class ErrorCode:
    code: int
    message: str
    temporary: bool = False


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    code: int
    reason: str

    @property
    def resubscribe(self) -> bool:
        return self.code >= 2500


@dataclass(frozen=True, slots=True)
class Disconnect:
    code: int
    reason: str

    @property
    def reconnect(self) -> bool:
        return 3000 <= self.code < 3500 or 4000 <= self.code < 4500


#: Longest disconnect reason in bytes: a WebSocket close frame carries at most 125, two of them the code.
MAX_CLOSE_REASON: Final = 123


def close_reason(reason: str) -> str:
    """``reason`` cut to what a close frame can carry (whole UTF-8 characters)."""
    raw = reason.encode()
    if len(raw) <= MAX_CLOSE_REASON:
        return reason
    return raw[:MAX_CLOSE_REASON].decode("utf-8", "ignore")


ERROR_INTERNAL: Final = ErrorCode(100, "internal server error", temporary=True)
ERROR_UNAUTHORIZED: Final = ErrorCode(101, "unauthorized")
ERROR_UNKNOWN_CHANNEL: Final = ErrorCode(102, "unknown channel")
ERROR_PERMISSION_DENIED: Final = ErrorCode(103, "permission denied")
ERROR_METHOD_NOT_FOUND: Final = ErrorCode(104, "method not found")
ERROR_ALREADY_SUBSCRIBED: Final = ErrorCode(105, "already subscribed")
ERROR_LIMIT_EXCEEDED: Final = ErrorCode(106, "limit exceeded")
ERROR_BAD_REQUEST: Final = ErrorCode(107, "bad request")
ERROR_NOT_AVAILABLE: Final = ErrorCode(108, "not available")
ERROR_TOKEN_EXPIRED: Final = ErrorCode(109, "token expired")
ERROR_EXPIRED: Final = ErrorCode(110, "expired")
ERROR_TOO_MANY_REQUESTS: Final = ErrorCode(111, "too many requests", temporary=True)
ERROR_UNRECOVERABLE_POSITION: Final = ErrorCode(112, "unrecoverable position")

UNSUBSCRIBE_SERVER: Final = Unsubscribe(2000, "server unsubscribe")
UNSUBSCRIBE_INSUFFICIENT: Final = Unsubscribe(2500, "insufficient state")
UNSUBSCRIBE_EXPIRED: Final = Unsubscribe(2501, "subscription expired")

DISCONNECT_CONNECTION_CLOSED: Final = Disconnect(3000, "connection closed")
DISCONNECT_SHUTDOWN: Final = Disconnect(3001, "shutdown")
DISCONNECT_INTERNAL: Final = Disconnect(3004, "internal server error")
DISCONNECT_EXPIRED: Final = Disconnect(3005, "connection expired")
DISCONNECT_SUB_EXPIRED: Final = Disconnect(3006, "subscription expired")
DISCONNECT_SLOW: Final = Disconnect(3008, "slow")
DISCONNECT_WRITE_ERROR: Final = Disconnect(3009, "write error")
DISCONNECT_INSUFFICIENT_STATE: Final = Disconnect(3010, "insufficient state")
DISCONNECT_FORCE_RECONNECT: Final = Disconnect(3011, "force reconnect")
DISCONNECT_NO_PONG: Final = Disconnect(3012, "no pong")
DISCONNECT_TOO_MANY_REQUESTS: Final = Disconnect(3013, "too many requests")
DISCONNECT_INVALID_TOKEN: Final = Disconnect(3500, "invalid token")
DISCONNECT_BAD_REQUEST: Final = Disconnect(3501, "bad request")
DISCONNECT_STALE: Final = Disconnect(3502, "stale")
DISCONNECT_FORCE_NO_RECONNECT: Final = Disconnect(3503, "force disconnect")
DISCONNECT_CONNECTION_LIMIT: Final = Disconnect(3504, "connection limit")
DISCONNECT_CHANNEL_LIMIT: Final = Disconnect(3505, "channel limit")
DISCONNECT_INAPPROPRIATE_PROTOCOL: Final = Disconnect(3506, "inappropriate protocol")
DISCONNECT_PERMISSION_DENIED: Final = Disconnect(3507, "permission denied")
DISCONNECT_NOT_AVAILABLE: Final = Disconnect(3508, "not available")
DISCONNECT_TOO_MANY_ERRORS: Final = Disconnect(3509, "too many errors")

# WebSocket-level close code for a frame over the message size limit (RFC 6455).
WS_CLOSE_MESSAGE_TOO_BIG: Final = 1009

ERRORS: Final[dict[int, ErrorCode]] = {
    e.code: e
    for e in (
        ERROR_INTERNAL,
        ERROR_UNAUTHORIZED,
        ERROR_UNKNOWN_CHANNEL,
        ERROR_PERMISSION_DENIED,
        ERROR_METHOD_NOT_FOUND,
        ERROR_ALREADY_SUBSCRIBED,
        ERROR_LIMIT_EXCEEDED,
        ERROR_BAD_REQUEST,
        ERROR_NOT_AVAILABLE,
        ERROR_TOKEN_EXPIRED,
        ERROR_EXPIRED,
        ERROR_TOO_MANY_REQUESTS,
        ERROR_UNRECOVERABLE_POSITION,
    )
}
