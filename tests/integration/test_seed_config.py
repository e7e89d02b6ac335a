"""The seed's own configuration file, loaded as it is, with the seed's environment variables on top (its
Redis engine pointed at a real redis-server with ``REDIS_HOST`` / ``REDIS_PORT``): the built-in tenant
channels keep history and recover missed events after a reconnect."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.rawclient import RawClient
from tests.support.redisserver import RedisServer
from tests.support.servers import HOST, RunningServer, ServerOptions, _wait_healthy, free_port

SEED_CONFIG = Path(__file__).resolve().parents[2] / "config" / "centrifugo.json"
SECRET = "seed-secret-from-the-environment-0123456789"
API_KEY = "seed-api-key-from-the-environment"


@pytest.fixture
def seed_server(tmp_path: Path, redis_server: RedisServer) -> Iterator[RunningServer]:
    port = free_port()
    log_path = tmp_path / "seed.log"
    env = {
        **os.environ,
        "CENTRIFUGO_SECRET": SECRET,
        "CENTRIFUGO_TOKEN": API_KEY,
        "REDIS_HOST": HOST,
        "REDIS_PORT": str(redis_server.port),
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "neoevents",
        "serve",
        "--config",
        str(SEED_CONFIG),
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    server = RunningServer(
        "neoevents", ServerOptions(secret=SECRET, api_key=API_KEY), port, process, log_path, SEED_CONFIG
    )
    try:
        _wait_healthy(server, 15)
        yield server
    finally:
        server.stop(signal.SIGTERM)


async def _subscribe(server: RunningServer, **recover: object) -> tuple[RawClient, dict[str, object]]:
    client = await RawClient.connect(server.ws_url, origin="http://localhost:3000", auto_pong=True)
    token = server.token("alice", tenant_id="123")
    await client.send_commands(
        [
            {"id": 1, "connect": {"token": token}},
            {"id": 2, "subscribe": {"channel": "tenant:123:deployments", **recover}},
        ]
    )
    replies = await client.recv_n(2)
    assert "connect" in replies[0], replies
    return client, replies[1]


async def test_seed_config_serves_tenant_channels_with_recovery(seed_server: RunningServer) -> None:
    first, reply = await _subscribe(seed_server)
    result = reply["subscribe"]
    assert isinstance(result, dict) and result["recoverable"] is True
    epoch = result["epoch"]
    await first.close()

    for n in range(3):  # published while the portal is away
        body = {"channel": "tenant:123:deployments", "data": {"type": "deployment_progress", "n": n}}
        assert "result" in seed_server.api("publish", body)

    second, reply = await _subscribe(seed_server, recover=True, epoch=epoch, offset=0)
    result = reply["subscribe"]
    assert isinstance(result, dict)
    assert result["recovered"] is True
    assert [p["data"]["n"] for p in result["publications"]] == [0, 1, 2]
    await second.close()

    # The seed's allowed origin is enforced; the seed's Redis engine is the one running.
    with pytest.raises(Exception, match="403"):
        await RawClient.connect(seed_server.ws_url, origin="https://elsewhere.example.com")
    assert f"Redis engine: redis://{HOST}:" in seed_server.log_text()
    assert "(engine: redis)" in seed_server.log_text()
