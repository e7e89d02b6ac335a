"""Rate limits with an injected clock: GCRA budgets, bounded memory, the command/connection/publish limits and
their configuration keys."""

from __future__ import annotations

import jwt
import msgspec
import pytest

from neoevents.client import Client
from neoevents.config import Config, NamespaceOptions, RateLimit
from neoevents.configfile import ConfigError, load_config
from neoevents.engines.memory import MemoryBroker, MemoryPresenceManager
from neoevents.exceptions import DisconnectError, ProtocolError
from neoevents.metrics import Metrics
from neoevents.node import Node
from neoevents.protocol import codes
from neoevents.ratelimit import (
    Budget,
    ClientLimiter,
    KeyedLimiter,
    RateLimits,
    address_key,
    retry_after_header,
    tenant_of_channel,
)
from tests.support.memory import MemoryTransport, settle

SECRET = "unit-test-secret-0123456789abcdef0123"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def limited(metrics: Metrics, kind: str) -> float:
    value = metrics.registry.get_sample_value("rate_limited_total", {"kind": kind})
    return value or 0.0


def limits(clock: FakeClock, metrics: Metrics | None = None, **keys: RateLimit) -> RateLimits:
    """Every limit off except the ones given."""
    off = RateLimit(0)
    config = Config(
        enable_rate_limit=True,
        client_command_rate_limit=keys.get("command", off),
        client_user_command_rate_limit=keys.get("user", off),
        client_rejected_command_limit=keys.get("rejected", off),
        client_ip_connection_rate_limit=keys.get("address", off),
        api_tenant_publish_rate_limit=keys.get("tenant", off),
    )
    return RateLimits(config, metrics or Metrics(), clock=clock)


# ---- budgets ----------------------------------------------------------------------------------------------


def test_budget_resolution() -> None:
    config = Config(rate_limit_window=30.0, rate_limit_max_requests=7)
    unset = Budget.of(None, config)
    assert unset is not None and (unset.count, unset.period) == (7, 30.0)
    bare = Budget.of(RateLimit(5), config)
    assert bare is not None and (bare.count, bare.period) == (5, 30.0)
    own = Budget.of(RateLimit(20, 1.0), config)
    assert own is not None and (own.count, own.period, own.interval) == (20, 1.0, 0.05)
    assert Budget.of(RateLimit(0, 1.0), config) is None
    assert Budget.of(None, Config(rate_limit_max_requests=0)) is None
    with pytest.raises(ValueError):
        Budget(0, 1.0)


def test_a_fresh_key_may_spend_its_budget_at_once_then_waits_one_interval() -> None:
    clock = FakeClock()
    limiter = KeyedLimiter(Budget(10, 1.0), clock=clock)
    assert [limiter.acquire("k") for _ in range(10)] == [0.0] * 10
    assert limiter.acquire("k") == pytest.approx(0.1)
    clock.advance(0.05)
    assert limiter.acquire("k") == pytest.approx(0.05)
    clock.advance(0.05)
    assert limiter.acquire("k") == 0.0
    assert limiter.acquire("k") == pytest.approx(0.1)


@pytest.mark.parametrize(("count", "period", "offered_per_second"), [(10, 1.0, 1000), (100, 60.0, 50), (3, 0.5, 7)])
def test_sustained_rate_is_exactly_the_budget(count: int, period: float, offered_per_second: int) -> None:
    clock = FakeClock()
    limiter = KeyedLimiter(Budget(count, period), clock=clock)
    seconds = 120.0
    step = 1.0 / offered_per_second
    admitted = 0
    for _ in range(int(seconds * offered_per_second)):
        admitted += limiter.acquire("k") == 0.0
        clock.advance(step)
    expected = count + seconds * count / period  # the burst, then count per period
    assert abs(admitted - expected) <= 1


def test_refused_requests_cost_nothing() -> None:
    clock = FakeClock()
    limiter = KeyedLimiter(Budget(2, 1.0), clock=clock)
    limiter.acquire("k")
    limiter.acquire("k")
    for _ in range(1000):
        assert limiter.acquire("k") > 0
    clock.advance(0.5)
    assert limiter.acquire("k") == 0.0


def test_keys_are_independent() -> None:
    clock = FakeClock()
    limiter = KeyedLimiter(Budget(1, 10.0), clock=clock)
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    assert limiter.acquire("b") == 0.0


def test_cost_and_wait() -> None:
    clock = FakeClock()
    limiter = KeyedLimiter(Budget(10, 1.0), clock=clock)
    assert limiter.wait("k", 10) == 0.0
    assert limiter.acquire("k", 6) == 0.0
    assert limiter.wait("k", 5) == pytest.approx(0.1)
    assert limiter.wait("k", 5) == pytest.approx(0.1), "wait() counts nothing"
    assert limiter.acquire("k", 5) == pytest.approx(0.1)
    assert limiter.acquire("k", 4) == 0.0
    clock.advance(3600)
    assert limiter.acquire("k", 11) > 0, "more than the whole budget is never admitted"
    assert limiter.acquire("k", 10) == 0.0


def test_idle_keys_are_dropped_as_new_keys_arrive() -> None:
    clock = FakeClock()
    limiter = KeyedLimiter(Budget(5, 1.0), clock=clock)
    for n in range(1000):
        limiter.acquire(f"old-{n}")
    assert len(limiter) == 1000
    clock.advance(1.0)  # every old key's budget is full again
    for n in range(500):
        limiter.acquire(f"new-{n}")
    assert len(limiter) == 500


def test_a_live_key_is_kept_while_idle_ones_go() -> None:
    clock = FakeClock()
    limiter = KeyedLimiter(Budget(1, 10.0), clock=clock)
    limiter.acquire("busy")
    for n in range(10):
        limiter.acquire(f"idle-{n}")
        clock.advance(20.0)
        limiter.acquire("busy")
    assert limiter.acquire("busy") > 0, "the busy key kept its state"
    assert len(limiter) <= 3


def test_hard_cap_on_keys() -> None:
    clock = FakeClock()
    limiter = KeyedLimiter(Budget(1, 3600.0), clock=clock, max_keys=100)
    for n in range(1000):
        assert limiter.acquire(f"k{n}") == 0.0
    assert len(limiter) <= 100
    assert limiter.acquire("k999") > 0, "recent keys are kept"


# ---- commands ---------------------------------------------------------------------------------------------


def test_connection_budget_then_111_then_3013() -> None:
    clock = FakeClock()
    metrics = Metrics()
    rl = limits(clock, metrics, command=RateLimit(5, 10.0), rejected=RateLimit(3, 10.0))
    client = rl.client()
    assert client is not None
    for _ in range(5):
        client.check("alice")
    for _ in range(3):
        with pytest.raises(ProtocolError) as refused:
            client.check("alice")
        assert refused.value.code == 111 and refused.value.error.temporary
    with pytest.raises(DisconnectError) as closed:
        client.check("alice")
    assert closed.value.disconnect == codes.DISCONNECT_TOO_MANY_REQUESTS
    assert limited(metrics, "connection_command") == 4


def test_refusals_are_forgiven_at_the_budget_rate() -> None:
    clock = FakeClock()
    rl = limits(clock, command=RateLimit(1, 1.0), rejected=RateLimit(1, 1.0))
    client = rl.client()
    assert client is not None
    # Twice the budget, for a long time: one refusal per second, which the refusal budget absorbs.
    for _ in range(100):
        client.check("u")
        clock.advance(0.5)
        with pytest.raises(ProtocolError):
            client.check("u")
        clock.advance(0.5)
    # Three times the budget is not absorbed: two refusals per second.
    with pytest.raises(DisconnectError):
        for _ in range(100):
            client.check("u")
            clock.advance(0.3)
            for _ in range(2):
                with pytest.raises(ProtocolError):
                    client.check("u")
                clock.advance(0.3)
            clock.advance(0.1)


def test_no_disconnect_when_the_refusal_limit_is_off() -> None:
    clock = FakeClock()
    rl = limits(clock, command=RateLimit(1, 1.0))
    client = rl.client()
    assert client is not None
    client.check("u")
    for _ in range(10_000):
        with pytest.raises(ProtocolError):
            client.check("u")


def test_user_budget_is_shared_by_the_user_connections_only() -> None:
    clock = FakeClock()
    metrics = Metrics()
    rl = limits(clock, metrics, user=RateLimit(4, 10.0))
    first, second, other = rl.client(), rl.client(), rl.client()
    assert first is not None and second is not None and other is not None
    first.check("alice")
    first.check("alice")
    second.check("alice")
    second.check("alice")
    with pytest.raises(ProtocolError):
        first.check("alice")
    with pytest.raises(ProtocolError):
        second.check("alice")
    for _ in range(4):
        other.check("bob")
    for _ in range(100):
        first.check("")  # anonymous connections have no user budget
    assert limited(metrics, "user_command") == 2


def test_a_user_refusal_does_not_use_the_connection_budget() -> None:
    clock = FakeClock()
    rl = limits(clock, command=RateLimit(2, 10.0), user=RateLimit(1, 10.0))
    client = rl.client()
    assert client is not None
    client.check("alice")
    with pytest.raises(ProtocolError):
        client.check("alice")  # user over budget
    client.check("")  # the connection still has one command left
    with pytest.raises(ProtocolError):
        client.check("")


def test_no_client_limiter_without_command_limits() -> None:
    rl = limits(FakeClock(), address=RateLimit(1), tenant=RateLimit(1))
    assert rl.client() is None
    assert isinstance(limits(FakeClock(), user=RateLimit(1)).client(), ClientLimiter)


# ---- connection attempts and publications -------------------------------------------------------------------


def test_address_keys() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key("") == "" and address_key("not:an:address") == "not:an:address"


def test_connection_attempts_per_address() -> None:
    clock = FakeClock()
    metrics = Metrics()
    rl = limits(clock, metrics, address=RateLimit(3, 30.0))
    assert [rl.admit_connection("192.0.2.1") for _ in range(3)] == [0.0] * 3
    assert rl.admit_connection("192.0.2.1") == pytest.approx(10.0)
    assert rl.admit_connection("192.0.2.2") == 0.0
    assert rl.admit_connection("2001:db8::1") == 0.0
    assert limited(metrics, "connection_attempt") == 1
    assert limits(clock).admit_connection("192.0.2.1") == 0.0


def test_tenant_of_channel() -> None:
    assert tenant_of_channel("tenant:123:deployments") == "123"
    assert tenant_of_channel("$tenant:7:secret") == "7"
    assert tenant_of_channel("tenant:123") == "123"
    assert tenant_of_channel("tenant::x") is None
    assert tenant_of_channel("admin:alerts") is None
    assert tenant_of_channel("tenants:1:x") is None
    assert tenant_of_channel("news") is None


def test_publications_per_tenant() -> None:
    clock = FakeClock()
    metrics = Metrics()
    rl = limits(clock, metrics, tenant=RateLimit(3, 3.0))
    assert rl.admit_publish(["tenant:1:a", "tenant:1:b"]) == 0.0
    assert rl.admit_publish(["tenant:1:a"]) == 0.0
    assert rl.admit_publish(["tenant:1:a"]) == pytest.approx(1.0)
    assert rl.admit_publish(["tenant:2:a"]) == 0.0, "another tenant is not affected"
    assert rl.admit_publish(["admin:alerts", "system:health"] * 100) == 0.0, "only tenant channels count"
    # All or nothing: tenant 2 has room, tenant 1 has not, so nothing is counted.
    assert rl.admit_publish(["tenant:2:a", "tenant:1:a"]) > 0
    assert rl.admit_publish(["tenant:2:a", "tenant:2:b"]) == 0.0
    # A caller's own tenant (a call made with a user's token) counts whatever the channels.
    assert rl.admit_publish(["admin:alerts"], tenant="9") == 0.0
    assert rl.admit_publish(["admin:alerts", "system:x"], tenant="9") == 0.0
    assert rl.admit_publish(["admin:alerts"], tenant="9") > 0
    assert limited(metrics, "api_publish") == 3


def test_retry_after_header() -> None:
    assert retry_after_header(0.001) == "1"
    assert retry_after_header(1.0) == "1"
    assert retry_after_header(1.2) == "2"
    assert retry_after_header(59.5) == "60"


# ---- configuration ----------------------------------------------------------------------------------------


def test_seed_variables() -> None:
    config = load_config(
        None, env={"ENABLE_RATE_LIMIT": "true", "RATE_LIMIT_WINDOW": "30", "RATE_LIMIT_MAX_REQUESTS": "50"}
    )
    assert config.enable_rate_limit and config.rate_limit_window == 30.0 and config.rate_limit_max_requests == 50
    rl = RateLimits(config, Metrics())
    for budget in (rl.command, rl.rejected, *(k.budget for k in (rl.users, rl.addresses, rl.tenants) if k)):
        assert budget is not None and (budget.count, budget.period) == (50, 30.0)
    assert rl.users is not None and rl.addresses is not None and rl.tenants is not None


def test_rate_limiting_is_off_by_default() -> None:
    config = load_config(None, env={})
    assert not config.enable_rate_limit
    assert (config.rate_limit_window, config.rate_limit_max_requests) == (60.0, 100)
    node = Node(config, MemoryBroker(), MemoryPresenceManager())
    assert node.limits is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (20, RateLimit(20)),
        ("20", RateLimit(20)),
        (0, RateLimit(0)),
        ("20/1s", RateLimit(20, 1.0)),
        ("5/s", RateLimit(5, 1.0)),
        ("1000/1m", RateLimit(1000, 60.0)),
        ("10 / 2h", RateLimit(10, 7200.0)),
        ("3/0.5", RateLimit(3, 0.5)),
        ("7/500ms", RateLimit(7, 0.5)),
    ],
)
def test_rate_syntax(raw: object, expected: RateLimit) -> None:
    config = load_config(None, env={"NEOEVENTS_CLIENT_COMMAND_RATE_LIMIT": str(raw)})
    assert config.client_command_rate_limit == expected


@pytest.mark.parametrize("raw", ["abc", "-1", "5/0s", "5/xyz", "5/", "1.5/s", "/s", "5/-1s"])
def test_bad_rates(raw: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(None, env={"NEOEVENTS_API_TENANT_PUBLISH_RATE_LIMIT": raw})
    [problem] = error.value.problems
    assert problem.key == "api_tenant_publish_rate_limit"
    assert problem.source == "environment variable NEOEVENTS_API_TENANT_PUBLISH_RATE_LIMIT"


def test_rate_limit_window_must_be_positive() -> None:
    with pytest.raises(ConfigError) as error:
        load_config(None, env={"RATE_LIMIT_WINDOW": "0"})
    assert [p.key for p in error.value.problems] == ["rate_limit_window"]


# ---- the session ------------------------------------------------------------------------------------------


async def test_session_answers_111_then_closes_with_3013() -> None:
    room = NamespaceOptions(name="room", allow_subscribe_for_client=True)
    config = Config(
        token_hmac_secret_key=SECRET,
        namespaces=(room,),
        enable_rate_limit=True,
        client_command_rate_limit=RateLimit(3, 60.0),
        client_rejected_command_limit=RateLimit(2, 60.0),
        client_user_command_rate_limit=RateLimit(0),
    )
    node = Node(config, MemoryBroker(), MemoryPresenceManager())
    await node.broker.start(node)
    transport = MemoryTransport()
    client = Client(node, transport)
    token = jwt.encode({"sub": "alice"}, SECRET)
    lines = [f'{{"id":1,"connect":{{"token":"{token}"}}}}']
    lines += [f'{{"id":{n},"subscribe":{{"channel":"room:{n}"}}}}' for n in range(2, 9)]
    client.on_message("\n".join(lines).encode())
    await settle()
    replies = [msgspec.json.decode(frame) for frame in transport.sent]
    assert "connect" in replies[0], "connect is not counted"
    assert all("subscribe" in reply for reply in replies[1:4])
    errors = [reply["error"] for reply in replies[4:]]
    assert errors == [{"code": 111, "message": "too many requests", "temporary": True}] * 2
    assert transport.closed == codes.DISCONNECT_TOO_MANY_REQUESTS
    assert node.metrics.registry.get_sample_value("client_command_errors_total", {"code": "111"}) == 2


async def test_pongs_are_not_counted() -> None:
    config = Config(
        token_hmac_secret_key=SECRET,
        enable_rate_limit=True,
        client_command_rate_limit=RateLimit(1, 3600.0),
        client_rejected_command_limit=RateLimit(1, 3600.0),
    )
    node = Node(config, MemoryBroker(), MemoryPresenceManager())
    await node.broker.start(node)
    transport = MemoryTransport()
    client = Client(node, transport)
    client.on_message(f'{{"id":1,"connect":{{"token":"{jwt.encode({"sub": "a"}, SECRET)}"}}}}'.encode())
    await settle()
    for _ in range(100):
        client.ping_sent = 1.0
        client.on_message(b"{}")
        await settle()
    assert transport.closed is None
    assert node.metrics.registry.get_sample_value("rate_limited_total", {"kind": "connection_command"}) == 0
