"""Rate limits and quotas against a real neoevents process.

Budgets are checked by counting: the requests a server admits over a measured stretch of time must be within
10% of what the configured budget allows over that stretch (its burst plus its rate times the time). Clients
send in lockstep (a frame, then its replies, then the next frame), so the server sees each frame at the time
the test recorded for it, however loaded the machine is.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.rawclient import RawClient
from tests.support.servers import RunningServer, ServerOptions

pytestmark = pytest.mark.asyncio

Factory = Callable[..., RunningServer]

NAMESPACES: list[dict[str, Any]] = [
    {"name": "room", "allow_subscribe_for_client": True, "allow_publish_for_client": True},
    {"name": "tenant", "allow_subscribe_for_client": True, "history_size": 100, "history_ttl": "300s"},
    {"name": "admin", "allow_subscribe_for_client": True},
]
ALL_OFF: dict[str, Any] = {
    "enable_rate_limit": True,
    "client_command_rate_limit": 0,
    "client_user_command_rate_limit": 0,
    "client_rejected_command_limit": 0,
    "client_ip_connection_rate_limit": 0,
    "api_tenant_publish_rate_limit": 0,
}
TOLERANCE = 0.10


def options(**limits: Any) -> ServerOptions:
    """Rate limiting on, with only the given limits set (everything else off)."""
    return ServerOptions(namespaces=NAMESPACES, extra={**ALL_OFF, **limits})


def within(accepted: int, low: float, high: float) -> bool:
    """``accepted`` within TOLERANCE of the budget of a window known to lie between ``low`` and ``high``."""
    return low * (1 - TOLERANCE) <= accepted <= high * (1 + TOLERANCE)


def metric(server: RunningServer, name: str, labels: str) -> float:
    text = server.http("GET", "/metrics").body.decode()
    match = re.search(rf"^{name}\{{{re.escape(labels)}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def connected(server: RunningServer, user: str, **claims: Any) -> RawClient:
    client = await RawClient.connect(server.ws_url, auto_pong=True)
    await client.send_command({"id": 1, "connect": {"token": server.token(user, **claims)}})
    [reply] = await client.recv_replies()
    assert "connect" in reply, reply
    return client


@dataclass
class Flood:
    """What a lockstep flood of publish commands got back."""

    started: float = 0.0
    last_sent: float = 0.0  # seconds after ``started``
    finished: float = 0.0
    frames: list[tuple[float, int]] = field(default_factory=list)  # (sent at, admitted in that frame)
    refused: int = 0

    @property
    def admitted(self) -> int:
        return sum(n for _, n in self.frames)

    def admitted_since(self, offset: float) -> int:
        return sum(n for at, n in self.frames if at >= offset)


async def flood(client: RawClient, seconds: float, per_frame: int = 4, pause: float = 0.005) -> Flood:
    """Publish commands, ``per_frame`` per frame, for ``seconds``; every reply must be a result or 111."""
    loop = asyncio.get_running_loop()
    result = Flood(started=loop.time())
    next_id = 100
    while (at := loop.time() - result.started) < seconds:
        commands = [
            {"id": next_id + n, "publish": {"channel": "room:flood", "data": {"n": next_id + n}}}
            for n in range(per_frame)
        ]
        next_id += per_frame
        await client.send_commands(commands)
        replies = await client.recv_n(per_frame, timeout=10)
        admitted = 0
        for reply in replies:
            if "error" in reply:
                assert reply["error"] == {"code": 111, "message": "too many requests", "temporary": True}
                result.refused += 1
            else:
                assert "publish" in reply, reply
                admitted += 1
        result.frames.append((at, admitted))
        result.last_sent = at
        await asyncio.sleep(pause)
    result.finished = loop.time() - result.started
    return result


# ---- commands -------------------------------------------------------------------------------------------------


async def test_connection_command_rate_within_10_percent(server_factory: Factory) -> None:
    rate = 50
    server = server_factory("neoevents", options(client_command_rate_limit=f"{rate}/1s"))
    client = await connected(server, "alice")
    try:
        got = await flood(client, seconds=3.0)
    finally:
        await client.close()
    # Over the whole flood: the burst (one period's budget) plus the rate over the time elapsed.
    assert within(got.admitted, rate + rate * got.last_sent, rate + rate * got.finished), got.admitted
    # Once the burst is spent: the rate alone.
    steady = got.admitted_since(1.0)
    assert within(steady, rate * (got.last_sent - 1.0), rate * (got.finished - 1.0)), steady
    assert got.refused > got.admitted, "the flood offered several times the budget"


async def test_user_command_rate_is_shared_by_the_user_connections(server_factory: Factory) -> None:
    rate = 40
    server = server_factory("neoevents", options(client_user_command_rate_limit=f"{rate}/1s"))
    alice_1, alice_2, bob = [await connected(server, user) for user in ("alice", "alice", "bob")]
    try:
        alice_a, alice_b, bob_got = await asyncio.gather(flood(alice_1, 3.0), flood(alice_2, 3.0), flood(bob, 3.0))
    finally:
        for client in (alice_1, alice_2, bob):
            await client.close()
    alice = alice_a.admitted + alice_b.admitted
    low = min(alice_a.last_sent, alice_b.last_sent)
    high = max(alice_a.finished, alice_b.finished)
    assert within(alice, rate + rate * low, rate + rate * high), alice
    assert alice_a.admitted > 0 and alice_b.admitted > 0
    # Bob has a budget of his own: Alice's flooding takes nothing from it.
    assert within(bob_got.admitted, rate + rate * bob_got.last_sent, rate + rate * bob_got.finished)


async def test_flooding_connection_gets_111_then_3013(server_factory: Factory) -> None:
    server = server_factory(
        "neoevents", options(client_command_rate_limit="5/60s", client_rejected_command_limit="10/60s")
    )
    client = await connected(server, "alice")
    commands = [{"id": n, "publish": {"channel": "room:x", "data": {"n": n}}} for n in range(2, 32)]
    await client.send_commands(commands)
    code, reason = await client.wait_close()
    assert (code, reason) == (3013, "too many requests")
    replies = [r for frame in client.frames_after_close for r in json_replies(frame)]
    assert [("publish" in r) for r in replies[:5]] == [True] * 5
    assert [r.get("error", {}).get("code") for r in replies[5:]] == [111] * 10
    assert [r["id"] for r in replies] == list(range(2, 17))
    assert metric(server, "rate_limited_total", 'kind="connection_command"') == 11
    assert metric(server, "client_disconnects_total", 'code="3013"') == 1
    # The next connection of the same user starts with a full budget of its own.
    again = await connected(server, "alice")
    await again.send_command({"id": 2, "publish": {"channel": "room:x", "data": {}}})
    [reply] = await again.recv_replies()
    assert "publish" in reply
    await again.close()


def json_replies(frame: str | bytes) -> list[dict[str, Any]]:
    text = frame.decode() if isinstance(frame, bytes) else frame
    return [json.loads(line) for line in text.splitlines() if line.strip() and line.strip() != "{}"]


async def test_nothing_is_limited_when_rate_limiting_is_off(server_factory: Factory) -> None:
    server = server_factory("neoevents", ServerOptions(namespaces=NAMESPACES))
    client = await connected(server, "alice")
    commands = [{"id": n, "publish": {"channel": "room:x", "data": {"n": n}}} for n in range(2, 402)]
    await client.send_commands(commands)
    replies = await client.recv_n(400, timeout=10)
    assert all("publish" in reply for reply in replies)
    await client.close()
    assert metric(server, "rate_limited_total", 'kind="connection_command"') == 0


async def connect_refused(server: RunningServer, user: str) -> tuple[int | None, str]:
    client = await RawClient.connect(server.ws_url)
    await client.send_command({"id": 1, "connect": {"token": server.token(user)}})
    return await client.wait_close()


async def test_connection_limits_close_with_3504(server_factory: Factory) -> None:
    # Quotas of their own: they hold whether rate limiting is on or not.
    limits = {"client_user_connection_limit": 2, "client_connection_limit": 3}
    server = server_factory("neoevents", ServerOptions(namespaces=NAMESPACES, extra=limits))
    first, second = await connected(server, "alice"), await connected(server, "alice")
    assert await connect_refused(server, "alice") == (3504, "connection limit"), "the user's limit"
    bob = await connected(server, "bob")
    assert await connect_refused(server, "carol") == (3504, "connection limit"), "the node's limit"
    await first.close()
    deadline = time.monotonic() + 5
    while True:  # the server frees the slot once it has seen the close
        again = await RawClient.connect(server.ws_url)
        await again.send_command({"id": 1, "connect": {"token": server.token("alice")}})
        try:
            [reply] = await again.recv_replies()
            break
        except ConnectionClosed:
            assert time.monotonic() < deadline, "the closed connection's slot was never freed"
            await asyncio.sleep(0.1)
    assert "connect" in reply
    for client in (second, bob, again):
        await client.close()


# ---- connection attempts ----------------------------------------------------------------------------------------


async def test_connection_attempts_per_address_get_429(server_factory: Factory) -> None:
    server = server_factory("neoevents", options(client_ip_connection_rate_limit="3/30s"))
    clients = [await RawClient.connect(server.ws_url) for _ in range(3)]
    with pytest.raises(InvalidStatus) as refused:
        await RawClient.connect(server.ws_url)
    response = refused.value.response
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "10"
    assert server.http("GET", "/health").status == 200, "plain HTTP requests are not connection attempts"
    assert metric(server, "rate_limited_total", 'kind="connection_attempt"') == 1
    # The connections that were admitted work normally.
    await clients[0].send_command({"id": 1, "connect": {"token": server.token("alice")}})
    [reply] = await clients[0].recv_replies()
    assert "connect" in reply
    for client in clients:
        await client.close()


async def test_behind_a_trusted_proxy_each_forwarded_address_has_its_own_budget(server_factory: Factory) -> None:
    server = server_factory(
        "neoevents",
        options(client_ip_connection_rate_limit="2/30s", client_trusted_proxies=["127.0.0.0/8", "::1"]),
    )
    opened = []
    for client_ip in ("203.0.113.7", "198.51.100.9"):
        for _ in range(2):
            forwarded = {"X-Forwarded-For": f"{client_ip}, 127.0.0.1"}
            opened.append(await RawClient.connect(server.ws_url, extra_headers=forwarded))
        with pytest.raises(InvalidStatus) as refused:
            await RawClient.connect(server.ws_url, extra_headers={"X-Forwarded-For": client_ip})
        assert refused.value.response.status_code == 429
    # Without a forwarded address the proxy itself is the client, with a budget of its own.
    opened.append(await RawClient.connect(server.ws_url))
    for client in opened:
        await client.close()


async def test_forwarded_addresses_from_an_untrusted_peer_are_ignored(server_factory: Factory) -> None:
    server = server_factory(
        "neoevents", options(client_ip_connection_rate_limit="2/30s", client_trusted_proxies=["10.0.0.0/8"])
    )
    opened = [
        await RawClient.connect(server.ws_url, extra_headers={"X-Forwarded-For": f"203.0.113.{k}"}) for k in (1, 2)
    ]
    with pytest.raises(InvalidStatus):  # every attempt counts against the real peer, 127.0.0.1
        await RawClient.connect(server.ws_url, extra_headers={"X-Forwarded-For": "203.0.113.3"})
    for client in opened:
        await client.close()


async def test_connection_attempt_rate_within_10_percent(server_factory: Factory) -> None:
    rate = 20
    server = server_factory("neoevents", options(client_ip_connection_rate_limit=f"{rate}/1s"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    admitted = refused = 0
    last = 0.0
    while (last := loop.time() - started) < 3.0:
        try:
            client = await RawClient.connect(server.ws_url)
        except InvalidStatus as exc:
            assert exc.response.status_code == 429
            refused += 1
        else:
            admitted += 1
            await client.close()
    finished = loop.time() - started
    assert within(admitted, rate + rate * last, rate + rate * finished), admitted
    assert refused > 0


# ---- server API publications ------------------------------------------------------------------------------------


def publish(server: RunningServer, channel: str, n: int = 0) -> tuple[int, dict[str, str], bytes]:
    resp = server.api_raw("publish", json.dumps({"channel": channel, "data": {"n": n}}).encode())
    return resp.status, resp.headers, resp.body


async def test_tenant_publish_quota_gets_429_with_retry_after(server_factory: Factory) -> None:
    server = server_factory("neoevents", options(api_tenant_publish_rate_limit="5/10s"))
    for n in range(5):
        assert publish(server, "tenant:1:deployments", n)[0] == 200
    status, headers, body = publish(server, "tenant:1:deployments", 5)
    assert status == 429
    assert 1 <= int(headers["Retry-After"]) <= 2
    assert json.loads(body) == {"error": {"code": 111, "message": "too many requests"}}
    # Nothing was published past the quota.
    history = server.api("history", {"channel": "tenant:1:deployments", "limit": -1})
    assert [p["data"]["n"] for p in history["result"]["publications"]] == [0, 1, 2, 3, 4]
    # Other tenants and the platform's own channels are not affected.
    assert publish(server, "tenant:2:deployments")[0] == 200
    assert publish(server, "admin:alerts")[0] == 200
    # Broadcasts and batches are counted per channel and refused as a whole.
    body = json.dumps({"channels": ["tenant:2:a", "tenant:1:a"], "data": {}}).encode()
    assert server.api_raw("broadcast", body).status == 429
    batch = {"commands": [{"publish": {"channel": "tenant:2:b", "data": {}}}] * 5}
    assert server.api_raw("batch", json.dumps(batch).encode()).status == 429, "tenant 2 has 4 left, not 5"
    batch = {"commands": [{"publish": {"channel": "tenant:2:b", "data": {}}}] * 4}
    assert server.api_raw("batch", json.dumps(batch).encode()).status == 200
    assert metric(server, "rate_limited_total", 'kind="api_publish"') == 3


async def test_tenant_publish_rate_within_10_percent(server_factory: Factory) -> None:
    rate = 50
    server = server_factory("neoevents", options(api_tenant_publish_rate_limit=f"{rate}/1s"))

    def run() -> tuple[int, float, float]:
        started = time.monotonic()
        admitted = 0
        last = 0.0
        while (last := time.monotonic() - started) < 3.0:
            status = publish(server, "tenant:7:metrics")[0]
            assert status in (200, 429)
            admitted += status == 200
        return admitted, last, time.monotonic() - started

    admitted, last, finished = await asyncio.to_thread(run)
    assert within(admitted, rate + rate * last, rate + rate * finished), admitted


async def test_a_limited_tenant_does_not_affect_another(server_factory: Factory) -> None:
    rate = 20
    server = server_factory("neoevents", options(api_tenant_publish_rate_limit=f"{rate}/1s"))
    subscriber = await connected(server, "bob", tenant_id="2")
    await subscriber.send_command({"id": 2, "subscribe": {"channel": "tenant:2:events"}})
    [reply] = await subscriber.recv_replies()
    assert "subscribe" in reply
    stop = threading.Event()
    flooded = {"admitted": 0, "refused": 0}

    def flood_tenant_1() -> None:
        while not stop.is_set():
            status = publish(server, "tenant:1:events")[0]
            flooded["admitted" if status == 200 else "refused"] += 1

    def publish_tenant_2() -> list[int]:
        statuses = []
        for n in range(30):  # 10 a second: half of the tenant's budget
            statuses.append(publish(server, "tenant:2:events", n)[0])
            time.sleep(0.1)
        return statuses

    floods = [threading.Thread(target=flood_tenant_1) for _ in range(3)]
    started = time.monotonic()
    for thread in floods:
        thread.start()
    try:
        statuses = await asyncio.to_thread(publish_tenant_2)
    finally:
        stop.set()
        for thread in floods:
            thread.join()
    elapsed = time.monotonic() - started
    assert statuses == [200] * 30, "every publication of tenant 2 was accepted"
    received: list[int] = []
    while len(received) < 30:
        for reply in await subscriber.recv_replies(timeout=5):
            pub = reply.get("push", {}).get("pub")
            if pub is not None:
                received.append(pub["data"]["n"])
    assert received == list(range(30)), "and delivered, once and in order"
    await subscriber.close()
    # Tenant 1 was held to its own budget meanwhile.
    assert flooded["refused"] > flooded["admitted"]
    assert flooded["admitted"] <= (rate + rate * elapsed) * (1 + TOLERANCE)
