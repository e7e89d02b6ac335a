"""On the Redis engine the tenants' HTTP API publish quota and the per-address connection attempts hold for the
whole cluster: two nodes sharing a Redis spend one budget per tenant (per address), whichever node the requests
reach."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from websockets.exceptions import InvalidStatus

from neoevents.api.executor import Executor
from neoevents.api.http import ApiEndpoint
from neoevents.config import Config, NamespaceOptions, RateLimit
from neoevents.engines.redis_address import parse_address
from neoevents.engines.redis_broker import RedisBroker
from neoevents.transport.http import HttpRequest, HttpResponse
from tests.integration.test_ratelimit import options
from tests.support.rawclient import RawClient
from tests.support.redisnodes import redis_nodes
from tests.support.redisserver import RedisServer
from tests.support.servers import RunningServer

API_KEY = "quota-test-api-key"
QUOTA = 3  # publications per tenant per minute


@pytest.fixture
async def endpoints(redis_server: RedisServer) -> AsyncIterator[tuple[ApiEndpoint, ApiEndpoint]]:
    off = RateLimit(0)
    config = Config(
        api_key=API_KEY,
        namespaces=(NamespaceOptions(name="tenant", history_size=10, history_ttl=60),),
        engine="redis",
        redis_address=(redis_server.address,),
        redis_prefix=f"q{uuid.uuid4().hex[:8]}",
        enable_rate_limit=True,
        client_command_rate_limit=off,
        client_user_command_rate_limit=off,
        client_rejected_command_limit=off,
        client_ip_connection_rate_limit=off,
        api_tenant_publish_rate_limit=RateLimit(QUOTA, 60.0),
    )
    async with redis_nodes(config) as (a, b):
        yield ApiEndpoint(config, Executor(a)), ApiEndpoint(config, Executor(b))


async def call(endpoint: ApiEndpoint, method: str, params: object) -> HttpResponse:
    body = json.dumps(params).encode()
    return await endpoint.handle(HttpRequest("POST", f"/api/{method}", "", {"x-api-key": API_KEY}, body))


async def publish(endpoint: ApiEndpoint, channel: str) -> int:
    return (await call(endpoint, "publish", {"channel": channel, "data": {}})).status


async def test_a_tenants_quota_is_shared_by_every_node(endpoints: tuple[ApiEndpoint, ApiEndpoint]) -> None:
    a, b = endpoints
    assert [await publish(a, "tenant:1:x"), await publish(b, "tenant:1:x"), await publish(a, "tenant:1:y")] == [200] * 3
    refused = await call(b, "publish", {"channel": "tenant:1:x", "data": {}})
    assert refused.status == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 21  # one publication every 20 s
    assert await publish(a, "tenant:1:x") == 429
    # Nothing past the quota was published, and other tenants have their own budget.
    history = await call(a, "history", {"channel": "tenant:1:x", "limit": -1})
    assert len(json.loads(history.body)["result"]["publications"]) == 2
    assert await publish(b, "tenant:2:x") == 200
    metrics = a._executor.node.metrics
    assert metrics.registry.get_sample_value("rate_limited_total", {"kind": "api_publish"}) == 1


async def test_a_batch_over_one_tenants_quota_counts_nothing(endpoints: tuple[ApiEndpoint, ApiEndpoint]) -> None:
    a, b = endpoints
    for _ in range(QUOTA):
        assert await publish(a, "tenant:1:x") == 200
    mixed = {"commands": [{"publish": {"channel": "tenant:2:x", "data": {}}}] * 2}
    mixed["commands"].append({"publish": {"channel": "tenant:1:x", "data": {}}})
    assert (await call(b, "batch", mixed)).status == 429
    # Tenant 2 still has its whole budget, on either node.
    assert [await publish(b, "tenant:2:x") for _ in range(QUOTA)] == [200] * QUOTA
    assert await publish(a, "tenant:2:x") == 429


async def test_connection_attempts_of_an_address_count_on_every_node(
    redis_server: RedisServer, server_factory: Callable[..., RunningServer]
) -> None:
    opts = options(
        client_ip_connection_rate_limit="3/30s",
        engine="redis",
        redis_address=[redis_server.address],
        redis_prefix=f"a{uuid.uuid4().hex[:8]}",
    )
    a, b = server_factory("neoevents", opts), server_factory("neoevents", opts)
    opened = [await RawClient.connect(a.ws_url), await RawClient.connect(b.ws_url), await RawClient.connect(a.ws_url)]
    for node in (b, a):
        with pytest.raises(InvalidStatus) as refused:
            await RawClient.connect(node.ws_url)
        assert refused.value.response.status_code == 429
        assert refused.value.response.headers["Retry-After"] == "10"
    # An admitted connection is a working session, whichever node counted it.
    await opened[1].send_command({"id": 1, "connect": {"token": b.token("alice")}})
    [reply] = await opened[1].recv_replies()
    assert "connect" in reply
    for client in opened:
        await client.close()


async def test_budgets_follow_the_configured_rate(redis_server: RedisServer) -> None:
    broker = RedisBroker([parse_address(redis_server.address)], prefix=f"r{uuid.uuid4().hex[:8]}")
    await broker.start(_NoEvents())
    try:
        # 5 per second: the whole budget at once, then one every 200 ms.
        assert [await broker.spend("t", {"k": 1}, 0.2, 1.0) for _ in range(5)] == [0.0] * 5
        wait = await broker.spend("t", {"k": 1}, 0.2, 1.0)
        assert 0.0 < wait <= 0.2
        assert await broker.spend("t", {"k": 6}, 0.2, 1.0) > 0, "more than the budget is never admitted"
        assert await broker.spend("t", {"other": 5}, 0.2, 1.0) == 0.0
    finally:
        await broker.close()


async def test_an_unreachable_redis_lifts_the_limit(redis_server: RedisServer) -> None:
    broker = RedisBroker([parse_address(redis_server.address)], prefix=f"r{uuid.uuid4().hex[:8]}")
    await broker.start(_NoEvents())
    try:
        assert await broker.spend("t", {"k": 1}, 60.0, 60.0) == 0.0
        assert await broker.spend("t", {"k": 1}, 60.0, 60.0) > 0
        redis_server.kill()
        assert await broker.spend("t", {"k": 1}, 60.0, 60.0) == 0.0
    finally:
        redis_server.start()
        await broker.close()


class _NoEvents:
    def handle_publication(self, *args: object) -> None: ...

    def handle_join(self, *args: object) -> None: ...

    def handle_leave(self, *args: object) -> None: ...

    def handle_control(self, *args: object) -> None: ...

    def handle_insufficient_state(self, *args: object) -> None: ...
