"""Command decoders and reply encoders for the two wire formats.

* JSON (the default, WebSocket text frames): one or more commands/replies per frame, joined by ``\\n``.
* Protobuf (subprotocol ``centrifuge-protobuf``, binary frames): each message prefixed by its varint length.

Decoders never raise: :meth:`Codec.decode_commands` returns the commands it could read and ``False`` when
the frame was malformed, and the caller closes the connection with ``3501 bad request``.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

import msgspec
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError as PbDecodeError
from google.protobuf.message import Message as PbMessage

from neoevents.protocol import client_pb2 as pb
from neoevents.protocol.messages import Command, Reply
from neoevents.protocol.pbwire import reply_encoder, varint

_PB_COMMAND: Any = pb.Command  # type: ignore[attr-defined]
_pb_reply: Final = reply_encoder()
_json_decoder: Final = msgspec.json.Decoder(Command)
_json_encode: Final = msgspec.json.Encoder().encode


class Codec(Protocol):
    """What a connection needs from its wire format."""

    name: str
    binary: bool
    ping: bytes

    def decode_commands(self, data: bytes) -> tuple[list[Command], bool]: ...

    def encode_reply(self, reply: Reply) -> bytes: ...

    def join(self, messages: list[bytes]) -> bytes: ...


class JsonCodec:
    """Newline-delimited JSON; ``bytes`` fields travel as raw embedded JSON."""

    name = "json"
    binary = False
    ping = b"{}"

    def decode_commands(self, data: bytes) -> tuple[list[Command], bool]:
        commands: list[Command] = []
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            try:
                commands.append(_json_decoder.decode(line))
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                # RecursionError: JSON nested deeper than the decoder's limit (e.g. ``"data": [[[[...]]]]``).
                return commands, False
        return commands, bool(commands)

    def encode_reply(self, reply: Reply) -> bytes:
        return _json_encode(reply)

    def join(self, messages: list[bytes]) -> bytes:
        return b"\n".join(messages)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Return (value, new position); (-1, pos) when the varint is truncated or longer than 10 bytes."""
    result = 0
    shift = 0
    end = min(len(data), pos + 10)
    while pos < end:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
    return -1, pos


# How _pb_to_dict converts a field, by kind.
_SCALAR, _BYTES, _MESSAGE, _REPEATED, _MAP_MESSAGE, _MAP_SCALAR = range(6)
# Field descriptor -> (name, kind), filled on first sight of each field: reading a descriptor's properties costs
# more than the rest of the conversion (the protobuf library returns the same descriptor object every time).
_FIELDS: dict[FieldDescriptor, tuple[str, int]] = {}


def _field_info(field: FieldDescriptor) -> tuple[str, int]:
    message = field.message_type
    if message is None:
        kind = _BYTES if field.type == FieldDescriptor.TYPE_BYTES else _SCALAR
    elif message.GetOptions().map_entry:
        kind = _MAP_SCALAR if message.fields_by_name["value"].message_type is None else _MAP_MESSAGE
    else:
        kind = _REPEATED if field.is_repeated else _MESSAGE
    info = _FIELDS[field] = (field.name, kind)
    return info


def _pb_to_dict(message: PbMessage) -> dict[str, Any]:
    """A parsed message as the dict msgspec converts to our structs (``bytes`` fields as raw payloads)."""
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        name, kind = _FIELDS.get(field) or _field_info(field)
        if kind == _SCALAR:
            out[name] = value
        elif kind == _MESSAGE:
            out[name] = _pb_to_dict(value)
        elif kind == _BYTES:
            out[name] = msgspec.Raw(value)
        elif kind == _MAP_SCALAR:
            out[name] = dict(value)
        elif kind == _MAP_MESSAGE:
            out[name] = {k: _pb_to_dict(v) for k, v in value.items()}
        else:
            out[name] = [_pb_to_dict(v) for v in value]
    return out


class ProtobufCodec:
    """Varint length-delimited Protobuf messages."""

    name = "protobuf"
    binary = True
    ping = b"\x00"

    def decode_commands(self, data: bytes) -> tuple[list[Command], bool]:
        commands: list[Command] = []
        pos = 0
        size = len(data)
        while pos < size:
            length, pos = _read_varint(data, pos)
            if length < 0 or pos + length > size:
                return commands, False
            try:
                message = _PB_COMMAND.FromString(data[pos : pos + length])
                commands.append(msgspec.convert(_pb_to_dict(message), Command))
            except (PbDecodeError, msgspec.ValidationError, ValueError, TypeError, RecursionError):
                return commands, False
            pos += length
        return commands, bool(commands)

    def encode_reply(self, reply: Reply) -> bytes:
        body = _pb_reply.encode(reply)
        return varint(len(body)) + body

    def join(self, messages: list[bytes]) -> bytes:
        return b"".join(messages)


JSON: Final = JsonCodec()
PROTOBUF: Final = ProtobufCodec()
