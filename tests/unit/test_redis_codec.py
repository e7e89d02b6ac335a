"""What the Redis engine writes to Redis (the same bytes as Centrifugo), its addresses and channel sharding."""

from __future__ import annotations

import pytest
from msgspec import Raw

from neoevents.engines.redis_address import RedisAddress, parse_address, shard_index
from neoevents.engines.redis_codec import (
    MalformedMessage,
    decode_info,
    decode_publication,
    encode_info,
    encode_publication,
    split_position,
)
from neoevents.protocol import client_pb2 as pb
from neoevents.protocol.messages import ClientInfo

INFO = ClientInfo(user="u1", client="c-1", conn_info=Raw(b'{"a":1}'), chan_info=Raw(b'{"b":2}'))


def test_publications_are_the_client_protocol_protobuf_message() -> None:
    data = b'{"x":"' + b"y" * 300 + b'"}'
    encoded = encode_publication(data, INFO, {"k": "v", "ключ": "значение"})
    message = pb.Publication.FromString(encoded)  # type: ignore[attr-defined]
    assert message.data == data
    assert (message.info.user, message.info.client) == ("u1", "c-1")
    assert (message.info.conn_info, message.info.chan_info) == (b'{"a":1}', b'{"b":2}')
    assert dict(message.tags) == {"k": "v", "ключ": "значение"}
    decoded = decode_publication(encoded)
    assert bytes(decoded.data) == data and decoded.info == INFO and decoded.tags == {"k": "v", "ключ": "значение"}


def test_publications_written_by_others_decode_and_unknown_fields_are_skipped() -> None:
    message = pb.Publication(data=b"{}", offset=7, time=1700000000000, channel="x")  # type: ignore[attr-defined]
    # Fields a newer writer may add: 15 (varint), 16 (32-bit), 17 (64-bit).
    extra = b"\x78\x05" + b"\x85\x01\x01\x02\x03\x04" + b"\x89\x01" + bytes(8)
    decoded = decode_publication(message.SerializeToString() + extra)
    assert bytes(decoded.data) == b"{}" and decoded.offset == 7
    assert decoded.time == 0  # Centrifugo's own lag metric; never sent to clients
    assert decode_publication(b"") == decode_publication(pb.Publication().SerializeToString())  # type: ignore[attr-defined]


def test_client_info_round_trip() -> None:
    assert decode_info(encode_info(INFO)) == INFO
    assert decode_info(encode_info(ClientInfo(user="", client="c"))) == ClientInfo(user="", client="c")


@pytest.mark.parametrize("garbage", [b"\x22\x05ab", b"\x22", b"\x0f", b"\x30\xff\xff"])
def test_malformed_messages_are_reported(garbage: bytes) -> None:
    with pytest.raises(MalformedMessage):
        decode_publication(garbage)


def test_position_prefix() -> None:
    assert split_position(b"__p1:42:AbCdEfGh__\x22\x02{}") == (42, "AbCdEfGh", b"\x22\x02{}")
    for bad in (b"__p1:x:e__", b"__p1:1", b"__p1:1:e"):
        with pytest.raises(MalformedMessage):
            split_position(bad)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("redis:6379", RedisAddress(host="redis", port=6379, password="pw", db=2)),
        ("[::1]:7000", RedisAddress(host="::1", port=7000, password="pw", db=2)),
        ("redis://h", RedisAddress(host="h", password="pw", db=2)),
        ("redis://:secret@h:7000/5", RedisAddress(host="h", port=7000, password="secret", db=5)),
        ("redis://user:secret@h:7000", RedisAddress(host="h", port=7000, username="user", password="secret", db=2)),
        ("redis://user@h", RedisAddress(host="h", username="user", password="pw", db=2)),
        ("rediss://h:6380?db=3", RedisAddress(host="h", port=6380, tls=True, password="pw", db=3)),
        ("tcp://h:1234", RedisAddress(host="h", port=1234, password="pw", db=2)),
        ("unix:///run/redis.sock?db=4", RedisAddress(path="/run/redis.sock", password="pw", db=4)),
    ],
)
def test_addresses(address: str, expected: RedisAddress) -> None:
    assert parse_address(address, password="pw", db=2) == expected


def test_addresses_never_show_credentials() -> None:
    assert "secret" not in str(parse_address("redis://user:secret@h:7000/1"))


def test_channels_map_to_shards_as_in_centrifugo() -> None:
    # Computed with Centrifugo's algorithm (jump consistent hash of FNV-1a 64) in Go.
    expected = {
        "news": (1, 2, 3),
        "chat:room1": (1, 2, 13),
        "tenant:42:events": (0, 0, 14),
        "": (1, 1, 13),
        "ünïcode": (0, 0, 4),
        "x": (1, 1, 3),
    }
    for channel, indexes in expected.items():
        assert (shard_index(channel, 2), shard_index(channel, 3), shard_index(channel, 16)) == indexes
        assert shard_index(channel, 1) == 0
