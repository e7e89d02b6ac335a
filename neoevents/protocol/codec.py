"""Command decoders and reply encoders for the two wire formats.

* JSON (the default, WebSocket text frames): one or more commands/replies per frame, joined by ``\\n``.
* Protobuf (subprotocol ``centrifuge-protobuf``, binary frames): each message prefixed by its varint length.

Decoders never raise: :meth:`Codec.decode_commands` returns the commands it could read and ``False`` when
the frame was malformed, and the caller closes the connection with ``3501 bad request``.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

import msgspec
from google.protobuf.message import DecodeError as PbDecodeError
from google.protobuf.message import Message as PbMessage

from neoevents.protocol import client_pb2 as pb
from neoevents.protocol.messages import EMPTY, Command, Reply

_PB_COMMAND: Any = pb.Command  # type: ignore[attr-defined]
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


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


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


def _pb_to_dict(message: PbMessage) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        name = field.name
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                value_field = field.message_type.fields_by_name["value"]
                if value_field.message_type is not None:
                    out[name] = {k: _pb_to_dict(v) for k, v in value.items()}
                else:
                    out[name] = dict(value)
            elif field.is_repeated:
                out[name] = [_pb_to_dict(v) for v in value]
            else:
                out[name] = _pb_to_dict(value)
        elif field.type == field.TYPE_BYTES:
            out[name] = msgspec.Raw(value)
        else:
            out[name] = value
    return out


def _struct_to_pb(struct: msgspec.Struct, message: PbMessage) -> None:
    message.SetInParent()
    for name in struct.__struct_fields__:
        value = getattr(struct, name)
        if value is None:
            continue
        if isinstance(value, msgspec.Struct):
            _struct_to_pb(value, getattr(message, name))
        elif isinstance(value, msgspec.Raw):
            if value != EMPTY:
                setattr(message, name, bytes(value))
        elif isinstance(value, dict):
            target = getattr(message, name)
            for key, item in value.items():
                if isinstance(item, msgspec.Struct):
                    _struct_to_pb(item, target[key])
                else:
                    target[key] = item
        elif isinstance(value, list):
            target = getattr(message, name)
            for item in value:
                _struct_to_pb(item, target.add())
        elif value:
            setattr(message, name, value)


def reply_to_pb(reply: Reply) -> PbMessage:
    message: PbMessage = pb.Reply()  # type: ignore[attr-defined]
    _struct_to_pb(reply, message)
    return message


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
        body: bytes = reply_to_pb(reply).SerializeToString()
        return _varint(len(body)) + body

    def join(self, messages: list[bytes]) -> bytes:
        return b"".join(messages)


JSON: Final = JsonCodec()
PROTOBUF: Final = ProtobufCodec()
