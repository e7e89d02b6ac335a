"""Protobuf wire encoding of the protocol's reply structs, straight from the structs to bytes.

Building a ``client_pb2.Reply`` from a :class:`~neoevents.protocol.messages.Reply` field by field (attribute
access on protobuf messages, one per field, nested messages made present one at a time) and serializing it
cost 10-16 µs per reply; these encoders write the same message in a few µs, with no protobuf message objects.

How each message is written is planned once from the ``client.proto`` descriptors, by field name (the
messages module keeps struct field names equal to the proto's), so field numbers and types have one source of
truth. Zero values are omitted (proto3 implicit presence), a nested struct that is set is written even when
it is empty (as a present, empty message), and fields are written in the struct's order, which is the
proto's field-number order (parsers accept any order).
"""

from __future__ import annotations

from typing import Any, Final

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from msgspec import Raw, Struct, to_builtins

from neoevents.protocol import client_pb2 as pb

_SMALL: Final = [bytes((i,)) for i in range(128)]
_MASK64: Final = (1 << 64) - 1

# Kinds of field.
_STRING, _BYTES, _BOOL, _VARINT, _SIGNED, _MESSAGE, _REPEATED, _MAP_STRING, _MAP_MESSAGE = range(9)
_VARINTS: Final = frozenset((FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64))
# Enums are int32 on the wire: a negative value is sign-extended like an int32's.
_SIGNED_VARINTS: Final = frozenset((FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_ENUM))


def varint(n: int) -> bytes:
    """An unsigned varint (``n`` >= 0)."""
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


# How a field is written: its tag bytes, its kind, and the plan of a nested message (or map entry value).
_Field = tuple[bytes, int, "dict[str, _Field] | None"]


def _kind(field: FieldDescriptor) -> tuple[int, Descriptor | None]:
    message = field.message_type
    if message is not None:
        if message.GetOptions().map_entry:
            if message.fields_by_name["key"].type != FieldDescriptor.TYPE_STRING:
                raise TypeError(f"map field {field.full_name}: unsupported key type")
            value = message.fields_by_name["value"]
            if value.message_type is not None:
                return _MAP_MESSAGE, value.message_type
            if value.type != FieldDescriptor.TYPE_STRING:
                raise TypeError(f"map field {field.full_name}: unsupported value type")
            return _MAP_STRING, None
        if field.is_repeated:
            return _REPEATED, message
        return _MESSAGE, message
    if field.is_repeated:
        raise TypeError(f"repeated scalar field {field.full_name} is not supported")
    if field.type == FieldDescriptor.TYPE_STRING:
        return _STRING, None
    if field.type == FieldDescriptor.TYPE_BYTES:
        return _BYTES, None
    if field.type == FieldDescriptor.TYPE_BOOL:
        return _BOOL, None
    if field.type in _VARINTS:
        return _VARINT, None
    if field.type in _SIGNED_VARINTS:
        return _SIGNED, None
    raise TypeError(f"field {field.full_name}: unsupported type {field.type}")


def _plan(descriptor: Descriptor, plans: dict[str, dict[str, _Field]]) -> dict[str, _Field]:
    """Field name -> how to write it, for a message and (recursively) the messages it contains."""
    plan = plans.get(descriptor.full_name)
    if plan is not None:
        return plan
    plan = plans[descriptor.full_name] = {}
    for field in descriptor.fields:
        kind, nested = _kind(field)
        wire_type = 0 if kind in (_BOOL, _VARINT, _SIGNED) else 2
        plan[field.name] = (_tag(field.number, wire_type), kind, None if nested is None else _plan(nested, plans))
    return plan


class Encoder:
    """Encodes a struct as the protobuf message it mirrors (struct field names are the message's field names).

    :func:`msgspec.to_builtins` turns the struct into dicts of its non-default fields (in C), so only the
    fields that are set are visited here.
    """

    __slots__ = ("_name", "_plan")

    def __init__(self, descriptor: Descriptor) -> None:
        self._name = descriptor.full_name
        self._plan = _plan(descriptor, {})

    def encode(self, value: Struct) -> bytes:
        """The message's bytes (no length prefix)."""
        return _encode(to_builtins(value, builtin_types=_RAW), self._plan, self._name)


# Payload fields are msgspec.Raw; a bytes field would also be written as is (to_builtins would base64 it).
_RAW: Final = (Raw, bytes)


def _encode(fields: dict[str, Any], plan: dict[str, _Field], name: str) -> bytes:
    out: list[bytes] = []
    add = out.append
    for key, v in fields.items():
        if not v and v != {}:  # zero, empty or unset; an empty nested message ({}) is written as present
            continue
        try:
            tag, kind, nested = plan[key]
        except KeyError:
            raise TypeError(f"{name} has no field {key!r}") from None
        if kind == _MESSAGE:
            body = _encode(v, nested, key)  # type: ignore[arg-type]
            add(tag)
            add(varint(len(body)))
            add(body)
        elif kind == _STRING:
            b = v.encode()
            add(tag)
            add(varint(len(b)))
            add(b)
        elif kind == _VARINT:
            add(tag)
            add(varint(v))
        elif kind == _BOOL:
            add(tag)
            add(b"\x01")
        elif kind == _BYTES:
            b = bytes(v)
            add(tag)
            add(varint(len(b)))
            add(b)
        elif kind == _SIGNED:
            add(tag)
            add(varint(v & _MASK64))
        elif kind == _REPEATED:
            for item in v:
                body = _encode(item, nested, key)  # type: ignore[arg-type]
                add(tag)
                add(varint(len(body)))
                add(body)
        else:
            for k, item in v.items():
                kb = k.encode()
                entry = b"\x0a" + varint(len(kb)) + kb
                if kind == _MAP_MESSAGE:
                    body = _encode(item, nested, key)  # type: ignore[arg-type]
                    entry += b"\x12" + varint(len(body)) + body
                elif item:
                    vb = item.encode()
                    entry += b"\x12" + varint(len(vb)) + vb
                add(tag)
                add(varint(len(entry)))
                add(entry)
    return b"".join(out)


def reply_encoder() -> Encoder:
    """An encoder of :class:`~neoevents.protocol.messages.Reply` as ``centrifugal.centrifuge.protocol.Reply``."""
    return Encoder(pb.Reply.DESCRIPTOR)  # type: ignore[attr-defined]
