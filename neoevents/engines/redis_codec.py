"""What the Redis engine stores and sends through Redis, byte for byte as Centrifugo's Redis engine does.

* A publication is the Protobuf ``Publication`` message of the client protocol (``data`` = 4, ``info`` = 5,
  ``offset`` = 6, ``tags`` = 7, ``delta`` = 8, ``time`` = 9, ``channel`` = 10, ``epoch`` = 14); a
  ``ClientInfo`` has ``user`` = 1, ``client`` = 2, ``conn_info`` = 3, ``chan_info`` = 4. Centrifugo writes
  ``time`` for its own lag metric and never sends it to clients; it is skipped here as well.
* On the PUB/SUB channel of a client channel a message is ``__p1:<offset>:<epoch>__<publication>`` for a
  publication added to history, the bare publication without history, ``__j__<client info>`` for a join and
  ``__l__<client info>`` for a leave.
* A history stream entry has one field ``d`` holding the publication; the entry id ``<offset>-0`` is its offset.

Only these few messages are needed, so they are encoded and decoded here by hand: that is several times
faster than going through the generated Protobuf classes and converting to the msgspec structs the rest of
the server uses. Unknown fields are skipped, so messages written by newer Centrifugo versions still decode.
"""

from __future__ import annotations

from typing import Final

from msgspec import Raw

from neoevents.protocol.messages import EMPTY, ClientInfo, Publication
from neoevents.protocol.pbwire import varint

PUB_PREFIX: Final = b"__p1:"
JOIN_PREFIX: Final = b"__j__"
LEAVE_PREFIX: Final = b"__l__"


class MalformedMessage(ValueError):
    """Bytes from Redis that are not a message this engine (or Centrifugo) writes."""


def _field(tag: bytes, value: bytes) -> bytes:
    return tag + varint(len(value)) + value


def encode_info(info: ClientInfo) -> bytes:
    out = b""
    if info.user:
        out += _field(b"\x0a", info.user.encode())
    if info.client:
        out += _field(b"\x12", info.client.encode())
    if info.conn_info:
        out += _field(b"\x1a", bytes(info.conn_info))
    if info.chan_info:
        out += _field(b"\x22", bytes(info.chan_info))
    return out


def encode_publication(data: bytes, info: ClientInfo | None, tags: dict[str, str]) -> bytes:
    """The Protobuf ``Publication`` with ``data``, ``info`` and ``tags`` (offset and epoch travel apart)."""
    size = len(data)
    if info is None and not tags and 0 < size < 0x4000:  # the common case, a one- or two-byte length
        return b"\x22%c%b" % (size, data) if size < 0x80 else b"\x22%c%c%b" % (size & 0x7F | 0x80, size >> 7, data)
    out = b"\x22" + varint(size) + data if data else b""
    if info is not None:
        out += _field(b"\x2a", encode_info(info))
    for key, value in tags.items():
        out += _field(b"\x3a", _field(b"\x0a", key.encode()) + _field(b"\x12", value.encode()))
    return out


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        try:
            byte = buf[pos]
        except IndexError:
            raise MalformedMessage("truncated varint") from None
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise MalformedMessage("varint too long")


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs: an int for varints and fixed-size fields, bytes for length-delimited."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    end = len(buf)
    while pos < end:
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _read_varint(buf, pos)
        wire = key & 7
        if wire == 2:
            size = buf[pos] if pos < end else 0x80
            if size < 0x80:
                pos += 1
            else:
                size, pos = _read_varint(buf, pos)
            stop = pos + size
            if stop > end:
                raise MalformedMessage("truncated field")
            out.append((key >> 3, buf[pos:stop]))
            pos = stop
        elif wire == 0:
            value, pos = _read_varint(buf, pos)
            out.append((key >> 3, value))
        elif wire == 1:
            out.append((key >> 3, int.from_bytes(buf[pos : pos + 8], "little")))
            pos += 8
        elif wire == 5:
            out.append((key >> 3, int.from_bytes(buf[pos : pos + 4], "little")))
            pos += 4
        else:
            raise MalformedMessage(f"unsupported wire type {wire}")
    if pos != end:
        raise MalformedMessage("truncated field")
    return out


def decode_info(buf: bytes) -> ClientInfo:
    user = client = ""
    conn_info = chan_info = EMPTY
    for number, value in _fields(buf):
        if not isinstance(value, bytes):
            continue
        if number == 1:
            user = value.decode()
        elif number == 2:
            client = value.decode()
        elif number == 3:
            conn_info = Raw(value)
        elif number == 4:
            chan_info = Raw(value)
    return ClientInfo(user=user, client=client, conn_info=conn_info, chan_info=chan_info)


def decode_publication(buf: bytes) -> Publication:
    """A ``Publication``; its ``offset`` is whatever the message carries (0 unless set by the writer)."""
    end = len(buf)
    if end > 1 and buf[0] == 0x22:  # the common case: data only
        size = buf[1]
        if size + 2 == end:  # shorter than 128 bytes: a one-byte length
            return Publication(data=Raw(buf[2:]))
        if size >= 0x80:
            size, pos = _read_varint(buf, 1)
            if pos + size == end:
                return Publication(data=Raw(buf[pos:]))
    pub = Publication()
    tags: dict[str, str] = {}
    for number, value in _fields(buf):
        if number == 4 and isinstance(value, bytes):
            pub.data = Raw(value)
        elif number == 5 and isinstance(value, bytes):
            pub.info = decode_info(value)
        elif number == 6 and isinstance(value, int):
            pub.offset = value
        elif number == 7 and isinstance(value, bytes):
            key = val = ""
            for sub, item in _fields(value):
                if sub == 1 and isinstance(item, bytes):
                    key = item.decode()
                elif sub == 2 and isinstance(item, bytes):
                    val = item.decode()
            tags[key] = val
    if tags:
        pub.tags = tags
    return pub


def split_position(message: bytes) -> tuple[int, str, bytes]:
    """``__p1:<offset>:<epoch>__<rest>`` -> (offset, epoch, rest)."""
    colon = message.find(b":", 5)
    end = message.find(b"__", colon + 1)
    if colon < 0 or end < 0:
        raise MalformedMessage("bad position prefix")
    try:
        offset = int(message[5:colon])
    except ValueError:
        raise MalformedMessage("bad offset") from None
    return offset, message[colon + 1 : end].decode(), message[end + 2 :]
