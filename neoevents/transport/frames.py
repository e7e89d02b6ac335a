"""Server-to-client WebSocket frame headers (RFC 6455 §5.2; server frames are never masked)."""

from __future__ import annotations

import struct

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8


def ws_frame(payload: bytes, binary: bool) -> bytes:
    """One final, unmasked data frame carrying ``payload``."""
    first = 0x80 | (OP_BINARY if binary else OP_TEXT)
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def close_frame(payload: bytes) -> bytes:
    """A close frame carrying ``payload`` (a status code and reason, at most 125 bytes, or nothing)."""
    if len(payload) > 125:
        raise ValueError("a close frame carries at most 125 bytes")
    return bytes((0x80 | OP_CLOSE, len(payload))) + payload
