"""``neoevents serve --workers N``: several worker processes on one port, sharing a real redis-server.

Seen from outside, a server of several workers must behave as one server: a client on any worker gets every
publication of its channels and sees every worker's presence, ``/metrics`` counts every worker whichever one
answers, a worker that dies is replaced while the others keep serving, and SIGTERM stops all of them
gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.sdk_helpers import api, eventually, publish, sdk_client, unique
from tests.support.rawclient import RawClient
from tests.support.redisserver import RedisServer
from tests.support.servers import HOST, RunningServer, ServerOptions

WORKERS = 2
CLIENTS = 16  # connections spread over the workers by the kernel (all on one worker: 2 in 65,536)


def _options(redis_server: RedisServer, **extra: Any) -> ServerOptions:
    return ServerOptions(
        secret="workers-secret-0123456789abcdef0123",
        api_key="workers-api-key",
        namespaces=[
            {
                "name": "room",
                "allow_subscribe_for_client": True,
                "presence": True,
                "allow_presence_for_subscriber": True,
            }
        ],
        workers=WORKERS,
        extra={
            "engine": "redis",
            "redis_address": [redis_server.address],
            "redis_prefix": unique("wk"),
            "prometheus": True,
            **extra,
        },
    )


@pytest.fixture
def server(redis_server: RedisServer, server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory("neoevents", _options(redis_server))


def worker_pids(server: RunningServer) -> list[int]:
    pid = server.process.pid
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return sorted(int(p) for p in text.split())


async def connect(server: RunningServer, user: str) -> RawClient:
    client = await RawClient.connect(server.ws_url, auto_pong=True)
    await client.send_command({"id": 1, "connect": {"token": server.token(user)}})
    [reply] = await client.recv_replies()
    assert "connect" in reply, reply
    return client


async def subscribe(client: RawClient, channel: str) -> None:
    await client.send_command({"id": 2, "subscribe": {"channel": channel}})
    [reply] = await client.recv_replies()
    assert "subscribe" in reply, reply


async def clients_per_node(server: RunningServer) -> list[int]:
    nodes = (await api(server, "info", {}))["nodes"]
    return sorted(node["num_clients"] for node in nodes)


def scrape(server: RunningServer) -> dict[str, float]:
    resp = server.http("GET", "/metrics")
    assert resp.status == 200
    values = {}
    for line in resp.body.decode().splitlines():
        match = re.fullmatch(r"(server_workers|active_connections|active_subscriptions) (\S+)", line)
        if match:
            values[match.group(1)] = float(match.group(2))
    return values


async def test_the_supervisor_forks_the_workers_and_announces_the_port_once(server: RunningServer) -> None:
    pids = worker_pids(server)
    assert len(pids) == WORKERS
    await eventually(lambda: _log_has(server, "listening on"), "the announcement")
    announcements = [line for line in server.log_text().splitlines() if "listening on" in line]
    assert announcements == [f"neoevents listening on {HOST}:{server.port} (engine: redis, {WORKERS} workers)"]
    for index, pid in enumerate(pids, 1):
        assert f"worker {index} ready (pid {pid})" in server.log_text()


async def _log_has(server: RunningServer, text: str) -> bool:
    return text in server.log_text()


async def test_publications_and_presence_reach_clients_on_every_worker(server: RunningServer) -> None:
    channel = unique("room:all-")
    clients = [await connect(server, f"user{i}") for i in range(CLIENTS)]
    try:
        for client in clients:
            await subscribe(client, channel)

        async def spread() -> bool:
            # Whichever worker answers counts its own clients and the others' last announcement (sent every
            # few seconds); every connection on one worker would be a 2 in 65,536 chance.
            counts = await clients_per_node(server)
            return len(counts) == WORKERS and sum(counts) == CLIENTS and min(counts) > 0

        await eventually(spread, "every worker's clients in the info API, spread over the workers")

        presence = await api(server, "presence", {"channel": channel})
        assert len(presence["presence"]) == CLIENTS
        for n in range(3):
            await publish(server, channel, {"n": n})
        for client in clients:
            pushes = await client.recv_n(3)
            assert [p["push"]["pub"]["data"] for p in pushes] == [{"n": 0}, {"n": 1}, {"n": 2}]
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_the_official_sdk_sees_one_server(server: RunningServer) -> None:
    """SDK clients, whichever workers they land on, all get a publication and see each other's presence."""
    channel = unique("room:sdk-")
    users = [f"sdk{i}" for i in range(6)]
    async with contextlib.AsyncExitStack() as stack:
        subs = []
        for user in users:
            c = await stack.enter_async_context(sdk_client(server.ws_url, False, token=server.token(user)))
            await c.client.connect()
            await c.client.ready()
            subs.append(c.subscribe_to(channel))
        for sub, _ in subs:
            await sub.subscribe()
            await sub.ready()
        await publish(server, channel, {"hello": "everyone"})
        for _, received in subs:
            [ctx] = await received.wait("publication")
            assert ctx.pub.data == {"hello": "everyone"}
        presence = await subs[0][0].presence()
        assert sorted(info.user for info in presence.clients.values()) == users


async def test_metrics_add_up_every_worker_whichever_answers(server: RunningServer) -> None:
    channel = unique("room:metrics-")
    clients = [await connect(server, f"user{i}") for i in range(CLIENTS)]
    try:
        for client in clients[:5]:
            await subscribe(client, channel)
        for _ in range(8):  # each scrape is a new connection, answered by either worker
            assert scrape(server) == {
                "server_workers": WORKERS,
                "active_connections": CLIENTS,
                "active_subscriptions": 5,
            }
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_a_killed_worker_is_replaced_and_the_others_keep_serving(server: RunningServer) -> None:
    channel = unique("room:survive-")
    clients = [await connect(server, f"user{i}") for i in range(CLIENTS)]
    for client in clients:
        await subscribe(client, channel)
    victim = worker_pids(server)[0]
    os.kill(victim, signal.SIGKILL)
    try:
        # The victim's clients lose their connection; the others stay and keep receiving.
        closed = await asyncio.gather(*(_closed_within(c, 3.0) for c in clients))
        assert 0 < sum(closed) < CLIENTS
        await publish(server, channel, {"after": "kill"})
        for client, lost in zip(clients, closed, strict=True):
            if not lost:
                [push] = await client.recv_n(1)
                assert push["push"]["pub"]["data"] == {"after": "kill"}

        await eventually(_replaced(server, victim), "a new worker in the killed one's place", timeout=15)
        assert "worker 1 was killed by SIGKILL; restarting it in" in server.log_text()
        assert server.alive()
        await eventually(_scrape_counts(server, WORKERS), "metrics from both workers again", timeout=15)
        fresh = [await connect(server, f"new{i}") for i in range(CLIENTS)]
        await asyncio.gather(*(c.close() for c in fresh))
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def _closed_within(client: RawClient, timeout: float) -> bool:
    try:
        await client.wait_close(timeout)
    except TimeoutError:
        return False
    return True


def _replaced(server: RunningServer, victim: int) -> Callable[[], Any]:
    async def check() -> bool:
        pids = worker_pids(server)
        return len(pids) == WORKERS and victim not in pids and "worker 1 ready" in server.log_text()[-2000:]

    return check


def _scrape_counts(server: RunningServer, workers: int) -> Callable[[], Any]:
    async def check() -> bool:
        return all(scrape(server)["server_workers"] == workers for _ in range(4))

    return check


async def test_sigterm_stops_every_worker_gracefully(server: RunningServer) -> None:
    clients = [await connect(server, f"user{i}") for i in range(CLIENTS)]
    pids = worker_pids(server)
    server.process.send_signal(signal.SIGTERM)
    closes = await asyncio.gather(*(c.wait_close(10) for c in clients))
    assert closes == [(3001, "shutdown")] * CLIENTS
    assert await asyncio.to_thread(server.process.wait, 20) == 0
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert "Traceback" not in server.log_text()


def _serve(config: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "neoevents", "serve", "--config", str(config), "--host", HOST, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def test_more_than_one_worker_needs_the_redis_engine(tmp_path: Path) -> None:
    config = tmp_path / "memory.json"
    config.write_text('{"token_hmac_secret_key": "memory-secret-0123456789abcdef0123", "engine": "memory"}')
    started = time.monotonic()
    done = _serve(config, "--port", "0", "--workers", "2")
    assert done.returncode == 1
    assert "--workers 2 needs the Redis engine (engine: redis)" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("value", ["0", "-1", "many", "2000"])
def test_a_bad_worker_count_is_a_usage_error(tmp_path: Path, value: str) -> None:
    done = _serve(tmp_path / "unused.json", "--workers", value)
    assert done.returncode == 2
    assert "--workers" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_port_taken_by_another_program_fails_the_start(redis_server: RedisServer, tmp_path: Path) -> None:
    config = tmp_path / "redis.json"
    options = _options(redis_server)
    config.write_text(
        json.dumps({"token_hmac_secret_key": options.secret, "engine": "redis", "redis_address": redis_server.address})
    )
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve(config, "--port", str(port), "--workers", "2")
    assert done.returncode == 1
    assert f"cannot listen on {HOST}:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_second_server_on_the_same_port_fails_instead_of_joining_it(
    server: RunningServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    config = tmp_path / "second.json"
    config.write_text(server.config_path.read_text())
    for workers in ("2", "1"):
        done = _serve(config, "--port", str(server.port), "--workers", workers)
        assert done.returncode == 1
        assert f"cannot listen on {HOST}:{server.port}: [Errno 98] Address already in use" in done.stderr
        assert "Traceback" not in done.stderr
    assert len(worker_pids(server)) == WORKERS
    assert server.http("GET", "/health").status == 200
