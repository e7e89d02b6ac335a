"""Process-level behaviour: graceful shutdown, origin checks, health and metrics endpoints."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from collections.abc import Callable

import pytest
from websockets.exceptions import InvalidStatus

from neoevents.configfile import dev_config
from neoevents.exceptions import ListenError
from neoevents.server import LISTENERS, Server
from tests.support.rawclient import RawClient
from tests.support.servers import RunningServer, ServerOptions

OPTIONS = ServerOptions(
    namespaces=[{"name": "room", "allow_subscribe_for_client": True}],
    allowed_origins=["https://portal.example.com", "https://*.tenants.example.com"],
)


@pytest.fixture
def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory("neoevents", OPTIONS)


async def _connect(server: RunningServer, origin: str | None = None) -> RawClient:
    client = await RawClient.connect(server.ws_url, origin=origin, auto_pong=True)
    await client.send_command({"id": 1, "connect": {"token": server.token("alice")}})
    [reply] = await client.recv_replies()
    assert "connect" in reply
    return client


async def test_sigterm_closes_clients_with_3001_and_exits_cleanly(server: RunningServer) -> None:
    clients = [await _connect(server) for _ in range(3)]
    server.process.send_signal(signal.SIGTERM)
    codes = await asyncio.gather(*(c.wait_close(10) for c in clients))
    assert [code for code, _ in codes] == [3001, 3001, 3001]
    assert [reason for _, reason in codes] == ["shutdown"] * 3
    assert await asyncio.to_thread(server.process.wait, 15) == 0
    assert "Traceback" not in server.log_text()


@pytest.mark.parametrize(
    "origin", ["https://portal.example.com", "https://acme.tenants.example.com", "HTTPS://PORTAL.EXAMPLE.COM"]
)
async def test_allowed_origins_connect(server: RunningServer, origin: str) -> None:
    client = await _connect(server, origin)
    await client.close()


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example.com", "https://portal.example.com.evil.net", "null", "https://tenants.example.com"],
)
async def test_other_origins_get_403(server: RunningServer, origin: str) -> None:
    for _ in range(3):
        with pytest.raises(InvalidStatus) as err:
            await RawClient.connect(server.ws_url, origin=origin)
        assert err.value.response.status_code == 403


async def test_no_origin_header_is_a_non_browser_client(server: RunningServer) -> None:
    client = await _connect(server, origin=None)
    await client.close()


def test_health_and_metrics(server: RunningServer) -> None:
    health = server.http("GET", "/health")
    assert (health.status, health.json()) == (200, {})
    server.api("publish", {"channel": "room:1", "data": {"x": 1}})
    metrics = server.http("GET", "/metrics").body.decode()
    assert 'events_published_total{namespace="room"} 1.0' in metrics
    assert "active_connections" in metrics
    assert "event_publish_duration_seconds_bucket" in metrics


def test_unknown_path_is_404_and_plain_get_on_websocket_path_is_400(server: RunningServer) -> None:
    assert server.http("GET", "/nope").status == 404
    assert server.http("GET", "/connection/websocket").status == 400


def test_deeply_nested_api_body_is_a_bad_request_not_a_crash(server: RunningServer) -> None:
    deep = b'{"channel": "room:1", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for method in ("publish", "batch", ""):
        response = server.api_raw(method, deep)
        assert response.status == 400, (method, response.status)
        assert response.json() == {"error": {"code": 107, "message": "bad request"}}
    assert "Traceback" not in server.log_text()
    assert server.http("GET", "/health").status == 200


async def test_without_allowed_origins_only_same_origin_browsers_connect(
    server_factory: Callable[..., RunningServer],
) -> None:
    plain = server_factory(
        "neoevents", ServerOptions(namespaces=[{"name": "room", "allow_subscribe_for_client": True}])
    )
    client = await _connect(plain, origin=f"http://{plain.host}:{plain.port}")
    await client.close()
    with pytest.raises(InvalidStatus) as err:
        await RawClient.connect(plain.ws_url, origin="http://elsewhere.example.com")
    assert err.value.response.status_code == 403


def test_batch_keeps_payload_bytes_exactly(server_factory: Callable[..., RunningServer]) -> None:
    hist = server_factory(
        "neoevents",
        ServerOptions(namespaces=[{"name": "room", "history_size": 10, "history_ttl": "60s"}]),
    )
    payload = b'{"price": 1.50, "name": "caf\\u00e9", "big": 12345678901234567890}'
    body = b'{"commands": [{"publish": {"channel": "room:exact", "data": ' + payload + b"}}]}"
    reply = hist.api_raw("batch", body)
    assert reply.status == 200 and "publish" in reply.json()["replies"][0]
    history = hist.api_raw("history", b'{"channel": "room:exact", "limit": -1}')
    assert payload in history.body


def test_oversized_request_head_is_refused(server: RunningServer) -> None:
    import socket

    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        for _ in range(20):
            sock.sendall(b"a" * 8192)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert server.http("GET", "/health").status == 200


def _listening_sockets(port: int) -> int:
    """Listening TCP sockets on 127.0.0.1:``port`` (from /proc/net/tcp)."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        return sum(1 for line in table if line.split()[1:4:2] == [local, "0A"])


def test_the_server_listens_with_several_sockets_on_its_port(server: RunningServer) -> None:
    """One listening socket per LISTENERS, sharing the port, so that a loop iteration accepts up to that many
    connections (libuv takes one per socket per iteration)."""
    assert _listening_sockets(server.port) == LISTENERS > 1


def test_a_second_server_on_the_same_port_fails_instead_of_sharing_it(server: RunningServer) -> None:
    command = [
        sys.executable, "-m", "neoevents", "serve", "--config", str(server.config_path),
        "--host", server.host, "--port", str(server.port),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert f"cannot listen on {server.host}:{server.port}: [Errno 98] Address already in use" in done.stderr
    assert "Traceback" not in done.stderr
    assert _listening_sockets(server.port) == LISTENERS
    assert server.http("GET", "/health").status == 200


async def test_a_server_that_cannot_listen_says_so_and_releases_its_engine() -> None:
    """Server.start on a port another program holds: a ListenError naming the address and the cause (the CLI
    prints it as one line), no listening socket left behind."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        server = Server(dev_config())
        with pytest.raises(ListenError) as failed:
            await server.start("127.0.0.1", port)
        assert str(failed.value) == f"cannot listen on 127.0.0.1:{port}: [Errno 98] Address already in use"
        assert isinstance(failed.value.error, OSError)
        assert _listening_sockets(port) == 1  # only the other program's
    finally:
        taken.close()
