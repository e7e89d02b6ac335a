"""Rate limits and quotas: in process, and for the tenants' API quota and the per-address connection attempts in
the engine when it can share budgets between nodes (:class:`~neoevents.engines.base.SharedBudgets`, Redis).

Every limit is a budget of ``count`` requests per ``period`` seconds, enforced with GCRA (the generic cell rate
algorithm, equivalent to a token bucket of capacity ``count`` refilled at ``count / period`` per second). A key's
whole state is one float, its *theoretical arrival time* (TAT): the time at which its budget would be full
again if it made no more requests. A request of cost ``c`` is admitted when ``max(TAT, now) + c * interval -
period <= now`` (``interval = period / count``), and then moves the TAT forward by ``c * interval``. So a fresh
key may spend its whole budget at once, after which requests are admitted at exactly ``count / period`` per
second; a refused request changes nothing.

Memory is bounded without timers: keyed state lives in an :class:`~collections.OrderedDict` in order of last
use, and each new key first drops up to two expired entries from the front (an entry whose TAT has passed is
indistinguishable from no entry). A key's TAT is at most one period after its last use, so every entry behind
a live front entry is live too: the table holds the keys used within the last period plus a backlog that each
new key shrinks. ``max_keys`` is a hard cap on top of that: at the cap, the least recently used key is dropped
even when it is still limited (its budget starts afresh).

The limits (see ``docs/configuration.md``, *Rate limits*):

* commands of one connection (:class:`ClientLimiter`, state on the connection itself, no table);
* commands of one user over all their connections on this node (keyed by user id; anonymous connections
  have only the per-connection limit);
* refused commands of one connection: when a connection is refused more than this budget, it is closed with
  3013 instead of being answered with 111;
* WebSocket connection attempts per client IP address (IPv6 addresses by their /64 network; cluster-wide when
  the engine shares budgets: :meth:`RateLimits.admit_connection_async`);
* publications through the HTTP API per tenant: the tenant of ``tenant:{id}:...`` channels (cluster-wide when
  the engine shares budgets: :meth:`RateLimits.admit_publish_async`).

Nothing here is created unless ``enable_rate_limit`` is set: the node's ``limits`` is then ``None`` and the
command path costs one attribute check.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Final

from neoevents.config import Config, RateLimit
from neoevents.engines.base import SharedBudgets
from neoevents.exceptions import DisconnectError, ProtocolError
from neoevents.metrics import Metrics
from neoevents.protocol import codes

__all__ = [
    "MAX_KEYS",
    "Budget",
    "ClientLimiter",
    "Clock",
    "KeyedLimiter",
    "RateLimits",
    "address_key",
    "retry_after_header",
    "tenant_of_channel",
]

Clock = Callable[[], float]

#: Hard cap of keys per keyed limiter (users, addresses, tenants).
MAX_KEYS: Final = 100_000

#: Values of the ``kind`` label of ``rate_limited_total``.
KIND_CONNECTION_COMMAND: Final = "connection_command"
KIND_USER_COMMAND: Final = "user_command"
KIND_CONNECTION_ATTEMPT: Final = "connection_attempt"
KIND_API_PUBLISH: Final = "api_publish"

TENANT_PREFIX: Final = "tenant:"

# Slack in comparisons, so that float rounding (ten intervals of 0.1 s adding up to 1.0000000000002 s) never
# refuses a request that is within budget.
_EPSILON: Final = 1e-9


class Budget:
    """``count`` requests per ``period`` seconds (both > 0)."""

    __slots__ = ("count", "interval", "period")

    def __init__(self, count: int, period: float) -> None:
        if count <= 0 or not period > 0:
            raise ValueError(f"a budget needs count > 0 and period > 0, got {count}/{period}")
        self.count = count
        self.period = float(period)
        self.interval = self.period / count

    def __repr__(self) -> str:
        return f"Budget({self.count}/{self.period:g}s)"

    @classmethod
    def of(cls, limit: RateLimit | None, config: Config) -> Budget | None:
        """The effective budget of a configured limit: unset is ``rate_limit_max_requests`` per
        ``rate_limit_window``, a period of 0 is ``rate_limit_window``, a count of 0 is no limit (None)."""
        if limit is None:
            limit = RateLimit(config.rate_limit_max_requests)
        if limit.count <= 0:
            return None
        return cls(limit.count, limit.period or config.rate_limit_window)


class KeyedLimiter:
    """GCRA state for many keys with bounded memory; see the module docstring."""

    __slots__ = ("_interval", "_period", "_tats", "budget", "clock", "max_keys")

    def __init__(self, budget: Budget, *, clock: Clock = time.monotonic, max_keys: int = MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.budget = budget
        self._interval = budget.interval
        self._period = budget.period
        self.clock = clock
        self.max_keys = max_keys
        self._tats: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tats)

    def acquire(self, key: str, cost: int = 1, now: float | None = None) -> float:
        """Admit ``cost`` requests of ``key`` and return 0.0, or refuse them (counting nothing) and return the
        seconds until they would be admitted. A cost above the budget's count is never admitted."""
        if now is None:
            now = self.clock()
        tats = self._tats
        tat = tats.get(key)
        if tat is None:
            after = now + cost * self._interval
            wait = after - self._period - now
            if wait > _EPSILON:
                return wait
            self._make_room(now)
        else:
            tats.move_to_end(key)
            after = (tat if tat > now else now) + cost * self._interval
            wait = after - self._period - now
            if wait > _EPSILON:
                return wait
        tats[key] = after
        return 0.0

    def wait(self, key: str, cost: int = 1, now: float | None = None) -> float:
        """Seconds until ``cost`` requests of ``key`` would be admitted (0.0: now), without counting them."""
        if now is None:
            now = self.clock()
        tat = self._tats.get(key, now)
        wait = max(tat, now) + cost * self._interval - self._period - now
        return wait if wait > _EPSILON else 0.0

    def _make_room(self, now: float) -> None:
        tats = self._tats
        for _ in range(2):
            if not tats:
                return
            oldest = next(iter(tats))
            if tats[oldest] > now and len(tats) < self.max_keys:
                return
            del tats[oldest]


class ClientLimiter:
    """The command limits of one connection. Created per connection only when a command limit is on."""

    __slots__ = ("_limits", "_rejected_tat", "_tat")

    def __init__(self, limits: RateLimits) -> None:
        self._limits = limits
        self._tat = 0.0
        self._rejected_tat = 0.0

    def check(self, user: str) -> None:
        """Count one command of this connection (of ``user``; ``""`` is anonymous).

        Raises :class:`ProtocolError` 111 when the connection or the user is over budget, and
        :class:`DisconnectError` 3013 when the connection has also used up its budget of refused commands.
        """
        limits = self._limits
        now = limits.clock()
        command = limits.command
        after = 0.0
        if command is not None:
            tat = self._tat if self._tat > now else now
            after = tat + command.interval
            if after - command.period - now > _EPSILON:
                self._reject(KIND_CONNECTION_COMMAND, now)
        users = limits.users
        if users is not None and user and users.acquire(user, 1, now) > 0:
            self._reject(KIND_USER_COMMAND, now)
        if command is not None:
            self._tat = after

    def _reject(self, kind: str, now: float) -> None:
        limits = self._limits
        limits.metrics.rate_limited(kind)
        rejected = limits.rejected
        if rejected is not None:
            tat = self._rejected_tat if self._rejected_tat > now else now
            after = tat + rejected.interval
            if after - rejected.period - now > _EPSILON:
                raise DisconnectError(codes.DISCONNECT_TOO_MANY_REQUESTS)
            self._rejected_tat = after
        raise ProtocolError(codes.ERROR_TOO_MANY_REQUESTS)


def address_key(address: str) -> str:
    """The key of a client address: IPv4 addresses as they are, IPv6 addresses by their /64 network (one
    host usually owns a whole /64), anything unparsable as it is."""
    if ":" not in address:
        return address
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


def tenant_of_channel(channel: str) -> str | None:
    """The tenant id of a ``tenant:{id}:...`` channel (``$tenant:...`` too), else None."""
    name = channel[1:] if channel.startswith("$") else channel
    if not name.startswith(TENANT_PREFIX):
        return None
    end = name.find(":", len(TENANT_PREFIX))
    tenant = name[len(TENANT_PREFIX) : end] if end >= 0 else name[len(TENANT_PREFIX) :]
    return tenant or None


def retry_after_header(wait: float) -> str:
    """A ``Retry-After`` value (whole seconds, at least 1) for a wait in seconds."""
    return str(max(1, math.ceil(wait)))


class RateLimits:
    """Every limit of one node, built from its configuration (only when ``enable_rate_limit`` is set)."""

    def __init__(
        self, config: Config, metrics: Metrics, *, clock: Clock = time.monotonic, shared: SharedBudgets | None = None
    ) -> None:
        self.clock = clock
        # The engine's budgets shared by every node (Redis): the tenants' API quota and the connection attempts
        # per address are kept there.
        self.shared = shared
        self.metrics = metrics
        self.command = Budget.of(config.client_command_rate_limit, config)
        self.rejected = Budget.of(config.client_rejected_command_limit, config)
        user = Budget.of(config.client_user_command_rate_limit, config)
        address = self.address_budget = Budget.of(config.client_ip_connection_rate_limit, config)
        tenant = self.tenant_budget = Budget.of(config.api_tenant_publish_rate_limit, config)
        self.users = KeyedLimiter(user, clock=clock) if user is not None else None
        self.addresses = KeyedLimiter(address, clock=clock) if address is not None else None
        self.tenants = KeyedLimiter(tenant, clock=clock) if tenant is not None else None

    def client(self) -> ClientLimiter | None:
        """The limiter of a new connection; None when no command limit is on (nothing to check)."""
        if self.command is None and self.users is None:
            return None
        return ClientLimiter(self)

    def admit_connection(self, address: str) -> float:
        """Count a WebSocket connection attempt from ``address``: 0.0 when admitted, else the seconds to wait."""
        addresses = self.addresses
        if addresses is None:
            return 0.0
        wait = addresses.acquire(address_key(address))
        if wait > 0:
            self.metrics.rate_limited(KIND_CONNECTION_ATTEMPT)
        return wait

    def admit_publish(self, channels: Iterable[str], tenant: str | None = None) -> float:
        """Count publications through the HTTP API: 0.0 when all are admitted, else the seconds to wait
        (and none is counted).

        ``tenant`` is the caller's tenant when the call is made with a user's token: every publication then
        counts against it. With the API key (``tenant`` None), each publication counts against the tenant in
        its channel name; publications to other channels are not limited.
        """
        tenants = self.tenants
        if tenants is None:
            return 0.0
        costs = _publish_costs(channels, tenant)
        if not costs:
            return 0.0
        now = self.clock()
        if len(costs) > 1:
            # All or nothing: refuse the whole request before counting anything.
            wait = max(tenants.wait(key, cost, now) for key, cost in costs.items())
            if wait > 0:
                self.metrics.rate_limited(KIND_API_PUBLISH)
                return wait
        for key, cost in costs.items():
            wait = tenants.acquire(key, cost, now)
            if wait > 0:
                self.metrics.rate_limited(KIND_API_PUBLISH)
                return wait
        return 0.0

    @property
    def shares_connection_attempts(self) -> bool:
        """True when connection attempts are counted in the engine's shared budgets (use
        :meth:`admit_connection_async`)."""
        return self.shared is not None and self.address_budget is not None

    async def admit_connection_async(self, address: str) -> float:
        """:meth:`admit_connection`, against the budgets every node shares when the engine keeps them (Redis):
        then an address's attempts count on every node it reaches."""
        budget = self.address_budget
        if self.shared is None or budget is None:
            return self.admit_connection(address)
        key = address_key(address)
        wait = await self.shared.spend(KIND_CONNECTION_ATTEMPT, {key: 1}, budget.interval, budget.period)
        if wait > 0:
            self.metrics.rate_limited(KIND_CONNECTION_ATTEMPT)
        return wait

    async def admit_publish_async(self, channels: Iterable[str], tenant: str | None = None) -> float:
        """:meth:`admit_publish`, against the budgets every node shares when the engine keeps them (Redis):
        then a tenant's quota holds for the whole cluster, whichever node the requests reach."""
        budget = self.tenant_budget
        if self.shared is None or budget is None:
            return self.admit_publish(channels, tenant)
        costs = _publish_costs(channels, tenant)
        if not costs:
            return 0.0
        wait = await self.shared.spend(KIND_API_PUBLISH, costs, budget.interval, budget.period)
        if wait > 0:
            self.metrics.rate_limited(KIND_API_PUBLISH)
        return wait


def _publish_costs(channels: Iterable[str], tenant: str | None) -> dict[str, int]:
    """Publications per tenant: all of them ``tenant``'s when given, else per the tenant of each channel."""
    costs: dict[str, int] = {}
    for channel in channels:
        key = tenant if tenant is not None else tenant_of_channel(channel)
        if key is not None:
            costs[key] = costs.get(key, 0) + 1
    return costs
