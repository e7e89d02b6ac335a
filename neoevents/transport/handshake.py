"""The WebSocket opening handshake (RFC 6455 §4.2), sans I/O.

The HTTP layer has already parsed the request head (httptools), so the handshake is a check of a few
headers and one SHA-1: doing it here instead of re-parsing the head with the WebSocket library halves the
cost of a connection. Frames are then parsed by the library's state machine, started in the OPEN state.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from dataclasses import dataclass

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# The base64 encoding of 16 bytes, exactly as base64.b64decode(..., validate=True) accepts it: 22 characters of
# the alphabet, then the padding.
_KEY: re.Pattern[str] = re.compile(r"[A-Za-z0-9+/]{22}==")
_ACCEPTED = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    """``status`` 101 with the response head to send, or an HTTP error status with its response."""

    status: int
    response: bytes
    subprotocol: str | None = None


def _has_token(value: str, token: str) -> bool:
    """Whether a comma-separated header value lists ``token`` (lower-case), case-insensitively."""
    value = value.lower()
    if value == token:  # the usual single-token header
        return True
    return token in {t.strip() for t in value.split(",")}


def _error(status: int, reason: str, body: str, extra: str = "") -> HandshakeResult:
    payload = body.encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(payload)}\r\n{extra}Connection: close\r\n\r\n"
    )
    return HandshakeResult(status, head.encode("latin-1") + payload)


def forbidden(body: str) -> HandshakeResult:
    return _error(403, "Forbidden", body)


def _accept(key: str) -> bytes:
    return binascii.b2a_base64(hashlib.sha1(key.encode("latin-1") + GUID).digest(), newline=False)


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value for a Sec-WebSocket-Key."""
    return _accept(key).decode()


def handshake(method: str, headers: dict[str, str], supported_subprotocols: tuple[str, ...]) -> HandshakeResult:
    """Validate an upgrade request (header names lower-case) and build the response.

    The first of ``supported_subprotocols`` that the client offers is selected; a client offering none of
    them is accepted without a subprotocol.
    """
    if method != "GET":
        return _error(405, "Method Not Allowed", "WebSocket upgrade must use GET\n", "Allow: GET\r\n")
    if not _has_token(headers.get("upgrade", ""), "websocket"):
        return _error(400, "Bad Request", "missing Upgrade: websocket\n")
    if not _has_token(headers.get("connection", ""), "upgrade"):
        return _error(400, "Bad Request", "missing Connection: Upgrade\n")
    if headers.get("sec-websocket-version", "").strip() != "13":
        return _error(426, "Upgrade Required", "unsupported WebSocket version\n", "Sec-WebSocket-Version: 13\r\n")
    key = headers.get("sec-websocket-key", "").strip()
    if _KEY.fullmatch(key) is None:
        return _error(400, "Bad Request", "invalid Sec-WebSocket-Key\n")
    head = _ACCEPTED + _accept(key)
    protocols = headers.get("sec-websocket-protocol")
    subprotocol = None
    if protocols:
        offered = [p.strip() for p in protocols.split(",") if p.strip()]
        subprotocol = next((p for p in supported_subprotocols if p in offered), None)
    if subprotocol is None:
        return HandshakeResult(101, head + b"\r\n\r\n")
    tail = f"\r\nSec-WebSocket-Protocol: {subprotocol}\r\n\r\n".encode("latin-1")
    return HandshakeResult(101, head + tail, subprotocol)
