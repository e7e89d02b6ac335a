"""Hostile and broken clients against a real neoevents process, with a control subscriber watching.

Every case must end with its documented close code or error, and meanwhile a well-behaved subscriber on
the same server must receive every publication exactly once, in order.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from tests.support.rawclient import RawClient
from tests.support.servers import RunningServer, ServerOptions

pytestmark = pytest.mark.asyncio

QUEUE_MAX = 256 * 1024
STALE_DELAY = 2
OPTIONS = ServerOptions(
    namespaces=[
        {"name": "ctl", "allow_subscribe_for_client": True, "history_size": 1000, "history_ttl": "300s"},
        {"name": "flood", "allow_subscribe_for_client": True},
        {"name": "room", "allow_subscribe_for_client": True},
    ],
    client_queue_max_size=QUEUE_MAX,
    client_stale_close_delay=STALE_DELAY,
    websocket_message_size_limit=65536,
)


@pytest.fixture
def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory("neoevents", OPTIONS)


async def connected(server: RunningServer, protocol: str = "json", user: str = "u") -> RawClient:
    client = await RawClient.connect(server.ws_url, protocol, auto_pong=True)
    await client.send_command({"id": 1, "connect": {"token": server.token(user)}})
    [reply] = await client.recv_replies()
    assert "connect" in reply, reply
    return client


@dataclass
class Control:
    """A subscriber that must see every publication of a background publisher."""

    client: RawClient
    received: list[int]

    async def drain(self, expected: int, timeout: float = 15.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.received) < expected and loop.time() < deadline:
            with contextlib.suppress(TimeoutError):
                for reply in await self.client.recv_replies(timeout=0.5):
                    pub = reply.get("push", {}).get("pub")
                    if pub is not None:
                        self.received.append(pub["data"]["n"])


@contextlib.asynccontextmanager
async def control_subscriber(server: RunningServer) -> AsyncIterator[Control]:
    client = await connected(server, user="control")
    await client.send_command({"id": 2, "subscribe": {"channel": "ctl:control"}})
    [reply] = await client.recv_replies()
    assert "subscribe" in reply, reply
    control = Control(client, [])
    try:
        yield control
    finally:
        await client.close()


async def publish_background(server: RunningServer, count: int, stop: asyncio.Event) -> int:
    sent = 0
    for n in range(count):
        if stop.is_set():
            break
        reply = await asyncio.to_thread(server.api, "publish", {"channel": "ctl:control", "data": {"n": n}})
        assert "result" in reply, reply
        sent += 1
        await asyncio.sleep(0.01)
    return sent


# ---- the table ----------------------------------------------------------------------------------------


async def _expect_close(client: RawClient, code: int, timeout: float = 5.0) -> None:
    got, _ = await client.wait_close(timeout)
    assert got == code


async def garbage_before_connect(server: RunningServer) -> None:
    client = await RawClient.connect(server.ws_url)
    await client.send_frame("this is not json")
    await _expect_close(client, 3501)


async def json_array(server: RunningServer) -> None:
    client = await RawClient.connect(server.ws_url)
    await client.send_frame('[{"id": 1, "connect": {}}]')
    await _expect_close(client, 3501)


async def command_before_connect(server: RunningServer) -> None:
    client = await RawClient.connect(server.ws_url)
    await client.send_command({"id": 1, "subscribe": {"channel": "room:a"}})
    await _expect_close(client, 3501)


async def second_connect(server: RunningServer) -> None:
    client = await connected(server)
    await client.send_command({"id": 2, "connect": {"token": server.token("u")}})
    await _expect_close(client, 3501)


async def command_without_id(server: RunningServer) -> None:
    client = await connected(server)
    await client.send_command({"subscribe": {"channel": "room:a"}})
    await _expect_close(client, 3501)


async def truncated_json(server: RunningServer) -> None:
    client = await connected(server)
    await client.send_frame('{"id": 2, "subscribe": {"channel": "room:a"')
    await _expect_close(client, 3501)


async def empty_channel(server: RunningServer) -> None:
    client = await connected(server)
    await client.send_command({"id": 2, "subscribe": {"channel": ""}})
    await _expect_close(client, 3501)


async def channel_too_long(server: RunningServer) -> None:
    client = await connected(server)
    await client.send_command({"id": 2, "subscribe": {"channel": "room:" + "x" * 300}})
    [reply] = await client.recv_replies()
    assert reply["error"]["code"] == 107
    await client.close()


async def duplicate_subscribe(server: RunningServer) -> None:
    client = await connected(server)
    await client.send_command({"id": 2, "subscribe": {"channel": "room:dup"}})
    await client.recv_replies()
    await client.send_command({"id": 3, "subscribe": {"channel": "room:dup"}})
    [reply] = await client.recv_replies()
    assert reply["id"] == 3 and reply["error"]["code"] == 105
    await client.close()


async def oversized_frame(server: RunningServer) -> None:
    client = await connected(server)
    await client.send_frame('{"id": 2, "publish": {"channel": "room:a", "data": "' + "x" * 70000 + '"}}')
    await _expect_close(client, 1009)


async def protobuf_garbage(server: RunningServer) -> None:
    client = await RawClient.connect(server.ws_url, "protobuf")
    await client.send_frame(b"\x7f\x01\x02")
    await _expect_close(client, 3501)


async def never_connecting(server: RunningServer) -> None:
    client = await RawClient.connect(server.ws_url)
    await _expect_close(client, 3502, timeout=STALE_DELAY + 5)


async def non_reading_client(server: RunningServer) -> None:
    """A client that stops reading is cut off with 3008 once its queue is over the limit."""
    sock = await asyncio.to_thread(_raw_ws_subscriber, server, "flood:big")
    try:
        payload = "y" * 30000
        for _ in range(400):
            reply = await asyncio.to_thread(server.api, "publish", {"channel": "flood:big", "data": payload})
            assert "result" in reply
            if await asyncio.to_thread(_slow_disconnects, server) >= 1:
                break
        assert await asyncio.to_thread(_slow_disconnects, server) >= 1
        code = await asyncio.to_thread(_read_until_close, sock)
        assert code == 3008
    finally:
        sock.close()


CASES: dict[str, Callable[[RunningServer], Awaitable[None]]] = {
    "garbage before connect": garbage_before_connect,
    "JSON array": json_array,
    "command before connect": command_before_connect,
    "second connect": second_connect,
    "command without id": command_without_id,
    "truncated JSON": truncated_json,
    "empty channel": empty_channel,
    "channel over 255": channel_too_long,
    "duplicate subscribe": duplicate_subscribe,
    "oversized frame": oversized_frame,
    "protobuf garbage": protobuf_garbage,
    "never-connecting socket": never_connecting,
    "non-reading client": non_reading_client,
}


async def test_adversarial_table_with_control_subscriber(server: RunningServer) -> None:
    async with control_subscriber(server) as control:
        stop = asyncio.Event()
        publisher = asyncio.create_task(publish_background(server, 10_000, stop))
        failures: dict[str, str] = {}
        for name, case in CASES.items():
            try:
                await asyncio.wait_for(case(server), 30)
            except (AssertionError, TimeoutError, OSError) as exc:
                failures[name] = repr(exc)
        stop.set()
        sent = await publisher
        await control.drain(sent)
    assert failures == {}
    assert control.received == list(range(sent))
    assert server.alive()
    assert server.http("GET", "/health").status == 200
    assert "Traceback" not in server.log_text()


# ---- raw socket helpers (a client that can stop reading) -----------------------------------------------


def _raw_ws_subscriber(server: RunningServer, channel: str) -> socket.socket:
    sock = socket.create_connection((server.host, server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /connection/websocket HTTP/1.1\r\n"
            f"Host: {server.host}:{server.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101")
    commands = (
        f'{{"id":1,"connect":{{"token":"{server.token("slow")}"}}}}\n{{"id":2,"subscribe":{{"channel":"{channel}"}}}}'
    )
    sock.sendall(_masked_text_frame(commands.encode()))
    frames = 0
    buf = b""
    while frames < 2:  # connect reply and subscribe reply (maybe in one frame)
        buf += sock.recv(65536)
        frames = buf.count(b'"id":')
    return sock


def _masked_text_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _read_until_close(sock: socket.socket) -> int | None:
    sock.settimeout(10)
    buf = bytearray()
    pos = 0
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return None
        buf += chunk
        while True:
            if len(buf) - pos < 2:
                break
            op = buf[pos] & 0x0F
            n = buf[pos + 1] & 0x7F
            hdr = 2
            if n == 126:
                if len(buf) - pos < 4:
                    break
                n = struct.unpack_from("!H", buf, pos + 2)[0]
                hdr = 4
            elif n == 127:
                if len(buf) - pos < 10:
                    break
                n = struct.unpack_from("!Q", buf, pos + 2)[0]
                hdr = 10
            if len(buf) - pos < hdr + n:
                break
            if op == 0x8:
                code: int = struct.unpack_from("!H", buf, pos + hdr)[0]
                return code
            pos += hdr + n


def _slow_disconnects(server: RunningServer) -> float:
    text = server.http("GET", "/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith('client_disconnects_total{code="3008"}'):
            return float(line.split()[-1])
    return 0.0
