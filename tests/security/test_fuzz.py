"""Fuzzing the client protocol: over 10,000 generated malformed frames against a real neoevents process.

Frames come from a seeded generator (reproducible: ``NEOEVENTS_FUZZ_SEED`` picks another seed), half JSON and
half Protobuf: structure-aware mutations of valid commands (dropped and unknown keys, wrong types, huge and
negative numbers, deep nesting, duplicated and swapped methods, several commands per frame), byte-level
mutations of their encodings (flips, truncation, insertion, invalid UTF-8, bogus varint lengths, unknown
fields and wire types), random bytes, and valid-looking but semantically wrong commands (unknown
namespaces, commands before connect, a second connect, refresh with a garbage token, the ``ping`` command).

They are spread over a pool of connections per protocol; each connection sends one frame and then a probe
command, so every frame's effect is known: the replies before the probe's must be results or documented
errors (never 100), or the connection must end with a documented close code. Meanwhile a control
subscriber must receive every publication of a background publisher in order, ``/health`` must keep
answering, and the server log must stay free of tracebacks and exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.protocol import JSON, PROTOBUF, Command, decode_frame, dict_to_message, encode_varint
from tests.support.rawclient import RawClient
from tests.support.servers import RunningServer, ServerOptions

pytestmark = pytest.mark.asyncio

SEED = int(os.environ.get("NEOEVENTS_FUZZ_SEED", "20261129"))
FRAMES_PER_PROTOCOL = 5200
POOL_PER_PROTOCOL = 16
PRE_CONNECT_SHARE = 0.08  # frames sent on a fresh connection instead of a connected one
PROBE_ID = 4_294_967_000
MESSAGE_LIMIT = 65536

# Documented error codes (docs/protocol.md); 100 means an internal error and is a failure here.
DOCUMENTED_ERRORS = set(range(101, 113))
DOCUMENTED_CLOSES = {1007, 1009, 3005, 3013, 3500, 3501, 3508}

OPTIONS = ServerOptions(
    namespaces=[
        {"name": "ctl", "allow_subscribe_for_client": True, "history_size": 1000, "history_ttl": "300s"},
        {
            "name": "room",
            "allow_subscribe_for_client": True,
            "allow_publish_for_client": True,
            "allow_history_for_client": True,
            "allow_presence_for_client": True,
            "presence": True,
            "join_leave": True,
            "history_size": 10,
            "history_ttl": "60s",
            "allow_recovery": True,
        },
        {
            "name": "proom",
            "allow_subscribe_for_client": True,
            "allow_publish_for_client": True,
            "allow_history_for_client": True,
            "allow_presence_for_client": True,
            "presence": True,
            "join_leave": True,
            "history_size": 10,
            "history_ttl": "60s",
            "allow_recovery": True,
        },
        {"name": "closed"},
    ],
    websocket_message_size_limit=MESSAGE_LIMIT,
    client_channel_limit=16,
    ping_interval=4,  # pings (and pongs) happen all through the run
    pong_timeout=3,
)

CHANNELS = ["room:a", "room:b", "closed:x", "nope:x", "ctl:control", "plain", "$room:p", "room:" + "x" * 300, "room:☃"]
# Protobuf clients publish into their own namespace: publication data from a Protobuf client is opaque bytes,
# which JSON subscribers of the same channel cannot parse (see docs/security.md, "Mixed wire formats").
PB_CHANNELS = [channel.replace("room:", "proom:") for channel in CHANNELS]
WEIRD: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31,
    2**32,
    2**63,
    2**64 + 1,
    -(2**63) - 1,
    1e308,
    -0.0,
    0.5,
    "",
    " ",
    "x" * 5000,
    "\u0000",
    "☃",
    "\ud7ff",
    "room:a\nroom:b",
    "tenant:1:x",
    "*",
    "{",
    [],
    {},
    [1, [2, [3]]],
    {"a": {"b": {"c": None}}},
]


def valid_command(rng: random.Random, cid: int, channels: list[str] = CHANNELS) -> dict[str, Any]:
    channel = rng.choice(channels)
    method, body = rng.choice(
        [
            ("subscribe", {"channel": channel, "recover": True, "offset": 3, "epoch": "e", "join_leave": True}),
            ("subscribe", {"channel": channel, "recoverable": True, "positioned": True}),
            ("unsubscribe", {"channel": channel}),
            ("publish", {"channel": channel, "data": {"n": rng.randint(0, 9), "s": "x"}}),
            ("presence", {"channel": channel}),
            ("presence_stats", {"channel": channel}),
            ("history", {"channel": channel, "limit": rng.choice([-1, 0, 5, 10**6]), "reverse": True}),
            ("history", {"channel": channel, "limit": 1, "since": {"offset": 1, "epoch": "wrong"}}),
            ("refresh", {"token": rng.choice(["garbage", "eyJ.eyJ.x", "a.b.c"])}),
            ("sub_refresh", {"channel": channel, "token": "garbage"}),
            ("rpc", {"method": "m", "data": {"q": 1}}),
            ("send", {"data": {"q": 1}}),
            ("connect", {"token": "garbage", "data": {}, "name": "fuzz", "version": "0", "subs": {channel: {}}}),
            ("ping", {}),
        ]
    )
    return {"id": cid, method: body}


# ---- JSON --------------------------------------------------------------------------------------------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def mutate_structure(rng: random.Random, cmd: dict[str, Any], channels: list[str] = CHANNELS) -> dict[str, Any]:
    cmd = json.loads(json.dumps(cmd))
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _paths(cmd) if p]
        if not paths:
            break
        path = rng.choice(paths)
        parent, key = _get(cmd, path[:-1]), path[-1]
        choice = rng.randrange(7)
        if choice == 0:
            del parent[key]
        elif choice == 1:
            parent[key] = rng.choice(WEIRD)
        elif choice == 2:
            parent[rng.choice(["x", "ID", "channel", "data", "token", "", "__proto__"])] = rng.choice(WEIRD)
        elif choice == 3:
            methods = ["connect", "subscribe", "publish", "history", "presence", "refresh", "rpc", "send", "bogus"]
            cmd[rng.choice(methods)] = parent[key] if isinstance(parent[key], dict) else {}
        elif choice == 4:
            cmd["id"] = rng.choice([0, -5, 2**32, 1.5, "7", None, [], PROBE_ID - 1])
        elif choice == 5:
            depth = rng.choice([10, 200, 1500, 20000])
            parent[key] = _nested(depth)
        else:
            parent[key] = rng.choice(channels)
    return cmd


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(min(depth, 900)):
        value = [value]
    return value


def deep_json(rng: random.Random, cid: int) -> bytes:
    depth = rng.choice([50, 999, 1001, 5000, 30000])
    opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
    inner = b"1" if opener == b'{"a":' else b""
    field = rng.choice([b"data", b"channel"])
    return (
        b'{"id":%d,"publish":{"channel":"room:a","%s":' % (cid, field) + opener * depth + inner + closer * depth + b"}}"
    )


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            del buf[pos:]
        elif op == 2:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == 3:
            buf[pos:pos] = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00", b"\n", b'"', b"\\u0000"])
        else:
            buf = buf + buf[: rng.randint(0, len(buf))]
    return bytes(buf)


@dataclass
class Frame:
    payload: bytes
    text: bool  # send as a text frame (JSON connections only; may be invalid UTF-8 on purpose)
    pre_connect: bool
    kind: str  # generator that made it (for the report)


def json_frames(rng: random.Random, count: int) -> list[Frame]:
    frames: list[Frame] = []
    for index in range(count):
        cid = rng.randint(1, 10**6)
        pre = rng.random() < PRE_CONNECT_SHARE
        kind = rng.choices(
            ["structure", "bytes", "random", "multi", "deep", "semantic", "huge", "binary-json"],
            weights=[34, 24, 8, 10, 4, 14, 1, 5],
        )[0]
        text = True
        if kind == "structure":
            payload = json.dumps(mutate_structure(rng, valid_command(rng, cid))).encode()
        elif kind == "bytes":
            payload = mutate_bytes(rng, json.dumps(valid_command(rng, cid)).encode())
        elif kind == "random":
            payload = rng.randbytes(rng.randint(0, 200))
        elif kind == "multi":
            lines = [json.dumps(valid_command(rng, cid + i)) for i in range(rng.randint(2, 5))]
            lines.insert(rng.randrange(len(lines) + 1), rng.choice(["", "garbage", "{}", "[]", "null", " "]))
            payload = "\n".join(lines).encode()
        elif kind == "deep":
            payload = deep_json(rng, cid)
        elif kind == "semantic":
            payload = json.dumps(valid_command(rng, cid)).encode()
        elif kind == "huge":
            huge = json.dumps({"id": cid, "publish": {"channel": "room:a", "data": "x" * (MESSAGE_LIMIT + 10)}})
            payload = huge.encode()
        else:
            payload = json.dumps(valid_command(rng, cid)).encode()
            text = False
        frames.append(Frame(payload, text, pre, kind))
        del index
    return frames


# ---- Protobuf ----------------------------------------------------------------------------------------------


def _pb_field(number: int, wire: int, payload: bytes) -> bytes:
    return encode_varint((number << 3) | wire) + payload


def random_pb_fields(rng: random.Random, depth: int = 0) -> bytes:
    out = bytearray()
    for _ in range(rng.randint(1, 6)):
        number = rng.choice([1, 2, 3, 4, 5, 7, 10, 11, 14, 15, 16, 19, 99, 536870911])
        wire = rng.choice([0, 0, 1, 2, 2, 2, 3, 4, 5, 6, 7])
        if wire == 0:
            out += _pb_field(number, 0, encode_varint(rng.choice([0, 1, 2**32, 2**63, 2**64 - 1, 127, 128])))
        elif wire == 1:
            out += _pb_field(number, 1, rng.randbytes(8))
        elif wire == 2:
            inner = random_pb_fields(rng, depth + 1) if depth < 3 and rng.random() < 0.5 else rng.randbytes(9)
            length = len(inner) if rng.random() < 0.85 else rng.choice([len(inner) + 5, 2**31, 2**62])
            out += _pb_field(number, 2, encode_varint(length) + inner)
        elif wire == 5:
            out += _pb_field(number, 5, rng.randbytes(4))
        else:
            out += _pb_field(number, wire, b"")
    return bytes(out)


def pb_command(cmd: dict[str, Any]) -> bytes | None:
    try:
        return bytes(dict_to_message(cmd, Command()).SerializeToString())
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError):
        return None  # not expressible in Protobuf: that mutation is for JSON only


def pb_delimited(*messages: bytes) -> bytes:
    return b"".join(encode_varint(len(m)) + m for m in messages)


def protobuf_frames(rng: random.Random, count: int) -> list[Frame]:
    frames: list[Frame] = []
    while len(frames) < count:
        cid = rng.randint(1, 10**6)
        pre = rng.random() < PRE_CONNECT_SHARE
        kind = rng.choices(
            ["structure", "bytes", "fields", "random", "multi", "length", "semantic", "huge"],
            weights=[26, 26, 14, 8, 8, 8, 9, 1],
        )[0]
        if kind == "structure":
            message = pb_command(mutate_structure(rng, valid_command(rng, cid, PB_CHANNELS), PB_CHANNELS))
            if message is None:
                continue
            payload = pb_delimited(message)
        elif kind == "bytes":
            message = pb_command(valid_command(rng, cid, PB_CHANNELS))
            assert message is not None
            payload = mutate_bytes(rng, pb_delimited(message))
        elif kind == "fields":
            payload = pb_delimited(encode_varint(8) + encode_varint(cid)[:0] + random_pb_fields(rng))
        elif kind == "random":
            payload = rng.randbytes(rng.randint(0, 200))
        elif kind == "multi":
            parts = [pb_command(valid_command(rng, cid + i, PB_CHANNELS)) or b"" for i in range(rng.randint(2, 4))]
            parts.insert(rng.randrange(len(parts) + 1), rng.choice([b"", b"\x08", random_pb_fields(rng)]))
            payload = pb_delimited(*parts)
        elif kind == "length":
            message = pb_command(valid_command(rng, cid, PB_CHANNELS)) or b""
            prefix = rng.choice([encode_varint(len(message) + 1), b"\xff" * 11, encode_varint(2**40), b"\x80"])
            payload = prefix + message
        elif kind == "semantic":
            message = pb_command(valid_command(rng, cid, PB_CHANNELS))
            assert message is not None
            payload = pb_delimited(message)
        else:
            payload = pb_delimited(b"\x08\x01" + _pb_field(7, 2, encode_varint(MESSAGE_LIMIT + 10) + b"x" * 70000))
        frames.append(Frame(payload, False, pre, kind))
    return frames


# ---- running -----------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    frame: Frame
    kind: str  # "replies" | "close" | "bad"
    detail: str
    code: int = 0


def _probe(protocol: str) -> dict[str, Any]:
    return {"id": PROBE_ID, "unsubscribe": {"channel": "room:probe"}}


async def _send(client: RawClient, frame: Frame) -> None:
    if client.protocol == JSON and frame.text:
        await client.ws.send(frame.payload, text=True)
    else:
        await client.ws.send(frame.payload)


async def _collect(client: RawClient, until_probe: bool, timeout: float = 10.0) -> tuple[list[dict[str, Any]], int]:
    """Replies with an id until the probe's (or any, without a probe); the close code when closed (else 0)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    replies: list[dict[str, Any]] = []
    try:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return replies, -1
            raw = await asyncio.wait_for(client.ws.recv(), remaining)
            if raw in ("{}", b"\x00"):
                await client.pong()
                continue
            for reply in decode_frame(raw, client.protocol):
                if not reply.get("id"):
                    continue  # pushes
                if reply["id"] == PROBE_ID:
                    return replies, 0
                replies.append(reply)
                if not until_probe:
                    return replies, 0
    except ConnectionClosed as exc:
        return replies, int(exc.rcvd.code) if exc.rcvd is not None else -2
    except TimeoutError:
        return replies, -1


def judge(frame: Frame, replies: list[dict[str, Any]], close: int) -> Outcome:
    for reply in replies:
        error = reply.get("error")
        if error is not None and error.get("code") not in DOCUMENTED_ERRORS:
            return Outcome(frame, "bad", f"error reply {error}")
    if close > 0:
        if close not in DOCUMENTED_CLOSES:
            return Outcome(frame, "bad", f"close {close}", close)
        return Outcome(frame, "close", str(close), close)
    if close < 0:
        return Outcome(frame, "bad", "no answer" if close == -1 else "closed without a close frame")
    codes = sorted({r["error"]["code"] for r in replies if "error" in r})
    return Outcome(frame, "replies", ",".join(map(str, codes)) or "ok")


class Worker:
    def __init__(self, server: RunningServer, protocol: str, index: int) -> None:
        self.server = server
        self.protocol = protocol
        self.user = f"fuzz-{protocol}-{index}"
        self.client: RawClient | None = None
        self.reconnects = 0

    async def _connected(self) -> RawClient:
        if self.client is None:
            client = await RawClient.connect(self.server.ws_url, self.protocol)
            await client.send_command({"id": 1, "connect": {"token": self.server.token(self.user)}})
            replies, close = await _collect(client, until_probe=False)
            assert close == 0 and "connect" in replies[0], (replies, close)
            self.client = client
            self.reconnects += 1
        return self.client

    async def run(self, frames: list[Frame], outcomes: list[Outcome]) -> None:
        for frame in frames:
            if frame.pre_connect:
                client = await RawClient.connect(self.server.ws_url, self.protocol)
                try:
                    await _send(client, frame)
                    replies, close = await _collect(client, until_probe=False, timeout=5.0)
                    outcomes.append(judge(frame, replies, close))
                finally:
                    await client.close()
                continue
            client = await self._connected()
            try:
                await _send(client, frame)
                await client.send_command(_probe(self.protocol))
            except ConnectionClosed:
                pass
            replies, close = await _collect(client, until_probe=True)
            outcomes.append(judge(frame, replies, close))
            if close != 0:
                await client.close()
                self.client = None
        if self.client is not None:
            await self.client.close()


async def _control(server: RunningServer) -> RawClient:
    client = await RawClient.connect(server.ws_url, JSON, auto_pong=True)
    await client.send_command({"id": 1, "connect": {"token": server.token("control")}})
    await client.recv_replies()
    await client.send_command({"id": 2, "subscribe": {"channel": "ctl:control"}})
    [reply] = await client.recv_replies()
    assert "subscribe" in reply, reply
    return client


async def _publisher(server: RunningServer, stop: asyncio.Event) -> int:
    sent = 0
    while not stop.is_set():
        reply = await asyncio.to_thread(server.api, "publish", {"channel": "ctl:control", "data": {"n": sent}})
        assert "result" in reply, reply
        sent += 1
        await asyncio.sleep(0.02)
    return sent


async def _health(server: RunningServer, stop: asyncio.Event) -> list[int]:
    statuses: list[int] = []
    while not stop.is_set():
        statuses.append((await asyncio.to_thread(server.http, "GET", "/health", None, None, 5.0)).status)
        await asyncio.sleep(0.25)
    return statuses


async def _read_control(control: RawClient, received: list[int], done: Callable[[], bool]) -> None:
    """Read the control subscriber all along (answering the server's pings) until ``done()``."""
    while not done():
        with contextlib.suppress(TimeoutError):
            for reply in await control.recv_replies(timeout=0.5):
                pub = reply.get("push", {}).get("pub")
                if pub is not None:
                    received.append(pub["data"]["n"])


async def test_fuzzed_frames_get_documented_answers(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory("neoevents", OPTIONS)
    rng = random.Random(SEED)
    plans = {JSON: json_frames(rng, FRAMES_PER_PROTOCOL), PROTOBUF: protobuf_frames(rng, FRAMES_PER_PROTOCOL)}
    assert sum(len(frames) for frames in plans.values()) >= 10_000

    control = await _control(server)
    stop = asyncio.Event()
    publisher = asyncio.create_task(_publisher(server, stop))
    health = asyncio.create_task(_health(server, stop))
    received: list[int] = []
    sent = -1
    loop = asyncio.get_running_loop()
    deadline = [float("inf")]
    reader = asyncio.create_task(
        _read_control(control, received, lambda: len(received) >= sent >= 0 or loop.time() > deadline[0])
    )
    outcomes: list[Outcome] = []
    workers = [Worker(server, protocol, i) for protocol in plans for i in range(POOL_PER_PROTOCOL)]
    started = time.monotonic()
    try:
        await asyncio.gather(
            *(
                worker.run(plans[worker.protocol][i::POOL_PER_PROTOCOL], outcomes)
                for worker, i in zip(workers, [i for _ in plans for i in range(POOL_PER_PROTOCOL)], strict=True)
            )
        )
    finally:
        stop.set()
        sent = await publisher
        statuses = await health
    elapsed = time.monotonic() - started
    deadline[0] = loop.time() + 15
    await reader
    await control.close()

    summary = Counter((o.frame.kind, o.kind, o.detail) for o in outcomes)
    print(f"\n{len(outcomes)} frames in {elapsed:.1f}s (seed {SEED}); reconnects {sum(w.reconnects for w in workers)}")
    for (kind, how, detail), count in sorted(summary.items()):
        print(f"  {kind:12} {how:8} {detail:20} {count}")
    bad = [o for o in outcomes if o.kind == "bad"]
    assert bad == [], [(o.frame.kind, o.detail, o.frame.payload[:200]) for o in bad[:20]]
    assert len(outcomes) >= 10_000
    assert {o.kind for o in outcomes} == {"replies", "close"}
    assert received == list(range(sent)), f"control subscriber got {len(received)} of {sent}"
    assert sent > 0 and statuses and all(status == 200 for status in statuses)
    assert server.alive() and server.http("GET", "/health").status == 200
    log = server.log_text()
    assert "Traceback" not in log and "Exception" not in log, log[-3000:]
