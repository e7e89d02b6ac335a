"""Pipelined HTTP/1.1 requests against a real neoevents process: every request gets its own answer, in order,
whatever arrives in one read; a client that pipelines without reading its answers is paused, not queued for
without bound, and loses nothing."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable

import httpx
import pytest

from tests.support.redisserver import RedisServer
from tests.support.servers import HOST, RunningServer, ServerOptions

pytestmark = pytest.mark.asyncio

OPTIONS = ServerOptions(namespaces=[{"name": "room", "history_size": 200_000, "history_ttl": "300s"}])


@pytest.fixture
def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory("neoevents", OPTIONS)


def _request(server: RunningServer, path: str, body: bytes, close: bool = False) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nX-API-Key: {server.api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    )
    return (head + ("Connection: close\r\n" if close else "") + "\r\n").encode() + body


async def _read_responses(reader: asyncio.StreamReader, count: int) -> list[tuple[int, bytes]]:
    out = []
    for _ in range(count):
        status_line = await reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        out.append((status, await reader.readexactly(length)))
    return out


def _publish(server: RunningServer, n: int) -> bytes:
    return _request(server, "/api/publish", json.dumps({"channel": "room:p", "data": {"n": n}}).encode())


async def test_pipelined_requests_in_one_write_are_answered_in_order(server: RunningServer) -> None:
    reader, writer = await asyncio.open_connection(HOST, server.port)
    requests = [_publish(server, n) for n in range(1000)]  # far more than MAX_HEAD in one write
    requests.insert(50, _request(server, "/api/publish", b"{not json"))
    requests.insert(100, _request(server, "/api/nosuch", b"{}"))
    requests.append(_request(server, "/api/info", b"{}", close=True))
    writer.write(b"".join(requests))
    answers = await asyncio.wait_for(_read_responses(reader, len(requests)), 20)
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed after the Connection: close request
    writer.close()
    statuses = [status for status, _ in answers]
    assert statuses[50] == 400 and statuses[100] == 404
    assert statuses.count(200) == len(requests) - 2
    offsets = [json.loads(body)["result"]["offset"] for status, body in answers[:-1] if status == 200]
    assert offsets == list(range(1, 1001))  # one publication each, in the order sent
    assert "nodes" in json.loads(answers[-1][1])["result"]


async def test_a_client_that_does_not_read_its_answers_is_paused_and_loses_nothing(server: RunningServer) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # little room for answers on this side
    sock.connect((HOST, server.port))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    count = 100_000  # answers of about 100 bytes each: far more than the socket buffers hold
    writer.write(b"".join(_publish(server, n) for n in range(count)))
    async with httpx.AsyncClient(headers={"X-API-Key": server.api_key}) as client:
        # The server stops reading once its answers back up: the publications stop short of the end. Other
        # callers are served meanwhile.
        made, settled = 0, 0
        while settled < 4:
            await asyncio.sleep(0.25)
            history = (await client.post(f"{server.api_url}/history", json={"channel": "room:p"})).json()
            settled = settled + 1 if history["result"]["offset"] == made else 0
            made = history["result"]["offset"]
        assert 0 < made < count
    answers = await asyncio.wait_for(_read_responses(reader, count), 60)
    await asyncio.wait_for(writer.drain(), 10)
    writer.close()
    offsets = [json.loads(body)["result"]["offset"] for _, body in answers]
    assert offsets == list(range(1, count + 1))


async def test_pipelined_requests_whose_handlers_wait_are_answered_in_order(
    redis_server: RedisServer, server_factory: Callable[..., RunningServer]
) -> None:
    # On the Redis engine every publication waits for Redis: the requests queue behind it (reading pauses at
    # MAX_PIPELINED of them) and are answered by a task, still one after another.
    options = ServerOptions(
        namespaces=OPTIONS.namespaces,
        extra={"engine": "redis", "redis_address": [redis_server.address], "redis_prefix": "pipelining"},
    )
    server = server_factory("neoevents", options)
    reader, writer = await asyncio.open_connection(HOST, server.port)
    requests = [_publish(server, n) for n in range(5000)]  # about 1 MB: many reads, paused and resumed
    requests.insert(250, _request(server, "/api/publish", b"{not json"))
    writer.write(b"".join(requests))
    answers = await asyncio.wait_for(_read_responses(reader, len(requests)), 30)
    writer.close()
    assert answers[250][0] == 400
    offsets = [json.loads(body)["result"]["offset"] for status, body in answers if status == 200]
    assert offsets == list(range(1, 5001))
