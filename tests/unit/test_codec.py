"""Wire codecs: bytes in, commands out; replies in, bytes out. No sockets."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from neoevents.protocol import client_pb2
from neoevents.protocol.codec import JSON, PROTOBUF
from neoevents.protocol.messages import (
    ClientInfo,
    ConnectResult,
    Error,
    PresenceStatsResult,
    Publication,
    Push,
    Reply,
    SubscribeResult,
)
from neoevents.protocol.pbwire import varint

pb: Any = client_pb2  # generated code, untyped


def test_json_decodes_newline_joined_commands_with_raw_payloads() -> None:
    frame = b'{"id":1,"connect":{"token":"t","data":{"a":[1,2]}}}\n{"id":2,"subscribe":{"channel":"x"}}\n'
    commands, ok = JSON.decode_commands(frame)
    assert ok
    assert [c.id for c in commands] == [1, 2]
    assert commands[0].connect is not None and bytes(commands[0].connect.data) == b'{"a":[1,2]}'
    assert commands[1].subscribe is not None and commands[1].subscribe.channel == "x"


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"garbage",
        b"[1,2]",
        b'{"id":-1}',
        b'{"id":"1"}',
        b'{"id":1,"subscribe":{"channel":5}}',
        b'{"id":1',
        b"\xff",
        b'{"id":2,"publish":{"channel":"a","data":' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
        b'{"id":2,"publish":{"channel":"a","data":' + b'{"a":' * 5_000 + b"1" + b"}" * 5_000 + b"}}",
    ],
)
def test_json_malformed_frames_are_reported_not_raised(frame: bytes) -> None:
    _commands, ok = JSON.decode_commands(frame)
    assert not ok


def test_json_reply_omits_zero_fields_but_keeps_presence_counts_and_client_info() -> None:
    reply = Reply(id=3, connect=ConnectResult(client="c", version="v", ping=25, pong=True))
    assert JSON.encode_reply(reply) == b'{"id":3,"connect":{"client":"c","version":"v","ping":25,"pong":true}}'
    stats = Reply(id=4, presence_stats=PresenceStatsResult())
    assert JSON.encode_reply(stats) == b'{"id":4,"presence_stats":{"num_clients":0,"num_users":0}}'
    err = Reply(id=5, error=Error(103, "permission denied"))
    assert JSON.encode_reply(err) == b'{"id":5,"error":{"code":103,"message":"permission denied"}}'


def _delimited(*messages: bytes) -> bytes:
    return b"".join(varint(len(m)) + m for m in messages)


def test_protobuf_decodes_length_delimited_commands() -> None:
    first = pb.Command(id=1)
    first.connect.token = "tok"
    second = pb.Command(id=2)
    second.publish.channel = "ch"
    second.publish.data = b'{"x":1}'
    commands, ok = PROTOBUF.decode_commands(_delimited(first.SerializeToString(), second.SerializeToString()))
    assert ok
    assert commands[0].connect is not None and commands[0].connect.token == "tok"
    assert commands[1].publish is not None and bytes(commands[1].publish.data) == b'{"x":1}'


@pytest.mark.parametrize("frame", [b"", b"\x05abc", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", b"\x02\xff\xff"])
def test_protobuf_malformed_frames_are_reported_not_raised(frame: bytes) -> None:
    _, ok = PROTOBUF.decode_commands(frame)
    assert not ok


def test_protobuf_reply_round_trips_through_the_generated_messages() -> None:
    reply = Reply(
        id=7,
        subscribe=SubscribeResult(
            recoverable=True,
            epoch="abcd",
            offset=9,
            publications=[Publication(data=msgspec.Raw(b'{"n":1}'), offset=9, tags={"k": "v"})],
        ),
    )
    data = PROTOBUF.encode_reply(reply)
    length = data[0]
    decoded = pb.Reply.FromString(data[1 : 1 + length])
    assert decoded.id == 7
    assert decoded.subscribe.epoch == "abcd" and decoded.subscribe.offset == 9
    assert decoded.subscribe.publications[0].data == b'{"n":1}'
    assert dict(decoded.subscribe.publications[0].tags) == {"k": "v"}


def test_publication_push_is_encoded_once_per_format() -> None:
    pub = Publication(data=msgspec.Raw(b'{"x":1}'), offset=4, info=ClientInfo(user="u", client="c"))
    reply = Reply(push=Push(channel="ch", pub=pub))
    as_json, as_pb = JSON.encode_reply(reply), PROTOBUF.encode_reply(reply)
    assert msgspec.json.decode(as_json) == {
        "push": {"channel": "ch", "pub": {"data": {"x": 1}, "info": {"user": "u", "client": "c"}, "offset": 4}}
    }
    decoded = pb.Reply.FromString(as_pb[1:])
    assert decoded.push.channel == "ch" and decoded.push.pub.offset == 4 and decoded.push.pub.info.user == "u"


def test_pings_are_empty_messages() -> None:
    assert JSON.ping == b"{}"
    assert PROTOBUF.ping == b"\x00"
