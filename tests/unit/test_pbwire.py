"""Protobuf against the protobuf library: every reply struct encoded (filled and empty), every command decoded.
No sockets."""

from __future__ import annotations

import contextlib
import types
import typing
from typing import Any

import msgspec
import pytest

from neoevents.protocol import client_pb2
from neoevents.protocol.codec import PROTOBUF
from neoevents.protocol.messages import Command, Reply
from neoevents.protocol.pbwire import Encoder, reply_encoder, varint

pb: Any = client_pb2  # generated code, untyped


def _reference(struct: msgspec.Struct, message: Any) -> None:
    """The same message built field by field with the protobuf library (the reference encoding)."""
    message.SetInParent()
    for name in struct.__struct_fields__:
        value = getattr(struct, name)
        if value is None:
            continue
        if isinstance(value, msgspec.Struct):
            _reference(value, getattr(message, name))
        elif isinstance(value, msgspec.Raw):
            if bytes(value):
                setattr(message, name, bytes(value))
        elif isinstance(value, dict):
            target = getattr(message, name)
            for key, item in value.items():
                if isinstance(item, msgspec.Struct):
                    _reference(item, target[key])
                else:
                    target[key] = item
        elif isinstance(value, list):
            target = getattr(message, name)
            for item in value:
                _reference(item, target.add())
        elif value:
            setattr(message, name, value)


def _filled(cls: type[msgspec.Struct], descriptor: Any, depth: int = 0, negative: bool = False) -> msgspec.Struct:
    """An instance with every field set to a non-zero value (nested structs filled too, two levels deep); with
    ``negative``, the signed integer fields are negative."""
    hints = typing.get_type_hints(cls, include_extras=True)
    values: dict[str, Any] = {}
    for i, name in enumerate(cls.__struct_fields__):
        field = descriptor.fields_by_name[name]
        values[name] = _value(hints[name], field, depth, i, negative)
    return cls(**values)


def _value(hint: Any, field: Any, depth: int, i: int, negative: bool) -> Any:
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return _value(typing.get_args(hint)[0], field, depth, i, negative)
    if origin in (typing.Union, types.UnionType):
        inner = next(a for a in typing.get_args(hint) if a is not type(None))
        return _value(inner, field, depth, i, negative) if depth < 2 else None
    if origin is list:
        (item,) = typing.get_args(hint)
        nested = field.message_type
        return [_filled(item, nested, depth + 1), _filled(item, nested, depth + 1)] if depth < 2 else []
    if origin is dict:
        _, item = typing.get_args(hint)
        if item is str:
            return {"env": "prod", "é": "ü" * 200, "": ""}
        nested = field.message_type.fields_by_name["value"].message_type
        if depth >= 2:
            return {}
        try:
            empty = item()
        except TypeError:  # required fields: a second filled one
            empty = _filled(item, nested, depth + 1)
        return {"a": _filled(item, nested, depth + 1), "b": empty}
    if hint is str:
        return f"value-{i}-é" * (1 if i % 2 else 30)
    if hint is bool:
        return True
    if hint is int:
        signed = field.type in (field.TYPE_INT32, field.TYPE_INT64)
        wide = field.type in (field.TYPE_INT64, field.TYPE_UINT64)
        if negative and signed:
            return -(2**40 if wide else 2**30) - i
        return (2**40 if wide else 2**31 if not signed else 2**30) + i
    if hint is msgspec.Raw:
        return msgspec.Raw(b'{"k":' + str(i).encode() + b"}" + b" " * (150 if i % 2 else 0))
    if isinstance(hint, type) and issubclass(hint, msgspec.Struct):
        return _filled(hint, field.message_type, depth + 1, negative) if depth < 2 else None
    raise AssertionError(f"no sample value for {hint!r}")


def _samples(cls: type[msgspec.Struct], descriptor: Any, *, negative: bool = False) -> list[tuple[str, Any]]:
    """For each message field of ``cls`` (a Reply or a Command): (field name, a filled instance of its struct)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    samples = []
    for name in cls.__struct_fields__:
        if name != "id":
            inner = next(a for a in typing.get_args(hints[name]) if a is not type(None))
            samples.append((name, _filled(inner, descriptor.fields_by_name[name].message_type, 0, negative)))
    return samples


def _replies() -> list[tuple[str, Reply]]:
    cases: list[tuple[str, Reply]] = [("empty", Reply()), ("id only", Reply(id=7))]
    for negative in (False, True):
        for name, sample in _samples(Reply, pb.Reply.DESCRIPTOR, negative=negative):
            cases.append((f"{name}-filled{'-negative' if negative else ''}", Reply(id=3, **{name: sample})))
    for name, sample in _samples(Reply, pb.Reply.DESCRIPTOR):
        with contextlib.suppress(TypeError):  # (structs with required fields have no empty form)
            empty: Any = type(sample)()
            cases.append((f"{name}-empty", Reply(id=4, **{name: empty})))
    return cases


def _has_map(value: Any) -> bool:
    if isinstance(value, dict):
        return bool(value)
    if isinstance(value, list):
        return any(_has_map(v) for v in value)
    if isinstance(value, msgspec.Struct):
        return any(_has_map(getattr(value, f)) for f in value.__struct_fields__)
    return False


CASES = _replies()


@pytest.mark.parametrize(("name", "reply"), CASES, ids=[name for name, _ in CASES])
def test_encoding_is_the_protobuf_message(name: str, reply: Reply) -> None:
    expected = pb.Reply()
    _reference(reply, expected)
    ours = reply_encoder().encode(reply)
    decoded = pb.Reply.FromString(ours)
    assert decoded == expected
    # Re-encoded (map entries sorted), nothing differs, unknown fields included.
    assert decoded.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)
    if not _has_map(reply):  # map entry order is not fixed by protobuf; everything else is, byte for byte
        assert ours == expected.SerializeToString(deterministic=True)


def test_cases_cover_every_reply_field() -> None:
    covered = {name.split("-")[0] for name, _ in CASES}
    assert covered >= set(Reply.__struct_fields__) - {"id"}


def test_codec_prefixes_each_reply_with_its_length() -> None:
    body = reply_encoder().encode(Reply(id=300))
    assert PROTOBUF.encode_reply(Reply(id=300)) == varint(len(body)) + body
    assert pb.Reply.FromString(body).id == 300


@pytest.mark.parametrize("n", [1, 127, 128, 300, 2**32 - 1, 2**63 - 1, 2**64 - 1])
def test_varint_matches_protobuf(n: int) -> None:
    tag = varint(pb.Publication.DESCRIPTOR.fields_by_name["offset"].number << 3)  # wire type 0: varint
    assert pb.Publication(offset=n).SerializeToString() == tag + varint(n)


def test_a_struct_field_missing_from_the_proto_is_refused() -> None:
    class Stray(msgspec.Struct):
        nonexistent: str = ""

    with pytest.raises(TypeError, match="has no field 'nonexistent'"):
        Encoder(pb.Reply.DESCRIPTOR).encode(Stray("x"))


def _commands() -> list[tuple[str, Command]]:
    return [(name, Command(id=9, **{name: sample})) for name, sample in _samples(Command, pb.Command.DESCRIPTOR)]


COMMANDS = _commands()


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_protobuf_commands_decode_every_field(name: str, command: Command) -> None:
    expected = pb.Command()
    _reference(command, expected)
    body = Encoder(pb.Command.DESCRIPTOR).encode(command)
    assert pb.Command.FromString(body) == expected
    decoded, ok = PROTOBUF.decode_commands(varint(len(body)) + body + varint(len(body)) + body)
    assert ok
    assert decoded == [command, command]
