"""Scenarios: what is measured, and how.

Every publishing phase has a warm-up and then a measured window. At both ends of the window the server's
CPU time (``/proc/<pid>/stat`` utime+stime), the load generator's CPU time, the number of deliveries
counted by the workers and the number of acknowledged publications are read; rates and per-delivery
costs are differences over the window. Latency samples (publish → receive, from the timestamp embedded in
each payload) are only recorded inside the window.

*Fixed-rate* phases publish on a timer. While more deliveries are outstanding than the target delivered in
the last ``fixed_backlog_s`` seconds (and more than one publication's worth), due publications are skipped,
so a target that cannot keep up has a queue of about that many seconds, and the row is marked as not keeping
up. *Max-rate* phases are a closed loop: the publisher keeps at most ``inflight_deliveries`` deliveries
outstanding (published x subscribers - delivered), so the measured rate is the highest the server sustains
without queues growing without bound (and without tripping slow-consumer disconnects), and max-rate latency
includes that bounded queueing.

After a phase, queued deliveries are waited for until none is outstanding, or none arrived for
``drain_idle`` seconds, or ``drain_max`` seconds passed.
"""

from __future__ import annotations

import asyncio
import functools
import time
from array import array
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from bench import wire
from bench.loadgen import ConnSpec, WorkerPool
from bench.procstat import cpu_seconds, cpu_times, rss_bytes, self_cpu_seconds
from bench.publishers import Publisher
from bench.stormgen import StormClient
from bench.targets import RECOVER_NAMESPACE, RunningTarget, Target

SCENARIOS = ("fanout", "channels", "idle", "storm", "recovery", "api")
API_CHANNELS = 1000  # distinct channels the API scenario publishes to


@dataclass
class Sizes:
    fanout_subscribers: list[int] = field(default_factory=lambda: [1000, 2000, 10000])
    # Publications/s of the fixed-rate fan-out phase per subscriber count (the latency points of the
    # performance targets); other counts publish fanout_fixed_deliveries / subscribers per second.
    fanout_fixed_rates: dict[int, float] = field(default_factory=lambda: {1000: 100.0, 2000: 50.0, 10000: 10.0})
    fanout_fixed_deliveries: int = 100_000
    channels: int = 10_000
    channels_fixed_rate: int = 5_000  # publications/s (= deliveries/s) during the fixed-rate phase
    idle_connections: int = 10_000
    idle_window: float = 30.0  # long enough to include a ping round (25 s) on both Centrifugo servers
    storm_connections: int = 10_000
    storm_concurrency: int = 64  # handshakes in flight per worker
    storm_rounds: int = 3  # storms per target, on the same server; the row is the median one (by rate)
    recovery_connections: int = 5000  # reconnect-with-recovery storm: clients, one recoverable channel each
    recovery_missed: int = 10  # publications per channel while they are away
    api_batch: int = 100
    api_lanes: int = 64  # concurrent single-publish requests
    api_batch_lanes: int = 16  # concurrent batch requests: enough that the server never waits for the next one
    inflight_deliveries: int = 40_000
    fixed_backlog_s: float = 1.0  # fixed rate: seconds of deliveries a target may fall behind
    drain_idle: float = 3.0
    drain_max: float = 10.0
    warmup: float = 2.0
    window: float = 8.0
    payload_size: int = 100
    latency_connections: int = 256  # connections that record latency samples

    def fixed_rate(self, subscribers: int) -> float:
        """Publications/s of the fixed-rate fan-out phase with ``subscribers``."""
        rate = self.fanout_fixed_rates.get(subscribers)
        return rate if rate else max(1.0, self.fanout_fixed_deliveries / max(1, subscribers))

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            fanout_subscribers=[100],
            fanout_fixed_rates={100: 50.0},
            fanout_fixed_deliveries=5000,
            channels=100,
            channels_fixed_rate=1000,
            idle_connections=100,
            idle_window=1.5,
            storm_connections=100,
            storm_concurrency=16,
            storm_rounds=2,
            recovery_connections=100,
            api_batch=20,
            api_lanes=8,
            api_batch_lanes=8,
            inflight_deliveries=5000,
            drain_max=5.0,
            warmup=0.5,
            window=1.5,
        )


@dataclass
class Context:
    pool: WorkerPool
    sizes: Sizes
    workdir: Path
    log: Callable[[str], None] = print
    server_cpus: list[int] = field(default_factory=list)
    client_cpus: list[int] = field(default_factory=list)


@dataclass
class Row:
    target: str
    scenario: str
    phase: str
    params: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"  # ok | skipped | failed
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Snap:
    t: float
    server_cpu: float
    client_cpu: float
    delivered: int
    acked: int
    core_busy: float = 0.0
    core_softirq: float = 0.0
    skipped: int = 0


def server_cpu(target: RunningTarget) -> float:
    """CPU seconds of the target's processes (the server, and its Redis when it has one)."""
    return sum(cpu_seconds(pid) for pid in target.pids)


def server_rss(target: RunningTarget) -> int:
    return sum(rss_bytes(pid) for pid in target.pids)


def client_cpu(ctx: Context, extra_pids: Sequence[int] = ()) -> float:
    """CPU seconds of the load generator: this process, the worker pool and ``extra_pids`` (a storm client)."""
    return self_cpu_seconds() + sum(cpu_seconds(pid) for pid in (*ctx.pool.pids, *extra_pids))


def _snap(ctx: Context, target: RunningTarget, acked: int, skipped: int = 0) -> _Snap:
    core = cpu_times(ctx.server_cpus) if ctx.server_cpus else {"busy": 0.0, "softirq": 0.0}
    return _Snap(
        time.monotonic(),
        server_cpu(target),
        client_cpu(ctx),
        ctx.pool.delivered(),
        acked,
        core["busy"],
        core["softirq"],
        skipped,
    )


def percentiles(samples_ns: array[int]) -> dict[str, float | int | None]:
    n = len(samples_ns)
    if not n:
        return {"p50": None, "p99": None, "p999": None, "max": None, "samples": 0}
    s = sorted(samples_ns)

    def q(p: float) -> float:
        return round(s[min(n - 1, int(p * n))] / 1e6, 3)

    return {"p50": q(0.5), "p99": q(0.99), "p999": q(0.999), "max": round(s[-1] / 1e6, 3), "samples": n}


def _window_metrics(a: _Snap, b: _Snap) -> dict[str, Any]:
    dt = b.t - a.t
    deliveries = b.delivered - a.delivered
    acked = b.acked - a.acked
    cpu = b.server_cpu - a.server_cpu
    return {
        "window_s": round(dt, 3),
        "deliveries": deliveries,
        "deliveries_per_s": round(deliveries / dt, 1) if dt > 0 else None,
        "publishes_per_s": round(acked / dt, 1) if dt > 0 else None,
        "cpu_us_per_delivery": round(cpu * 1e6 / deliveries, 3) if deliveries else None,
        "cpu_us_per_publish": round(cpu * 1e6 / acked, 3) if acked else None,
        "server_cpu_util": round(cpu / dt, 3) if dt > 0 else None,
        "client_cpu_util": round((b.client_cpu - a.client_cpu) / dt, 3) if dt > 0 else None,
        "server_core_busy": round((b.core_busy - a.core_busy) / dt, 3) if dt > 0 and b.core_busy else None,
        "server_core_softirq": round((b.core_softirq - a.core_softirq) / dt, 3) if dt > 0 and b.core_busy else None,
    }


class _Phase:
    """One publishing phase: a sender loop plus the measurement of its window."""

    def __init__(
        self,
        ctx: Context,
        target: RunningTarget,
        pub: Publisher,
        channel_of: Callable[[int], str],
        fan: int,
    ) -> None:
        self.ctx = ctx
        self.target = target
        self.pub = pub
        self.channel_of = channel_of
        self.fan = fan
        self.published = 0
        self.acked = 0
        self.failed = 0
        self.skipped = 0  # fixed rate: publications not sent because the target was too far behind
        self.rate = 0.0  # fixed rate: publications/s asked for
        self.inflight: set[asyncio.Task[None]] = set()
        self.base = ctx.pool.delivered()
        self.inflight_limit = 0

    def _items(self, n: int) -> list[tuple[str, bytes]]:
        size = self.ctx.sizes.payload_size
        first = self.published
        self.published += n
        return [(self.channel_of(k), wire.payload(k, size)) for k in range(first, first + n)]

    async def _send(self, items: list[tuple[str, bytes]]) -> None:
        try:
            await self.pub.send(items)
            self.acked += len(items)
        except (ConnectionError, OSError, RuntimeError):  # RuntimeError: uvloop, write to a closed transport
            self.failed += len(items)

    def _fire(self, items: list[tuple[str, bytes]]) -> None:
        task = asyncio.get_running_loop().create_task(self._send(items))
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)

    async def _wait_lane(self, lanes: int) -> None:
        while len(self.inflight) >= lanes:
            await asyncio.wait(list(self.inflight), return_when=asyncio.FIRST_COMPLETED)

    def outstanding(self) -> int:
        return self.published * self.fan - (self.ctx.pool.delivered() - self.base)

    async def fixed_rate(self, rate: float, batch: int, until: float) -> None:
        """``rate`` publications per second, in requests of up to ``batch``.

        Publications due while more than ``fixed_backlog_s`` seconds of deliveries are outstanding are
        skipped (counted, and the row marked as not keeping up) rather than queued without bound.
        """
        self.rate = rate
        backlog_s = self.ctx.sizes.fixed_backlog_s
        floor = self.fan * batch
        recent: deque[tuple[float, int]] = deque()  # (time, delivered) over the last backlog_s seconds
        start = time.monotonic()
        while (now := time.monotonic()) < until:
            delivered = self.ctx.pool.delivered()
            recent.append((now, delivered))
            while recent[0][0] < now - backlog_s:
                recent.popleft()
            due = int((now - start) * rate) - self.published - self.skipped
            while due > 0:
                n = min(due, batch)
                due -= n
                if self.fan and self.outstanding() > max(floor, delivered - recent[0][1]):
                    self.skipped += n
                    continue
                await self._wait_lane(256)
                self._fire(self._items(n))
            await asyncio.sleep(0.002)

    async def max_rate(self, batch: int, lanes: int, inflight: int, until: float) -> None:
        self.inflight_limit = limit = max(inflight, 2 * self.fan * batch)
        while time.monotonic() < until:
            if self.fan and self.outstanding() > limit:
                await asyncio.sleep(0.001)
                continue
            await self._wait_lane(lanes)
            self._fire(self._items(batch))

    async def unacked_only(self, batch: int, lanes: int, until: float) -> None:
        """No subscribers: just keep ``lanes`` requests in flight, cycling through the requests of one pass over
        the channels, prepared once (nothing is delivered, so their send times do not matter, and building a
        request per publication would bound the load generator before the server)."""
        prepared = [self._items(batch) for _ in range(max(1, API_CHANNELS // batch))]
        k = 0
        while time.monotonic() < until:
            await self._wait_lane(lanes)
            self._fire(prepared[k % len(prepared)])
            k += 1

    async def run(self, sender: Callable[[float], Coroutine[Any, Any, None]]) -> dict[str, Any]:
        sizes, pool = self.ctx.sizes, self.ctx.pool
        until = time.monotonic() + sizes.warmup + sizes.window
        send_task = asyncio.get_running_loop().create_task(sender(until))
        await asyncio.sleep(sizes.warmup)
        a = _snap(self.ctx, self.target, self.acked, self.skipped)
        await pool.record(True)
        await asyncio.sleep(max(0.0, until - time.monotonic()))
        b = _snap(self.ctx, self.target, self.acked, self.skipped)
        await pool.record(False)
        await send_task
        if self.inflight:
            await asyncio.wait(list(self.inflight), timeout=10)
        drained = await self._drain()
        collected = await pool.collect()
        metrics = _window_metrics(a, b)
        if self.rate:
            expected = self.rate * max(1, self.fan)
            metrics["target_deliveries_per_s"] = round(expected, 1)
            metrics["skipped_publications"] = b.skipped - a.skipped
            rate = metrics.get("deliveries_per_s") or 0.0
            metrics["kept_up"] = b.skipped == a.skipped and rate >= 0.95 * expected
        if self.inflight_limit:
            metrics["inflight_limit"] = self.inflight_limit
        metrics["drain_s"] = drained
        metrics["latency_ms"] = percentiles(collected["latencies"])
        if collected["arrivals"]:
            # Until the sampled deliveries reached their sockets: without the load generator's own wait.
            metrics["arrival_latency_ms"] = percentiles(collected["arrivals"])
        metrics["publish_errors"] = self.pub.errors + self.failed
        metrics["connections_lost"] = collected["lost"]
        if self.pub.first_error:
            metrics["first_error"] = self.pub.first_error
        if self.fan:
            metrics["undelivered_after_drain"] = max(0, self.outstanding())
        return metrics

    async def _drain(self) -> float:
        """Let queued deliveries arrive before the next phase: until none is outstanding, or none arrived
        for ``drain_idle`` seconds, or ``drain_max`` passed. Returns the seconds waited."""
        sizes = self.ctx.sizes
        start = last_change = time.monotonic()
        seen = self.ctx.pool.delivered()
        while self.fan and self.outstanding() > 0:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            delivered = self.ctx.pool.delivered()
            if delivered != seen:
                seen, last_change = delivered, now
            if now - last_change > sizes.drain_idle or now - start > sizes.drain_max:
                break
        return round(time.monotonic() - start, 2)


# ---- helpers ---------------------------------------------------------------------------------------


def _spec(ctx: Context, target: RunningTarget, channel: str, count: int, concurrency: int = 100) -> ConnSpec:
    ep = target.endpoint
    return ConnSpec(
        proto=ep.proto,
        host=ep.host,
        port=ep.port,
        path=ep.path,
        channel=channel,
        first=0,
        count=count,
        secret=ep.secret,
        sample_every=max(1, count // ctx.sizes.latency_connections),
        concurrency=concurrency,
    )


async def _connect(ctx: Context, spec: ConnSpec) -> dict[str, Any]:
    await ctx.pool.prepare(spec)
    started = time.monotonic()
    opened = await ctx.pool.open()
    opened["wall_s"] = time.monotonic() - started
    if opened["failed"] > max(0, spec.count // 100):
        raise RuntimeError(f"{opened['failed']} of {spec.count} connections failed: {opened['errors']}")
    await ctx.pool.hand_off()  # from now on the live receivers read them
    return opened


def _status(metrics: dict[str, Any]) -> tuple[str, str]:
    """A row's status and note. A fixed-rate phase the target could not keep up with stays "ok" (its
    figures are what the target did) with a note; failures are errors and lost connections."""
    failures = []
    if metrics.get("publish_errors"):
        failures.append(f"{metrics['publish_errors']} publish errors ({metrics.get('first_error', '')[:120]})")
    if metrics.get("connections_lost"):
        failures.append(f"{metrics['connections_lost']} connections lost")
    notes = list(failures)
    if metrics.get("connect_failed"):
        notes.append(f"{metrics['connect_failed']} of the connections could not be opened")
    if metrics.get("kept_up") is False:
        notes.append(
            f"could not keep up: {metrics.get('deliveries_per_s')} of {metrics.get('target_deliveries_per_s')} "
            f"deliveries/s, {metrics.get('skipped_publications', 0)} publications skipped"
        )
    return ("failed" if failures else "ok"), "; ".join(notes)


def _core_metrics(a: dict[str, float] | None, b: dict[str, float] | None, dt: float) -> dict[str, float]:
    if a is None or b is None or dt <= 0:
        return {}
    return {
        "server_core_busy": round((b["busy"] - a["busy"]) / dt, 3),
        "server_core_softirq": round((b["softirq"] - a["softirq"]) / dt, 3),
    }


async def _settle_rss(target: RunningTarget, seconds: float = 1.0) -> int:
    await asyncio.sleep(seconds)
    return server_rss(target)


# ---- scenarios -------------------------------------------------------------------------------------


async def fanout(ctx: Context, target: RunningTarget, subscribers: int) -> list[Row]:
    sizes = ctx.sizes
    channel = target.channel("bench:fanout")
    rss0 = await _settle_rss(target, 0.5)
    opened = await _connect(ctx, _spec(ctx, target, channel, subscribers))
    await asyncio.sleep(1.0)
    rss1 = server_rss(target)
    pub = await target.publisher(connections=4)
    common = {
        "rss_mb": round(rss1 / 2**20, 1),
        "rss_kb_per_conn": round((rss1 - rss0) / 1024 / subscribers, 2),
        "connect_wall_s": round(opened["wall_s"], 3),
        "connect_failed": opened["failed"],
    }
    fan = opened["ok"]  # _connect tolerates up to 1% failed connections
    rows = []
    try:
        rate = sizes.fixed_rate(subscribers)
        phase = _Phase(ctx, target, pub, lambda _: channel, fan)
        m = await phase.run(lambda until: phase.fixed_rate(rate, 1, until))
        params = {"subscribers": subscribers, "publishes_per_s": round(rate, 2)}
        rows.append(Row(target.name, "fanout", "fixed-rate", params, {**m, **common}, *_status(m)))
        ctx.log(f"    fixed-rate {_brief(m)}")
        phase = _Phase(ctx, target, pub, lambda _: channel, fan)
        m = await phase.run(lambda until: phase.max_rate(1, sizes.api_lanes, sizes.inflight_deliveries, until))
        params = {"subscribers": subscribers, "inflight_deliveries": phase.inflight_limit}
        rows.append(Row(target.name, "fanout", "max-rate", params, {**m, **common}, *_status(m)))
        ctx.log(f"    max-rate   {_brief(m)}")
    finally:
        await pub.close()
    return rows


async def channels(ctx: Context, target: RunningTarget, n: int) -> list[Row]:
    sizes = ctx.sizes
    fmt = target.channel("tenant:{i}:events")
    names = [fmt.format(i=i) for i in range(n)]
    rss0 = await _settle_rss(target, 0.5)
    opened = await _connect(ctx, _spec(ctx, target, fmt, n))
    await asyncio.sleep(1.0)
    rss1 = server_rss(target)
    common = {
        "rss_mb": round(rss1 / 2**20, 1),
        "rss_kb_per_conn": round((rss1 - rss0) / 1024 / n, 2),
        "connect_failed": opened["failed"],
    }
    pub = await target.publisher(connections=4)
    rows = []
    try:
        phase = _Phase(ctx, target, pub, lambda k: names[k % n], 1)
        m = await phase.run(lambda until: phase.fixed_rate(sizes.channels_fixed_rate, sizes.api_batch, until))
        params = {"connections": n, "publishes_per_s": sizes.channels_fixed_rate, "batch": sizes.api_batch}
        rows.append(Row(target.name, "channels", "fixed-rate", params, {**m, **common}, *_status(m)))
        ctx.log(f"    fixed-rate {_brief(m)}")
        phase = _Phase(ctx, target, pub, lambda k: names[k % n], 1)
        m = await phase.run(lambda until: phase.max_rate(sizes.api_batch, 4, sizes.inflight_deliveries, until))
        params = {"connections": n, "batch": sizes.api_batch, "inflight_deliveries": phase.inflight_limit}
        rows.append(Row(target.name, "channels", "max-rate", params, {**m, **common}, *_status(m)))
        ctx.log(f"    max-rate   {_brief(m)}")
    finally:
        await pub.close()
    return rows


async def idle(ctx: Context, target: RunningTarget, n: int) -> list[Row]:
    window = ctx.sizes.idle_window
    rss0 = await _settle_rss(target, 1.0)
    channel = target.channel("tenant:{i}:events")
    opened = await _connect(ctx, _spec(ctx, target, channel, n))
    await asyncio.sleep(2.0)
    rss1 = server_rss(target)
    core0 = cpu_times(ctx.server_cpus) if ctx.server_cpus else None
    cpu0, t0 = server_cpu(target), time.monotonic()
    await asyncio.sleep(window)
    cpu1, t1 = server_cpu(target), time.monotonic()
    core1 = cpu_times(ctx.server_cpus) if ctx.server_cpus else None
    rss2 = server_rss(target)
    collected = await ctx.pool.collect()
    m = {
        "connections": n,
        "rss_mb": round(rss2 / 2**20, 1),
        "rss_baseline_mb": round(rss0 / 2**20, 1),
        "rss_kb_per_conn": round((rss1 - rss0) / 1024 / n, 2),
        "cpu_us_per_conn_s": round((cpu1 - cpu0) * 1e6 / n / (t1 - t0), 3),
        "server_cpu_util": round((cpu1 - cpu0) / (t1 - t0), 4),
        "window_s": round(t1 - t0, 2),
        "connections_lost": collected["lost"],
        "connect_failed": opened["failed"],
        **_core_metrics(core0, core1, t1 - t0),
    }
    ctx.log(f"    {m['rss_kb_per_conn']} KB/conn, {m['cpu_us_per_conn_s']} µs CPU per conn per s")
    return [Row(target.name, "idle", "idle", {"connections": n, "window_s": window}, m, *_status(m))]


class _Opener(Protocol):
    """What opens prepared connections: the worker pool, or the compiled connect-storm client."""

    @property
    def pids(self) -> list[int]: ...

    async def open(self) -> dict[str, Any]: ...


async def _timed_open(
    ctx: Context, target: RunningTarget, opener: _Opener | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Open the prepared connections all at once (with ``opener``, by default the worker pool): (open result,
    server/client CPU and core metrics). The client CPU counts the opener's processes too."""
    extra = [] if opener is None else opener.pids
    cpu0, client0 = server_cpu(target), client_cpu(ctx, extra)
    core0 = cpu_times(ctx.server_cpus) if ctx.server_cpus else None
    t0 = time.monotonic()
    opened = await (opener or ctx.pool).open()
    t1 = time.monotonic()
    core1 = cpu_times(ctx.server_cpus) if ctx.server_cpus else None
    cpu1, client1 = server_cpu(target), client_cpu(ctx, extra)
    ok, dt = opened["ok"], t1 - t0
    m = {
        "ok": ok,
        "failed": opened["failed"],
        "server_cpu_util": round((cpu1 - cpu0) / dt, 3),
        "client_cpu_util": round((client1 - client0) / dt, 3),
        "wall_s": round(dt, 3),
        "rss_mb": round(server_rss(target) / 2**20, 1),
        **_core_metrics(core0, core1, dt),
    }
    m["_rate"] = ok / dt
    m["_cpu_us_each"] = round((cpu1 - cpu0) * 1e6 / ok, 2) if ok else None
    return opened, m


async def storm(ctx: Context, target: RunningTarget, n: int) -> list[Row]:
    """Connect storm, driven by the compiled client (:mod:`bench.stormgen`) so that the load generator's core
    is not the bound: as many connections in flight as the worker pool would have (``storm_concurrency`` per
    worker).

    A storm lasts two or three seconds, short enough for a brief stall of the machine to move its rate by a
    tenth, so it is repeated ``storm_rounds`` times on the same server (each round's connections are closed, and
    the server left to finish with them, before the next) and the row is the round with the median rate; the
    rates of all rounds are kept in ``connects_per_s_rounds``.

    Figures are not directly comparable with storms opened by the Python workers (which saturated their core and
    answered the server in bursts), nor with runs before the client polled its sockets: while it slept in
    epoll_wait, each of the server's writes woke it, on loopback inside the server's system call, which cost the
    server about a tenth more CPU per connection.
    """
    concurrency = ctx.sizes.storm_concurrency * ctx.pool.size
    spec = _spec(ctx, target, target.channel("tenant:{i}:events"), n, concurrency=concurrency)
    spec.sample_every = 0
    rounds: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for k in range(max(1, ctx.sizes.storm_rounds)):
        if k:
            await _settle_cpu(target)
        client = StormClient(ctx.client_cpus or None)
        try:
            await client.prepare(spec)
            await asyncio.sleep(0.5)
            opened, timed = await _timed_open(ctx, target, client)
            closed = await client.close()
        finally:
            await client.close()
        m = {
            "connections": n,
            "connects_per_s": round(timed.pop("_rate"), 1),
            "cpu_us_per_connect": timed.pop("_cpu_us_each"),
            **timed,
            "connections_lost": closed.get("lost", 0),  # closed by the server between their set-up and the end
        }
        ctx.log(f"    {m['connects_per_s']} connects/s, {m['cpu_us_per_connect']} µs CPU each")
        rounds.append((opened, m))
        if opened["failed"]:
            break  # more storms on this server would only repeat it
    m, status, note = median_storm(rounds, ctx.sizes.storm_rounds)
    params = {"connections": n, "concurrency": concurrency, "rounds": len(rounds)}
    return [Row(target.name, "storm", "connect+subscribe", params, m, status, note)]


def median_storm(rounds: list[tuple[dict[str, Any], dict[str, Any]]], asked: int) -> tuple[dict[str, Any], str, str]:
    """The row of a target's storms ((open result, metrics) each, in the order they ran, ``asked`` of them
    asked for): (metrics, status, note). The metrics are the median storm's among those that succeeded, with the
    rates of all of them in ``connects_per_s_rounds``. A storm that failed after others succeeded (some peers
    have not finished with one storm's connections when the next begins) is named in the note, and so are
    connections the server closed after their set-up in any of them; a first storm that failed fails the row."""
    done = [r for r in rounds if not r[0]["failed"]] or rounds
    opened, m = sorted(done, key=lambda r: float(r[1]["connects_per_s"]))[(len(done) - 1) // 2]
    m = {**m, "connects_per_s_rounds": [r[1]["connects_per_s"] for r in rounds]}
    status, note = ("ok", "") if not opened["failed"] else ("failed", f"{opened['failed']} failed: {opened['errors']}")
    last = rounds[-1][0]
    if status == "ok" and last["failed"]:
        note = f"storm {len(rounds)} of {asked}: {last['failed']} failed: {last['errors']}"
    lost = sum(r[1]["connections_lost"] for r in rounds)  # in any storm, not only the median one
    if lost:
        note = "; ".join(filter(None, [note, f"{lost} connections lost after their set-up"]))
    return m, status, note


async def _settle_cpu(target: RunningTarget, quiet: float = 0.005, period: float = 0.2, limit: float = 10.0) -> None:
    """Wait until the server is idle: at most ``quiet`` CPU seconds used in ``period`` (it has finished with the
    connections just closed), or ``limit`` seconds."""
    deadline = time.monotonic() + limit
    before = server_cpu(target)
    while time.monotonic() < deadline:
        await asyncio.sleep(period)
        now = server_cpu(target)
        if now - before <= quiet:
            return
        before = now


async def recovery(ctx: Context, target: RunningTarget, n: int) -> list[Row]:
    """Reconnect-with-recovery storm: ``n`` clients subscribed to their own channel of a namespace with
    history and forced recovery drop off together, ``recovery_missed`` publications go to every channel
    meanwhile, and all of them reconnect at once with ``recover: true`` and the epoch/offset of their
    subscription, each getting its missed publications back in the subscribe reply."""
    sizes = ctx.sizes
    missed = sizes.recovery_missed
    fmt = target.channel(f"{RECOVER_NAMESPACE}:{{i}}")
    spec = _spec(ctx, target, fmt, n, concurrency=sizes.storm_concurrency)
    spec.sample_every = 0
    await _connect(ctx, spec)  # the subscribe replies record each subscription's position
    await ctx.pool.close_connections()
    pub = await target.publisher(connections=4)
    try:
        items = [
            (fmt.format(i=i), wire.payload(r * n + i, sizes.payload_size)) for r in range(missed) for i in range(n)
        ]
        batches = [items[k : k + sizes.api_batch] for k in range(0, len(items), sizes.api_batch)]
        sem = asyncio.Semaphore(8)

        async def send(batch: list[tuple[str, bytes]]) -> None:
            async with sem:
                await pub.send(batch)

        await asyncio.gather(*(send(b) for b in batches))
        publish_errors, first_error = pub.errors, pub.first_error
    finally:
        await pub.close()
    if publish_errors:
        raise RuntimeError(f"{publish_errors} errors publishing the missed publications: {first_error}")
    await asyncio.sleep(1.0)  # disconnects and publications handled before the measured storm
    # The reconnects come from the compiled client, as in the connect storm, so that the server sets the rate.
    client = StormClient(ctx.client_cpus or None)
    try:
        await client.prepare(
            replace(spec, recover=True, concurrency=sizes.storm_concurrency * ctx.pool.size),
            await ctx.pool.positions(),
        )
        await asyncio.sleep(0.5)
        opened, timed = await _timed_open(ctx, target, client)
    finally:
        await client.close()
    ok = opened["ok"]
    m = {
        "connections": n,
        "missed_per_client": missed,
        "reconnects_per_s": round(timed.pop("_rate"), 1),
        "cpu_us_per_reconnect": timed.pop("_cpu_us_each"),
        "recovered": opened["recovered"],
        "recovered_publications": opened["recovered_publications"],
        "expected_publications": ok * missed,
        **timed,
    }
    notes = []
    if opened["failed"]:
        notes.append(f"{opened['failed']} failed: {opened['errors']}")
    if opened["recovered"] != ok or opened["recovered_publications"] != ok * missed:
        notes.append(
            f"{opened['recovered']} of {ok} subscriptions recovered, "
            f"{opened['recovered_publications']} of {ok * missed} publications returned"
        )
    ctx.log(
        f"    {m['reconnects_per_s']} reconnects/s, {m['cpu_us_per_reconnect']} µs CPU each, "
        f"{m['recovered_publications']} of {m['expected_publications']} publications recovered"
    )
    params = {"connections": n, "missed": missed, "concurrency": sizes.storm_concurrency * ctx.pool.size}
    return [Row(target.name, "recovery", "reconnect+recover", params, m, "failed" if notes else "ok", "; ".join(notes))]


async def api(ctx: Context, target: RunningTarget, _: int) -> list[Row]:
    sizes = ctx.sizes
    rows = []
    for phase_name, batch, lanes, conns in (
        ("single", 1, sizes.api_lanes, 8),
        ("batch", sizes.api_batch, sizes.api_batch_lanes, 4),
    ):
        pub = await target.publisher(connections=conns)
        try:
            phase = _Phase(ctx, target, pub, lambda k: f"bench:api{k % API_CHANNELS}", 0)
            m = await phase.run(functools.partial(phase.unacked_only, batch, lanes))
        finally:
            await pub.close()
        for key in ("deliveries", "deliveries_per_s", "cpu_us_per_delivery", "latency_ms"):
            m.pop(key, None)
        params = {"batch": batch, "concurrent_requests": lanes, "connections": conns}
        rows.append(Row(target.name, "api", phase_name, params, m, *_status(m)))
        ctx.log(f"    {phase_name}: {m['publishes_per_s']} publishes/s, {m['cpu_us_per_publish']} µs CPU each")
    return rows


def _brief(m: dict[str, Any]) -> str:
    lat = m.get("latency_ms") or {}
    return (
        f"{m.get('deliveries_per_s')} deliveries/s, {m.get('cpu_us_per_delivery')} µs CPU/delivery, "
        f"p50 {lat.get('p50')} p99 {lat.get('p99')} ms, server {m.get('server_cpu_util')} "
        f"(core {m.get('server_core_busy')}, softirq {m.get('server_core_softirq')}) client "
        f"{m.get('client_cpu_util')} CPU"
    )


ScenarioFn = Callable[[Context, RunningTarget, int], Awaitable[list[Row]]]


def variants(name: str, sizes: Sizes) -> list[tuple[int, ScenarioFn]]:
    """The size variants of a scenario and the function that runs one."""
    table: dict[str, list[tuple[int, ScenarioFn]]] = {
        "fanout": [(n, fanout) for n in sizes.fanout_subscribers],
        "channels": [(sizes.channels, channels)],
        "idle": [(sizes.idle_connections, idle)],
        "storm": [(sizes.storm_connections, storm)],
        "recovery": [(sizes.recovery_connections, recovery)],
        "api": [(0, api)],
    }
    return table[name]


def applicable(name: str, target: Target) -> str | None:
    """None when ``target`` can run scenario ``name``, else why not."""
    if name == "api" and not target.has_api:
        return "no Centrifugo-compatible HTTP publish API"
    if name == "recovery" and not target.has_recovery:
        return "no history and recovery on reconnect"
    if target.two_nodes and name not in ("fanout", "channels", "storm", "recovery"):
        return "Redis engine: fan-out, many channels and the storms only (idle memory and the API are the node's)"
    return None


def time_budget(name: str, sizes: Sizes, size: int, slow: bool = False) -> float:
    """Upper bound for one scenario run, after which it is abandoned. Slow peers connect at a few hundred
    connections per second and may drain a backlog after each phase."""
    phases = sizes.warmup + sizes.window + 20 + (sizes.drain_max if slow else 0)
    connect = size / (50 if slow else 200)
    return {
        "fanout": 2 * phases + 60 + connect,
        "channels": 2 * phases + 60 + connect,
        "idle": sizes.idle_window + 60 + connect,
        "storm": sizes.storm_rounds * (20 + size / 50) + 40,
        "recovery": 90 + size / 25,
        "api": 2 * phases + 30,
    }[name]
