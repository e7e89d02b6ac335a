"""Fan-out in the hub: one encoding per wire format, the same bytes for every subscriber of that format."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from neoevents.hub import Hub
from neoevents.protocol.codec import JSON, PROTOBUF, Codec
from neoevents.protocol.messages import ClientInfo, Publication, Reply


@dataclass
class Transport:
    codec: Codec
    framing: int
    frames: list[bytes] = field(default_factory=list)
    encoded: list[Reply] = field(default_factory=list)

    def frame(self, payload: bytes) -> bytes:
        return b"%d:" % self.framing + payload

    def send_frame(self, frame: bytes) -> None:
        self.frames.append(frame)


@dataclass(eq=False)
class Client:
    transport: Transport


@dataclass
class Sub:
    join_leave: bool = False


class CountingCodec:
    """Wraps a codec and counts the replies it encodes."""

    def __init__(self, codec: Codec, counter: list[int]) -> None:
        self._codec = codec
        self._counter = counter
        self.binary = codec.binary

    def encode_reply(self, reply: Reply) -> bytes:
        self._counter[0] += 1
        return self._codec.encode_reply(reply)


def _hub(formats: list[int], join_leave: list[bool] | None = None) -> tuple[Hub, list[Client], list[int]]:
    counter = [0]
    codecs: dict[int, Any] = {0: CountingCodec(JSON, counter), 1: CountingCodec(PROTOBUF, counter)}
    hub = Hub()
    clients = [Client(Transport(codecs[f], f)) for f in formats]
    for k, client in enumerate(clients):
        hub.add("ch", client, Sub(join_leave[k] if join_leave else False))  # type: ignore[arg-type]
    return hub, clients, counter


def test_mixed_formats_get_their_own_encoding_computed_once_each() -> None:
    hub, clients, counter = _hub([0, 1, 1, 0, 0, 1, 0])
    assert hub.broadcast_publication("ch", Publication(data=msgspec.Raw(b'{"n":1}'), offset=7)) == 7
    assert counter[0] == 2
    json_frames = {c.transport.frames[0] for c in clients if c.transport.framing == 0}
    pb_frames = {c.transport.frames[0] for c in clients if c.transport.framing == 1}
    assert len(json_frames) == 1 and len(pb_frames) == 1
    [jf] = json_frames
    assert jf.startswith(b"0:")
    assert msgspec.json.decode(jf[2:]) == {"push": {"channel": "ch", "pub": {"data": {"n": 1}, "offset": 7}}}
    assert next(iter(pb_frames)).startswith(b"1:")


def test_join_and_leave_go_only_to_subscribers_that_asked_for_them() -> None:
    hub, clients, _ = _hub([0, 1, 0], join_leave=[True, False, True])
    assert hub.broadcast_join("ch", ClientInfo(user="u", client="c")) == 2
    assert hub.broadcast_leave("ch", ClientInfo(user="u", client="c")) == 2
    assert [len(c.transport.frames) for c in clients] == [2, 0, 2]


def test_no_subscribers_no_encoding() -> None:
    hub, _, counter = _hub([])
    assert hub.broadcast_publication("other", Publication(data=msgspec.Raw(b"1"))) == 0
    assert counter[0] == 0
