"""Scenarios: what is measured, and how.

Every publishing phase has a warm-up and then a measured window. At both ends of the window the server's
CPU time (``/proc/<pid>/stat`` utime+stime), the load generator's CPU time, the number of deliveries
counted by the workers and the number of acknowledged publications are read; rates and per-delivery
costs are differences over the window. Latency samples (publish → receive, from the timestamp embedded in
each payload) are only recorded inside the window.

*Fixed-rate* phases publish on a timer. *Max-rate* phases are a closed loop: the publisher keeps at most
``inflight_deliveries`` deliveries outstanding (published x subscribers - delivered), so the measured rate is
the highest the server sustains without queues growing without bound (and without tripping slow-consumer
disconnects), and max-rate latency includes that bounded queueing.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import wire
from bench.loadgen import ConnSpec, WorkerPool
from bench.procstat import cpu_seconds, cpu_times, rss_bytes, self_cpu_seconds
from bench.publishers import Publisher
from bench.targets import RunningTarget, Target

SCENARIOS = ("fanout", "channels", "idle", "storm", "api")


@dataclass
class Sizes:
    fanout_subscribers: list[int] = field(default_factory=lambda: [1000, 10000])
    fanout_fixed_deliveries: int = 20_000  # deliveries/s during the fixed-rate fan-out phase
    channels: int = 5000
    channels_fixed_rate: int = 5_000  # publications/s (= deliveries/s) during the fixed-rate phase
    idle_connections: int = 10_000
    idle_window: float = 30.0  # long enough to include a ping round (25 s) on both Centrifugo servers
    storm_connections: int = 5000
    storm_concurrency: int = 64  # handshakes in flight per worker
    api_batch: int = 100
    api_lanes: int = 64  # concurrent single-publish requests
    inflight_deliveries: int = 40_000
    warmup: float = 2.0
    window: float = 8.0
    payload_size: int = 100
    latency_connections: int = 256  # connections that record latency samples

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            fanout_subscribers=[100],
            fanout_fixed_deliveries=5000,
            channels=100,
            channels_fixed_rate=1000,
            idle_connections=100,
            idle_window=1.5,
            storm_connections=100,
            storm_concurrency=16,
            api_batch=20,
            api_lanes=8,
            inflight_deliveries=5000,
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


def _snap(ctx: Context, target: RunningTarget, acked: int) -> _Snap:
    client = self_cpu_seconds() + sum(cpu_seconds(pid) for pid in ctx.pool.pids)
    core = cpu_times(ctx.server_cpus) if ctx.server_cpus else {"busy": 0.0, "softirq": 0.0}
    return _Snap(
        time.monotonic(),
        cpu_seconds(target.pid),
        client,
        ctx.pool.delivered(),
        acked,
        core["busy"],
        core["softirq"],
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
        self.inflight: set[asyncio.Task[None]] = set()
        self.base = ctx.pool.delivered()

    def _items(self, n: int) -> list[tuple[str, bytes]]:
        size = self.ctx.sizes.payload_size
        first = self.published
        self.published += n
        return [(self.channel_of(k), wire.payload(k, size)) for k in range(first, first + n)]

    async def _send(self, items: list[tuple[str, bytes]]) -> None:
        try:
            await self.pub.send(items)
            self.acked += len(items)
        except (ConnectionError, OSError):
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
        """``rate`` publications per second, in requests of up to ``batch``."""
        start = time.monotonic()
        while (now := time.monotonic()) < until:
            due = int((now - start) * rate) - self.published
            while due > 0:
                n = min(due, batch)
                await self._wait_lane(256)
                self._fire(self._items(n))
                due -= n
            await asyncio.sleep(0.002)

    async def max_rate(self, batch: int, lanes: int, inflight: int, until: float) -> None:
        limit = max(inflight, 2 * self.fan * batch)
        while time.monotonic() < until:
            if self.fan and self.outstanding() > limit:
                await asyncio.sleep(0.001)
                continue
            await self._wait_lane(lanes)
            self._fire(self._items(batch))

    async def unacked_only(self, batch: int, lanes: int, until: float) -> None:
        """No subscribers: just keep ``lanes`` requests in flight."""
        while time.monotonic() < until:
            await self._wait_lane(lanes)
            self._fire(self._items(batch))

    async def run(self, sender: Callable[[float], Awaitable[None]]) -> dict[str, Any]:
        sizes, pool = self.ctx.sizes, self.ctx.pool
        until = time.monotonic() + sizes.warmup + sizes.window
        send_task = asyncio.get_running_loop().create_task(sender(until))
        await asyncio.sleep(sizes.warmup)
        a = _snap(self.ctx, self.target, self.acked)
        await pool.record(True)
        await asyncio.sleep(max(0.0, until - time.monotonic()))
        b = _snap(self.ctx, self.target, self.acked)
        await pool.record(False)
        await send_task
        if self.inflight:
            await asyncio.wait(list(self.inflight), timeout=10)
        # Let queued deliveries arrive before the next phase (bounded).
        drain_until = time.monotonic() + 5
        while self.fan and self.outstanding() > 0 and time.monotonic() < drain_until:
            await asyncio.sleep(0.01)
        collected = await pool.collect()
        metrics = _window_metrics(a, b)
        metrics["latency_ms"] = percentiles(collected["latencies"])
        metrics["publish_errors"] = self.pub.errors + self.failed
        metrics["connections_lost"] = collected["lost"]
        if self.pub.first_error:
            metrics["first_error"] = self.pub.first_error
        if self.fan:
            metrics["undelivered_after_drain"] = max(0, self.outstanding())
        return metrics


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
    return opened


def _status(metrics: dict[str, Any]) -> tuple[str, str]:
    notes = []
    if metrics.get("publish_errors"):
        notes.append(f"{metrics['publish_errors']} publish errors ({metrics.get('first_error', '')[:120]})")
    if metrics.get("connections_lost"):
        notes.append(f"{metrics['connections_lost']} connections lost")
    return ("failed" if notes else "ok"), "; ".join(notes)


def _core_metrics(a: dict[str, float] | None, b: dict[str, float] | None, dt: float) -> dict[str, float]:
    if a is None or b is None or dt <= 0:
        return {}
    return {
        "server_core_busy": round((b["busy"] - a["busy"]) / dt, 3),
        "server_core_softirq": round((b["softirq"] - a["softirq"]) / dt, 3),
    }


async def _settle_rss(pid: int, seconds: float = 1.0) -> int:
    await asyncio.sleep(seconds)
    return rss_bytes(pid)


# ---- scenarios -------------------------------------------------------------------------------------


async def fanout(ctx: Context, target: RunningTarget, subscribers: int) -> list[Row]:
    sizes = ctx.sizes
    channel = target.channel("bench:fanout")
    rss0 = await _settle_rss(target.pid, 0.5)
    opened = await _connect(ctx, _spec(ctx, target, channel, subscribers))
    await asyncio.sleep(1.0)
    rss1 = rss_bytes(target.pid)
    pub = await target.publisher(connections=4)
    common = {
        "rss_mb": round(rss1 / 2**20, 1),
        "rss_kb_per_conn": round((rss1 - rss0) / 1024 / subscribers, 2),
        "connect_wall_s": round(opened["wall_s"], 3),
    }
    rows = []
    try:
        rate = max(1.0, sizes.fanout_fixed_deliveries / subscribers)
        phase = _Phase(ctx, target, pub, lambda _: channel, subscribers)
        m = await phase.run(lambda until: phase.fixed_rate(rate, 1, until))
        params = {"subscribers": subscribers, "publishes_per_s": round(rate, 2)}
        rows.append(Row(target.name, "fanout", "fixed-rate", params, {**m, **common}, *_status(m)))
        ctx.log(f"    fixed-rate {_brief(m)}")
        phase = _Phase(ctx, target, pub, lambda _: channel, subscribers)
        m = await phase.run(lambda until: phase.max_rate(1, 8, sizes.inflight_deliveries, until))
        params = {"subscribers": subscribers, "inflight_deliveries": max(sizes.inflight_deliveries, 2 * subscribers)}
        rows.append(Row(target.name, "fanout", "max-rate", params, {**m, **common}, *_status(m)))
        ctx.log(f"    max-rate   {_brief(m)}")
    finally:
        await pub.close()
    return rows


async def channels(ctx: Context, target: RunningTarget, n: int) -> list[Row]:
    sizes = ctx.sizes
    fmt = target.channel("tenant:{i}:events")
    names = [fmt.format(i=i) for i in range(n)]
    rss0 = await _settle_rss(target.pid, 0.5)
    await _connect(ctx, _spec(ctx, target, fmt, n))
    await asyncio.sleep(1.0)
    rss1 = rss_bytes(target.pid)
    common = {"rss_mb": round(rss1 / 2**20, 1), "rss_kb_per_conn": round((rss1 - rss0) / 1024 / n, 2)}
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
        params = {"connections": n, "batch": sizes.api_batch, "inflight_deliveries": sizes.inflight_deliveries}
        rows.append(Row(target.name, "channels", "max-rate", params, {**m, **common}, *_status(m)))
        ctx.log(f"    max-rate   {_brief(m)}")
    finally:
        await pub.close()
    return rows


async def idle(ctx: Context, target: RunningTarget, n: int) -> list[Row]:
    window = ctx.sizes.idle_window
    rss0 = await _settle_rss(target.pid, 1.0)
    channel = target.channel("tenant:{i}:events")
    await _connect(ctx, _spec(ctx, target, channel, n))
    await asyncio.sleep(2.0)
    rss1 = rss_bytes(target.pid)
    core0 = cpu_times(ctx.server_cpus) if ctx.server_cpus else None
    cpu0, t0 = cpu_seconds(target.pid), time.monotonic()
    await asyncio.sleep(window)
    cpu1, t1 = cpu_seconds(target.pid), time.monotonic()
    core1 = cpu_times(ctx.server_cpus) if ctx.server_cpus else None
    rss2 = rss_bytes(target.pid)
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
        **_core_metrics(core0, core1, t1 - t0),
    }
    ctx.log(f"    {m['rss_kb_per_conn']} KB/conn, {m['cpu_us_per_conn_s']} µs CPU per conn per s")
    return [Row(target.name, "idle", "idle", {"connections": n, "window_s": window}, m, *_status(m))]


async def storm(ctx: Context, target: RunningTarget, n: int) -> list[Row]:
    spec = _spec(ctx, target, target.channel("tenant:{i}:events"), n, concurrency=ctx.sizes.storm_concurrency)
    spec.sample_every = 0
    await ctx.pool.prepare(spec)
    await asyncio.sleep(0.5)
    cpu0, client0 = cpu_seconds(target.pid), self_cpu_seconds() + sum(cpu_seconds(p) for p in ctx.pool.pids)
    core0 = cpu_times(ctx.server_cpus) if ctx.server_cpus else None
    t0 = time.monotonic()
    opened = await ctx.pool.open()
    t1 = time.monotonic()
    core1 = cpu_times(ctx.server_cpus) if ctx.server_cpus else None
    cpu1, client1 = cpu_seconds(target.pid), self_cpu_seconds() + sum(cpu_seconds(p) for p in ctx.pool.pids)
    ok, dt = opened["ok"], t1 - t0
    m = {
        "connections": n,
        "ok": ok,
        "failed": opened["failed"],
        "connects_per_s": round(ok / dt, 1),
        "cpu_us_per_connect": round((cpu1 - cpu0) * 1e6 / ok, 2) if ok else None,
        "server_cpu_util": round((cpu1 - cpu0) / dt, 3),
        "client_cpu_util": round((client1 - client0) / dt, 3),
        "wall_s": round(dt, 3),
        "rss_mb": round(rss_bytes(target.pid) / 2**20, 1),
        **_core_metrics(core0, core1, dt),
    }
    status, note = ("ok", "") if not opened["failed"] else ("failed", f"{opened['failed']} failed: {opened['errors']}")
    ctx.log(f"    {m['connects_per_s']} connects/s, {m['cpu_us_per_connect']} µs CPU each")
    params = {"connections": n, "concurrency": ctx.sizes.storm_concurrency * ctx.pool.size}
    return [Row(target.name, "storm", "connect+subscribe", params, m, status, note)]


async def api(ctx: Context, target: RunningTarget, _: int) -> list[Row]:
    sizes = ctx.sizes
    rows = []
    for phase_name, batch, lanes, conns in (
        ("single", 1, sizes.api_lanes, 8),
        ("batch", sizes.api_batch, 8, 4),
    ):
        pub = await target.publisher(connections=conns)
        try:
            phase = _Phase(ctx, target, pub, lambda k: f"bench:api{k % 1000}", 0)
            m = await phase.run(lambda until, b=batch, ln=lanes, p=phase: p.unacked_only(b, ln, until))
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
        "api": [(0, api)],
    }
    return table[name]


def applicable(name: str, target: Target) -> str | None:
    """None when ``target`` can run scenario ``name``, else why not."""
    if name == "api" and not target.has_api:
        return "no Centrifugo-compatible HTTP publish API"
    return None


def time_budget(name: str, sizes: Sizes, size: int) -> float:
    """Upper bound for one scenario run, after which it is abandoned."""
    phases = sizes.warmup + sizes.window + 20
    return {
        "fanout": 2 * phases + 60 + size / 200,
        "channels": 2 * phases + 60 + size / 200,
        "idle": sizes.idle_window + 60 + size / 200,
        "storm": 60 + size / 50,
        "api": 2 * phases + 30,
    }[name]
