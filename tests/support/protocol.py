"""Encode commands and decode replies of the Centrifugal client protocol v2 (JSON and Protobuf).

Both directions use "JSON-shaped" dicts: the JSON protocol's field names, with the ``bytes`` fields
(``data``, ``info``, ``conn_info``, ``chan_info``) holding decoded Python values in both protocols.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, unknown_fields
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message


def _load_messages() -> dict[str, type[Message]]:
    """The message classes of ``neoevents.protocol.client_pb2``, built in a private descriptor pool.

    The generated module registers ``client.proto`` (package ``centrifugal.centrifuge.protocol``) in the
    process-wide default pool, and so does centrifuge-python's own generated module: importing both in one
    process fails. The tests read the serialized descriptor out of the generated file instead of importing
    it, so they work whatever else the test process imports (the wire format does not depend on the pool).
    """
    spec = importlib.util.find_spec("neoevents.protocol.client_pb2")
    if spec is None or spec.origin is None:
        raise ImportError("neoevents.protocol.client_pb2 not found")
    tree = ast.parse(Path(spec.origin).read_text())
    serialized: bytes | None = None
    for node in ast.walk(tree):
        func = node.func if isinstance(node, ast.Call) else None
        if isinstance(func, ast.Attribute) and func.attr == "AddSerializedFile" and isinstance(node, ast.Call):
            serialized = ast.literal_eval(node.args[0])
    if not isinstance(serialized, bytes):
        raise ImportError("no serialized descriptor in neoevents.protocol.client_pb2")
    file_proto = descriptor_pb2.FileDescriptorProto.FromString(serialized)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return {
        message.name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"{file_proto.package}.{message.name}")
        )
        for message in file_proto.message_type
    }


MESSAGES = _load_messages()
Command = MESSAGES["Command"]
Reply = MESSAGES["Reply"]
Publication = MESSAGES["Publication"]

JSON = "json"
PROTOBUF = "protobuf"
PROTOCOLS = (JSON, PROTOBUF)
SUBPROTOCOLS = {JSON: "centrifuge-json", PROTOBUF: "centrifuge-protobuf"}


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Returns (value, new position); raises ValueError on a truncated varint."""
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _bytes_value(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return json.dumps(value, separators=(",", ":")).encode()


def _is_map(fd: Any) -> bool:
    return (
        fd.type == FieldDescriptor.TYPE_MESSAGE
        and fd.message_type is not None
        and fd.message_type.GetOptions().map_entry
    )


def _is_repeated(fd: Any) -> bool:
    return bool(fd.is_repeated)


def dict_to_message(data: dict[str, Any], msg: Message) -> Message:
    """Fill ``msg`` from a JSON-shaped dict (unknown keys raise KeyError)."""
    fields: Any = msg.DESCRIPTOR.fields_by_name
    for key, value in data.items():
        fd = fields.get(key)
        if fd is None:
            raise KeyError(f"{msg.DESCRIPTOR.name} has no field {key!r}")
        if value is None:
            continue
        if _is_map(fd):
            target = getattr(msg, key)
            value_fd = fd.message_type.fields_by_name["value"]
            for k, v in value.items():
                if value_fd.type == FieldDescriptor.TYPE_MESSAGE:
                    dict_to_message(v, target[k])
                elif value_fd.type == FieldDescriptor.TYPE_BYTES:
                    target[k] = _bytes_value(v)
                else:
                    target[k] = v
        elif _is_repeated(fd):
            target = getattr(msg, key)
            for item in value:
                if fd.type == FieldDescriptor.TYPE_MESSAGE:
                    dict_to_message(item, target.add())
                elif fd.type == FieldDescriptor.TYPE_BYTES:
                    target.append(_bytes_value(item))
                else:
                    target.append(item)
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            sub = getattr(msg, key)
            sub.SetInParent()
            dict_to_message(value, sub)
        elif fd.type == FieldDescriptor.TYPE_BYTES:
            setattr(msg, key, _bytes_value(value))
        else:
            setattr(msg, key, value)
    return msg


def _decode_bytes(raw: bytes) -> Any:
    if not raw:
        return raw
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return raw


def _unknown_value(wire_type: int, data: Any) -> Any:
    if wire_type == 2 and isinstance(data, bytes):
        try:
            return data.decode()
        except UnicodeDecodeError:
            return data
    return data


def message_to_dict(msg: Message) -> dict[str, Any]:
    """Set fields of ``msg`` as a JSON-shaped dict; bytes fields are JSON-decoded when they parse.

    Fields unknown to ``client.proto`` appear as ``"#<field number>"`` keys (length-delimited values
    decoded as UTF-8 when possible), so that a newer server's extra fields are visible.
    """
    out: dict[str, Any] = {}
    unknown_set: Any = unknown_fields.UnknownFieldSet(msg)
    for unknown in unknown_set:
        out[f"#{unknown.field_number}"] = _unknown_value(unknown.wire_type, unknown.data)
    for descriptor, value in msg.ListFields():
        fd: Any = descriptor
        if _is_map(fd):
            value_fd = fd.message_type.fields_by_name["value"]
            if value_fd.type == FieldDescriptor.TYPE_MESSAGE:
                out[fd.name] = {k: message_to_dict(v) for k, v in value.items()}
            elif value_fd.type == FieldDescriptor.TYPE_BYTES:
                out[fd.name] = {k: _decode_bytes(v) for k, v in value.items()}
            else:
                out[fd.name] = dict(value.items())
        elif _is_repeated(fd):
            if fd.type == FieldDescriptor.TYPE_MESSAGE:
                out[fd.name] = [message_to_dict(v) for v in value]
            elif fd.type == FieldDescriptor.TYPE_BYTES:
                out[fd.name] = [_decode_bytes(v) for v in value]
            else:
                out[fd.name] = list(value)
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            out[fd.name] = message_to_dict(value)
        elif fd.type == FieldDescriptor.TYPE_BYTES:
            out[fd.name] = _decode_bytes(value)
        else:
            out[fd.name] = value
    return out


def encode_commands(commands: list[dict[str, Any]], protocol: str) -> str | bytes:
    """One frame carrying ``commands``: newline-joined JSON text, or varint-delimited Protobuf bytes."""
    if protocol == JSON:
        return "\n".join(json.dumps(cmd, separators=(",", ":")) for cmd in commands)
    out = bytearray()
    for cmd in commands:
        raw = dict_to_message(cmd, Command()).SerializeToString()
        out += encode_varint(len(raw)) + raw
    return bytes(out)


def decode_frame(frame: str | bytes, protocol: str) -> list[dict[str, Any]]:
    """Replies carried by one frame from the server, as JSON-shaped dicts."""
    if protocol == JSON:
        text = frame.decode() if isinstance(frame, bytes) else frame
        return [json.loads(line) for line in text.split("\n") if line.strip()]
    buf = frame.encode() if isinstance(frame, str) else frame
    replies: list[dict[str, Any]] = []
    pos = 0
    while pos < len(buf):
        size, pos = decode_varint(buf, pos)
        if pos + size > len(buf):
            raise ValueError("truncated protobuf reply")
        reply = Reply()
        reply.ParseFromString(buf[pos : pos + size])
        replies.append(message_to_dict(reply))
        pos += size
    return replies
