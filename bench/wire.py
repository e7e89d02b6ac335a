"""Just enough WebSocket (RFC 6455) for a load generator, and the payload format of the benchmark.

Client frames are masked with an all-zero key (valid, and the payload needs no XOR). Incoming frames are
parsed properly only while a connection is being set up; afterwards the load generator counts deliveries
on the raw byte stream (see :mod:`bench.loadgen`), which is why every benchmark payload carries the
marker ``"ts":`` exactly once and never contains ``{}``.
"""

from __future__ import annotations

import base64
import os
import re
import struct
import time

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

MARK = b'"ts":'
TS_RE = re.compile(rb'"ts":(\d+),')
DEFAULT_PAYLOAD_SIZE = 100


def now_ns() -> int:
    """The clock embedded in payloads: CLOCK_MONOTONIC, shared by every process of the machine."""
    return time.monotonic_ns()


def payload(seq: int, size: int = DEFAULT_PAYLOAD_SIZE) -> bytes:
    """A JSON object of about ``size`` bytes carrying the send time (``ts``) and a sequence number."""
    head = b'{"ts":%d,"seq":%d,"pad":"' % (now_ns(), seq)
    pad = max(0, size - len(head) - 2)
    return head + b"x" * pad + b'"}'


def upgrade_request(host: str, port: int, path: str, extra_headers: dict[str, str] | None = None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    for name, value in (extra_headers or {}).items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def client_frame(data: bytes, opcode: int = OP_TEXT) -> bytes:
    """A final, masked (zero key) client frame."""
    first = 0x80 | opcode
    n = len(data)
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    return head + b"\x00\x00\x00\x00" + data


def server_frame(data: bytes, opcode: int = OP_TEXT) -> bytes:
    """A final, unmasked server frame (used by the floor servers to pre-encode a broadcast once)."""
    first = 0x80 | opcode
    n = len(data)
    if n < 126:
        return struct.pack("!BB", first, n) + data
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + data
    return struct.pack("!BBQ", first, 127, n) + data


def parse_frame(buf: bytes, pos: int = 0) -> tuple[int, bytes, int] | None:
    """One complete frame at ``pos``: ``(opcode, payload, next position)``, or None if incomplete."""
    size = len(buf)
    if size - pos < 2:
        return None
    b0, b1 = buf[pos], buf[pos + 1]
    n = b1 & 0x7F
    hdr = 2
    if n == 126:
        if size - pos < 4:
            return None
        n = struct.unpack_from("!H", buf, pos + 2)[0]
        hdr = 4
    elif n == 127:
        if size - pos < 10:
            return None
        n = struct.unpack_from("!Q", buf, pos + 2)[0]
        hdr = 10
    mask = b""
    if b1 & 0x80:
        if size - pos < hdr + 4:
            return None
        mask = buf[pos + hdr : pos + hdr + 4]
        hdr += 4
    if size - pos < hdr + n:
        return None
    data = bytes(buf[pos + hdr : pos + hdr + n])
    if mask and mask != b"\x00\x00\x00\x00":
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
    return b0 & 0x0F, data, pos + hdr + n


def parse_frames(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Split complete frames off ``buf``: ``([(opcode, payload), ...], rest)``."""
    frames: list[tuple[int, bytes]] = []
    pos = 0
    while True:
        parsed = parse_frame(buf, pos)
        if parsed is None:
            return frames, buf[pos:]
        opcode, data, pos = parsed
        frames.append((opcode, data))
