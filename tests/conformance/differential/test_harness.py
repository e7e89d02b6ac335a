"""Self-tests of the differential harness: protocol conversion, normalisation and comparison."""

from __future__ import annotations

from typing import Any

from tests.conformance.differential.harness import Normalizer, diff_transcripts, matches
from tests.support.protocol import (
    Command,
    Publication,
    Reply,
    decode_frame,
    dict_to_message,
    encode_commands,
    encode_varint,
)


def _reply_frame(*replies: dict[str, Any]) -> bytes:
    out = bytearray()
    for reply in replies:
        raw = dict_to_message(reply, Reply()).SerializeToString()
        out += encode_varint(len(raw)) + raw
    return bytes(out)


def test_protobuf_reply_round_trip_keeps_json_shape() -> None:
    replies: list[dict[str, Any]] = [
        {"id": 1, "connect": {"client": "c1", "version": "v", "expires": True, "ttl": 10, "ping": 25, "pong": True}},
        {"push": {"channel": "ch", "pub": {"data": {"x": [1, 2]}, "offset": 3, "tags": {"k": "v"}}}},
        {"id": 2, "presence": {"presence": {"c1": {"user": "u", "client": "c1", "conn_info": {"n": 1}}}}},
        {"id": 3, "unsubscribe": {}},
        {},
    ]
    assert decode_frame(_reply_frame(*replies), "protobuf") == replies


def test_json_commands_are_newline_joined() -> None:
    frame = encode_commands([{"id": 1, "connect": {}}, {"id": 2, "subscribe": {"channel": "a"}}], "json")
    assert frame == '{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"a"}}'


def test_protobuf_commands_encode_bytes_fields_as_json() -> None:
    frame = encode_commands([{"id": 7, "publish": {"channel": "a", "data": {"k": 1}}}], "protobuf")
    assert isinstance(frame, bytes)
    command: Any = Command()
    command.ParseFromString(frame[1:])
    assert frame[0] == len(frame) - 1
    assert command.id == 7 and command.publish.data == b'{"k":1}'


def test_unknown_protobuf_fields_are_visible() -> None:
    # Field 20 is not defined in client.proto (say, a field a newer server adds).
    pub = Publication(offset=1).SerializeToString() + bytes([20 << 3 | 2, 1, 3]) + b"abc"
    reply: Any = Reply()
    reply.push.channel = "c"
    reply.push.pub.ParseFromString(pub)
    raw = reply.SerializeToString()
    assert decode_frame(encode_varint(len(raw)) + raw, "protobuf") == [
        {"push": {"channel": "c", "pub": {"#20": "abc", "offset": 1}}}
    ]


def test_normaliser_labels_generated_values_consistently() -> None:
    transcript = [
        {"replies": [{"connect": {"client": "abc", "version": "6.9.1", "ttl": 3598}}]},
        {"body": {"result": {"presence": {"abc": {"client": "abc", "user": "u-r1"}}, "epoch": "XyZ"}}},
        {"replies": [{"push": {"channel": "ch-r1", "pub": {"epoch": "XyZ"}}}]},
    ]
    norm = Normalizer("r1")
    norm.collect(transcript)
    assert norm.apply(transcript) == [
        {"replies": [{"connect": {"client": "<client#1>", "version": "<version>", "ttl": "<ttl~3600>"}}]},
        {
            "body": {
                "result": {
                    "presence": {"<client#1>": {"client": "<client#1>", "user": "u-{run}"}},
                    "epoch": "<epoch#1>",
                }
            }
        },
        {"replies": [{"push": {"channel": "ch-{run}", "pub": {"epoch": "<epoch#1>"}}}]},
    ]


def test_diff_reports_missing_and_unexpected_fields() -> None:
    expected = [{"step": 1, "kind": "recv", "conn": "a", "replies": [{"id": 1, "history": {"publications": []}}]}]
    actual = [{"step": 1, "kind": "recv", "conn": "a", "replies": [{"id": 1, "history": {"offset": 0}}]}]
    assert diff_transcripts(expected, actual) == [
        "step 1 recv [a].replies[0].history.publications: missing (expected [])",
        "step 1 recv [a].replies[0].history.offset: unexpected 0",
    ]


def test_matches_is_partial_for_dicts_and_exact_for_lists() -> None:
    assert matches({"id": 1, "error": {"code": 103}}, {"id": 1, "error": {"code": 103, "message": "x"}})
    assert not matches([{"id": 1}], [{"id": 1}, {"id": 2}])
