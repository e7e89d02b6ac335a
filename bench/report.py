"""Write docs/benchmarks.md (tables) and PNG charts from a result file of ``python -m bench run``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench.targets import REPO

CHARTS = REPO / "bench" / "results" / "charts"
CLIENT_BOUND = 0.9  # load-generator CPU share above which a row is marked as limited by the load generator

Row = dict[str, Any]


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _lat(row: Row, key: str) -> Any:
    return (row["metrics"].get("latency_ms") or {}).get(key)


def _ok(rows: Iterable[Row], scenario: str, phase: str | None = None, **params: Any) -> list[Row]:
    out = []
    for r in rows:
        if r["scenario"] != scenario or r["status"] == "skipped" or r["phase"] == "-":
            continue
        if phase is not None and r["phase"] != phase:
            continue
        if any(r["params"].get(k) != v for k, v in params.items()):
            continue
        out.append(r)
    return out


def _mark(row: Row) -> str:
    marks = ""
    util = row["metrics"].get("client_cpu_util")
    if util is not None and util >= CLIENT_BOUND:
        marks += " †"
    if row["status"] == "failed":
        marks += " ✗"
    return marks


def _other_load(m: dict[str, Any]) -> float | None:
    """Share of the server's core used by neither the server process nor softirq: a lower bound for what
    other processes took (softirq ticks are also charged to the process they interrupted)."""
    busy, own, soft = m.get("server_core_busy"), m.get("server_cpu_util"), m.get("server_core_softirq")
    if busy is None or own is None or soft is None:
        return None
    return max(0.0, busy - own - soft)


def _table(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)


def _ratio(a: Any, b: Any) -> str:
    if not a or not b:
        return "—"
    return f"{a / b:.2f}x"


# ---- charts ----------------------------------------------------------------------------------------


def _charts(result: dict[str, Any], directory: Path, docs_dir: Path) -> dict[str, str]:
    """Draw the charts; returns {name: path relative to docs/}. Empty when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    directory.mkdir(parents=True, exist_ok=True)
    rows = best_rows(result["rows"])
    targets = [t for t in result["targets"] if not result["targets"][t]["unavailable"]]
    made: dict[str, str] = {}

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        path = directory / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made[name] = os.path.relpath(path, docs_dir)

    def bars(ax: Any, groups: list[str], series: dict[str, list[float | None]], ylabel: str, log: bool) -> None:
        width = 0.8 / max(1, len(series))
        for k, (label, values) in enumerate(series.items()):
            xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(groups))]
            ax.bar(xs, [v or 0 for v in values], width, label=label)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(groups, rotation=20, ha="right")
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)

    sizes = result["sizes"]["fanout_subscribers"]
    fan = {
        f"{n:,} subscribers": {t: _first(_ok(rows, "fanout", "max-rate", subscribers=n), t) for t in targets}
        for n in sizes
    }
    if any(r for per in fan.values() for r in per.values()):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        cpu = {g: [_m(per.get(t), "cpu_us_per_delivery") for t in targets] for g, per in fan.items()}
        rate = {g: [_m(per.get(t), "deliveries_per_s") for t in targets] for g, per in fan.items()}
        bars(axes[0], targets, cpu, "server CPU µs per delivery (lower is better)", False)
        bars(axes[1], targets, rate, "deliveries/s, max rate (higher is better)", False)
        axes[0].legend()
        fig.suptitle("Fan-out to one channel, max rate")
        save(fig, "fanout")

    lat_rows = {
        f"{n:,}": {t: _first(_ok(rows, "fanout", "fixed-rate", subscribers=n), t) for t in targets} for n in sizes
    }
    if any(r for per in lat_rows.values() for r in per.values()):
        fig, ax = plt.subplots(figsize=(11, 4))
        series: dict[str, list[float | None]] = {}
        for g, per in lat_rows.items():
            series[f"p50, {g} subs"] = [_lat(per[t], "p50") if per.get(t) else None for t in targets]
            series[f"p99, {g} subs"] = [_lat(per[t], "p99") if per.get(t) else None for t in targets]
        bars(ax, targets, series, "publish → receive latency, ms (log)", True)
        ax.legend(fontsize=8)
        ax.set_title(f"Fan-out latency at a fixed {result['sizes']['fanout_fixed_deliveries']:,} deliveries/s")
        save(fig, "latency")

    idle = {t: _first(_ok(rows, "idle"), t) for t in targets}
    storm = {t: _first(_ok(rows, "storm"), t) for t in targets}
    chans = {t: _first(_ok(rows, "channels", "max-rate"), t) for t in targets}
    if any(idle.values()) or any(storm.values()) or any(chans.values()):
        fig, axes = plt.subplots(1, 3, figsize=(13, 4))
        bars(
            axes[0], targets, {"": [_m(idle.get(t), "rss_kb_per_conn") for t in targets]}, "KB RSS per idle conn", False
        )
        axes[0].set_title(f"Idle: {result['sizes']['idle_connections']:,} connections")
        bars(
            axes[1], targets, {"": [_m(storm.get(t), "connects_per_s") for t in targets]}, "connect+subscribe/s", False
        )
        axes[1].set_title(f"Connect storm: {result['sizes']['storm_connections']:,} connections")
        bars(
            axes[2], targets, {"": [_m(chans.get(t), "cpu_us_per_delivery") for t in targets]}, "CPU µs/delivery", False
        )
        axes[2].set_title(f"Many channels: {result['sizes']['channels']:,}, max rate")
        save(fig, "connections")
    return made


def _first(rows: list[Row], target: str) -> Row | None:
    return next((r for r in rows if r["target"] == target), None)


def _m(row: Row | None, key: str) -> Any:
    return None if row is None else row["metrics"].get(key)


# ---- markdown --------------------------------------------------------------------------------------

INTRO = """\
# Benchmarks

Measured throughput, CPU cost, latency and memory of neoevents against the reference Centrifugo, nats-server's
WebSocket listener and minimal "floor" broadcasters, all driven by the same load generator on the same
machine. This page is generated by `python -m bench report` from the result file named below; the text
around the tables lives in `bench/report.py`.

## How to run

```bash
make bench                                    # every scenario and target at the sizes below (~20 min)
.venv/bin/python -m bench run --quick         # tiny sizes, a few seconds per target
.venv/bin/python -m bench run --scenarios fanout,idle --targets neoevents,centrifugo --fanout 1000,10000
.venv/bin/python -m bench report              # rewrite this page from the newest full result file
```

Results go to `bench/results/run-<UTC time>.json` (`--quick` runs get a `-quick` suffix and are not used
for this page unless named). The bench extra (`pip install -e '.[bench]'`) adds picows (a floor) and
matplotlib (the charts). The Centrifugo binary comes from `make centrifugo`, nats-server from
`make deps-system`, Node's `ws` from `make deps-node`; a target that is missing is reported as skipped.

## Method

- **Pinning.** The server runs alone on one core; the load generator (worker processes and the publisher)
  shares the other. Go's runtime sizes itself from that affinity (GOMAXPROCS=1), so every server has exactly
  one core. Deliveries/s are therefore *one-core* figures; rows where the load generator used ≥ 90% of its
  core are marked **†** — there the server had spare CPU and the rate is a floor of what it can do, while
  CPU per delivery is still a fair cost figure.
- **Load generator.** Worker processes on uvloop with raw `asyncio.Protocol` WebSocket clients, spread over
  source addresses 127.0.0.2-9. Each connection is set up with the target's real protocol — for neoevents and
  Centrifugo a Centrifugo JSON `connect` with its own HS256 token (user `u<i>`) and a `subscribe` — and then
  deliveries are counted on the raw byte stream without parsing frames. ~256 connections per run also read
  the send timestamp embedded in each ~100-byte payload for publish → receive latency. Pings are answered.
- **Publishing.** neoevents and Centrifugo: the HTTP server API (`/api/publish`, or `/api/batch` with 100
  publications per request) over keep-alive connections with pipelined, concurrent requests. nats-server:
  `PUB` on its client port. Floors: frames on a `/pub` WebSocket.
- **Fixed-rate phases** publish on a timer (latency at a moderate load). **Max-rate phases** are a closed
  loop that keeps at most 40,000 deliveries (or two publications, if larger) outstanding, so the rate is the
  one the server sustains with bounded queues; their latency includes that queueing.
- **CPU** is the server process's utime+stime from `/proc/<pid>/stat` across the measured window divided by
  what was delivered in it, so it includes receiving the publications. This kernel accounts CPU time by
  tick without separate IRQ time, so softirq work (loopback TCP) is charged to whatever process was running
  when it happened: mostly the server's own sends, and work deferred to ksoftirqd is charged to no server.
  The *softirq* column is the softirq share of the server's core; *other load* is core busy - server -
  softirq, a lower bound for what other processes took from the server's core. This machine is shared:
  when other load is high the server got less than a core, and its rate and latency in that row suffer
  while CPU per delivery stays comparable. **RSS** is `/proc/<pid>/statm`;
  RSS per connection is (RSS with the connections - RSS before them) / connections.
- Each target/scenario gets a fresh server. Warm-up, then the measured window (sizes below).
- Floors speak no protocol and check nothing: subscribers connect to `/sub/<channel>` and are subscribed.
  nats-server needs no token either. Only neoevents and Centrifugo verify a JWT per connection.
"""

READING = """\
## Reading the tables

- **Per-send cost dominates.** On this virtual machine one `send()` of a small frame to a loopback socket costs
  the sender several microseconds of kernel time, and the receiver as much again. Whatever writes one frame per
  syscall pays that per delivery: the floors do (they write each frame as it comes), and at a low fixed rate
  every server does, because there is nothing to batch. That is why CPU per delivery is 8-20 µs for everyone in
  the fixed-rate rows and why the floors are *not* the cheapest in the max-rate rows: neoevents queues frames
  per connection and writes them once per event-loop iteration, Centrifugo and nats-server batch in their
  per-connection writers, so under load several frames share one syscall.
- **Fixed-rate fan-out latency is the time to write one publication to every socket.** With N subscribers
  the last one is served N sends after the first, so p50 is roughly half of N times the per-send cost: about
  5-15 ms at 1,000 subscribers and 80-200 ms at 10,000 on one core here, for every target.
- **Max-rate latency** includes the closed loop's queue (up to 40,000 deliveries in flight), so it measures
  queueing, not the server's responsiveness; compare rates and CPU there.
- **Many channels** cannot batch across connections: each publication is one delivery to one socket, so the
  publish path (HTTP API with 100 publications per batch request) is a large share of neoevents' and
  Centrifugo's cost, while the floors and NATS receive publications over a WebSocket or TCP stream.
- **Floors** are protocol-free and unauthenticated; they bound what a stack costs, not what a real-time
  server must cost.

"""

PUBLISHED = """\
## Centrifugo's published figures (not measured here)

These come from Centrifugo's own publications, on other hardware and at a scale this machine cannot
reproduce. They are context, not a comparison with the tables above.

| figure | value |
|---|---|
| Million-connection benchmark (2020) | 1M WebSocket connections on 20 pods (~40 CPU), 2 channels each |
| Deliveries in that benchmark | ~500k messages/s (28M per minute), ~100-byte payloads |
| Latency in that benchmark | p99 200 ms |
| Memory in that benchmark | 27 GB RAM, ~27-30 KB per connection |
| Idle connection cost (2026) | 27 KB per connection by default, 11.6 KB with the commercial edition's tuning |
| FAQ | 30-50 KB per connection |
| Redis engine | one Redis instance ~650k pub/sub messages/s; 1.7M publications/s with the rueidis-based engine |
"""


def _targets_table(result: dict[str, Any]) -> str:
    lines = []
    for name, info in result["targets"].items():
        lines.append(
            [
                f"`{name}`",
                info["description"],
                (info["unavailable"] and f"skipped: {info['unavailable']}") or info["version"].replace("\n", " "),
            ]
        )
    return _table(["target", "what", "version"], lines)


def _sizes_text(result: dict[str, Any]) -> str:
    s = result["sizes"]
    return (
        f"Fan-out: {', '.join(f'{n:,}' for n in s['fanout_subscribers'])} subscribers, fixed rate "
        f"{s['fanout_fixed_deliveries']:,} deliveries/s. Many channels: {s['channels']:,} connections, fixed rate "
        f"{s['channels_fixed_rate']:,} publications/s. Idle: {s['idle_connections']:,} connections for "
        f"{s['idle_window']:g} s. Connect storm: {s['storm_connections']:,} connections, "
        f"{s['storm_concurrency']} handshakes in flight per worker x {result.get('workers', '?')} workers. Warm-up "
        f"{s['warmup']:g} s, window {s['window']:g} s, payload {s['payload_size']} bytes."
    )


def _repeat_text(result: dict[str, Any]) -> str:
    n = result.get("repeat", 1)
    if n <= 1:
        return ""
    return (
        f" Every measurement was repeated {n} times, interleaved across targets; each table shows the repeat "
        "with the least other load on the server's core (all repeats are in the result file)."
    )


def _publish_table(rows: list[Row]) -> str:
    header = [
        "target", "phase", "deliveries/s", "CPU µs/delivery", "p50 ms", "p99 ms", "p99.9 ms",
        "server CPU", "softirq", "other load", "client CPU", "RSS MB", "KB/conn",
    ]  # fmt: skip
    lines = []
    for r in rows:
        m = r["metrics"]
        lines.append(
            [
                f"`{r['target']}`{_mark(r)}",
                r["phase"],
                _fmt(m.get("deliveries_per_s")),
                _fmt(m.get("cpu_us_per_delivery"), 2),
                _fmt(_lat(r, "p50"), 2),
                _fmt(_lat(r, "p99"), 2),
                _fmt(_lat(r, "p999"), 2),
                _fmt(m.get("server_cpu_util"), 2),
                _fmt(m.get("server_core_softirq"), 2),
                _fmt(_other_load(m), 2),
                _fmt(m.get("client_cpu_util"), 2),
                _fmt(m.get("rss_mb")),
                _fmt(m.get("rss_kb_per_conn")),
            ]
        )
    return _table(header, lines)


def _summary(rows: list[Row], result: dict[str, Any]) -> str:
    """neoevents / Centrifugo per scenario and metric."""
    pairs: list[tuple[str, Callable[[], tuple[Row | None, Row | None]], str, bool]] = []

    def pair(scenario: str, phase: str | None, **params: Any) -> Callable[[], tuple[Row | None, Row | None]]:
        def get() -> tuple[Row | None, Row | None]:
            found = _ok(rows, scenario, phase, **params)
            return _first(found, "neoevents"), _first(found, "centrifugo")

        return get

    for n in result["sizes"]["fanout_subscribers"]:
        pairs += [
            (f"fan-out {n:,}: deliveries/s (max rate)", pair("fanout", "max-rate", subscribers=n),
             "deliveries_per_s", True),
            (f"fan-out {n:,}: CPU µs per delivery (max rate)", pair("fanout", "max-rate", subscribers=n),
             "cpu_us_per_delivery", False),
            (f"fan-out {n:,}: p99 latency ms (fixed rate)", pair("fanout", "fixed-rate", subscribers=n),
             "p99", False),
        ]  # fmt: skip
    pairs += [
        ("many channels: deliveries/s (max rate)", pair("channels", "max-rate"), "deliveries_per_s", True),
        ("many channels: CPU µs per delivery (max rate)", pair("channels", "max-rate"), "cpu_us_per_delivery", False),
        ("many channels: p99 latency ms (fixed rate)", pair("channels", "fixed-rate"), "p99", False),
        ("idle: KB per connection", pair("idle", None), "rss_kb_per_conn", False),
        ("idle: CPU µs per connection per second", pair("idle", None), "cpu_us_per_conn_s", False),
        ("connect storm: connect+subscribe/s", pair("storm", None), "connects_per_s", True),
        ("connect storm: CPU µs per connection", pair("storm", None), "cpu_us_per_connect", False),
        ("HTTP API: publishes/s, single", pair("api", "single"), "publishes_per_s", True),
        ("HTTP API: CPU µs per publish, single", pair("api", "single"), "cpu_us_per_publish", False),
        ("HTTP API: publishes/s, batch", pair("api", "batch"), "publishes_per_s", True),
        ("HTTP API: CPU µs per publish, batch", pair("api", "batch"), "cpu_us_per_publish", False),
    ]
    lines = []
    for label, get, key, higher_better in pairs:
        neo, cen = get()
        if neo is None and cen is None:
            continue
        latency = key in ("p50", "p99", "p999")
        a = _lat(neo, key) if latency and neo else _m(neo, key)
        b = _lat(cen, key) if latency and cen else _m(cen, key)
        better = "higher is better" if higher_better else "lower is better"
        marks = " †" if any(r is not None and "†" in _mark(r) for r in (neo, cen)) else ""
        lines.append([label + marks, _fmt(a, 2), _fmt(b, 2), _ratio(a, b), better])
    return _table(["metric", "neoevents", "Centrifugo", "neoevents / Centrifugo", ""], lines)


def best_rows(rows: list[Row]) -> list[Row]:
    """One row per target/scenario/phase/parameters: of repeated measurements, the one whose window had the
    least other load on the server's core (every repeat stays in the result file)."""
    chosen: dict[tuple[str, str, str, str], Row] = {}
    for row in rows:
        params = {k: v for k, v in row["params"].items() if k != "repeat"}
        key = (row["target"], row["scenario"], row["phase"], json.dumps(params, sort_keys=True))
        best = chosen.get(key)
        if best is None or _rank(row) < _rank(best):
            chosen[key] = row
    return list(chosen.values())


def _rank(row: Row) -> tuple[int, float]:
    other = _other_load(row["metrics"])
    return (0 if row["status"] == "ok" else 1, other if other is not None else 0.0)


def render(result: dict[str, Any], source: Path, charts: dict[str, str]) -> str:
    rows = best_rows(result["rows"])
    m = result["machine"]
    parts = [INTRO]
    parts.append(
        f"## This run\n\nResult file: `{os.path.relpath(source, REPO)}`, started {result['started']}"
        f"{' (quick mode)' if result['quick'] else ''}. Machine: {m['cpus']} cores ({m['cpu_model']}), Linux "
        f"{m['kernel']}, Python {m['python']}; server pinned to CPU {m['server_cpus']}, load generator to "
        f"{m['client_cpus']}. Load average before/after: {m.get('loadavg_before', '?')} / "
        f"{m.get('loadavg_after', '?')}.{_repeat_text(result)}\n\n{_sizes_text(result)}\n\n{_targets_table(result)}\n"
    )
    parts.append(
        "## neoevents compared with Centrifugo\n\nSame configuration, same load generator, same core. "
        "A ratio above 1 means neoevents has the larger number (good for rates, bad for costs and latency). "
        "† = load generator at ≥ 90% of its core in that row.\n\n" + _summary(rows, result) + "\n"
    )
    fan_parts = []
    for n in result["sizes"]["fanout_subscribers"]:
        found = _ok(rows, "fanout", None, subscribers=n)
        if found:
            fan_parts.append(f"### {n:,} subscribers\n\n{_publish_table(found)}\n")
    if fan_parts:
        chart = ""
        if "fanout" in charts:
            chart += f"![fan-out CPU and throughput]({charts['fanout']})\n\n"
        if "latency" in charts:
            chart += f"![fan-out latency]({charts['latency']})\n\n"
        parts.append(
            "## Fan-out: one channel, many subscribers\n\nOne publication goes to every subscriber of "
            "`bench:fanout`. Fixed rate: a timer publishes enough for the configured deliveries/s; max rate: "
            "closed loop (see Method).\n\n" + chart + "\n".join(fan_parts)
        )
    found = _ok(rows, "channels")
    if found:
        n = result["sizes"]["channels"]
        parts.append(
            f"## Many channels: {n:,} connections, each on its own `tenant:<i>:events`\n\nPublications go "
            f"round-robin over all channels, {result['sizes']['api_batch']} per API batch request (per write "
            "for NATS and the floors), so every publication is one delivery and the publish path is part of "
            "the cost.\n\n" + _publish_table(found) + "\n"
        )
    found = _ok(rows, "idle")
    if found:
        lines = [
            [f"`{r['target']}`{_mark(r)}", _fmt(r["metrics"].get("connections")),
             _fmt(r["metrics"].get("rss_baseline_mb")), _fmt(r["metrics"].get("rss_mb")),
             _fmt(r["metrics"].get("rss_kb_per_conn")), _fmt(r["metrics"].get("cpu_us_per_conn_s"), 2),
             _fmt(r["metrics"].get("server_cpu_util"), 3), _fmt(_other_load(r["metrics"]), 2)]
            for r in found
        ]  # fmt: skip
        chart = f"![idle, connect storm and channels]({charts['connections']})\n\n" if "connections" in charts else ""
        parts.append(
            "## Idle connections\n\nConnected, authenticated (where the target has auth) and subscribed; "
            "nothing published. CPU is what the server spends keeping them (pings, timers) over the window.\n\n"
            + chart
            + _table(
                ["target", "connections", "RSS before MB", "RSS with conns MB", "KB per conn",
                 "CPU µs per conn per s", "server CPU", "other load"],
                lines,
            )
            + "\n"
        )  # fmt: skip
    found = _ok(rows, "storm")
    if found:
        lines = [
            [f"`{r['target']}`{_mark(r)}", _fmt(r["metrics"].get("ok")), _fmt(r["metrics"].get("connects_per_s")),
             _fmt(r["metrics"].get("cpu_us_per_connect")), _fmt(r["metrics"].get("server_cpu_util"), 2),
             _fmt(_other_load(r["metrics"]), 2), _fmt(r["metrics"].get("client_cpu_util"), 2)]
            for r in found
        ]  # fmt: skip
        parts.append(
            "## Connect storm\n\nNew connections as fast as the load generator opens them: TCP connect, "
            "WebSocket upgrade, and for neoevents/Centrifugo a `connect` with a fresh JWT per user plus a "
            "`subscribe`; counted when the subscribe reply (or the 101 for floors, the PONG for NATS) arrives.\n\n"
            + _table(["target", "connections", "connect+subscribe/s", "CPU µs per connection", "server CPU",
                      "other load", "client CPU"], lines)
            + "\n"
        )  # fmt: skip
    found = _ok(rows, "api")
    if found:
        lines = [
            [f"`{r['target']}`{_mark(r)}", r["phase"], _fmt(r["params"].get("batch")),
             _fmt(r["params"].get("concurrent_requests")), _fmt(r["metrics"].get("publishes_per_s")),
             _fmt(r["metrics"].get("cpu_us_per_publish"), 2), _fmt(r["metrics"].get("server_cpu_util"), 2),
             _fmt(_other_load(r["metrics"]), 2), _fmt(r["metrics"].get("client_cpu_util"), 2)]
            for r in found
        ]  # fmt: skip
        parts.append(
            "## HTTP publish API\n\n`POST /api/publish` (single) and `POST /api/batch` to channels without "
            "subscribers (1,000 distinct names), so this is the cost of the API itself.\n\n"
            + _table(["target", "mode", "publications per request", "requests in flight", "publishes/s",
                      "CPU µs per publish", "server CPU", "other load", "client CPU"], lines)
            + "\n"
        )  # fmt: skip
    problems = [r for r in rows if r["status"] != "ok"]
    if problems:
        lines = [[f"`{r['target']}`", r["scenario"], r["phase"], r["status"], r["note"][:200]] for r in problems]
        parts.append(
            "## Skipped and failed\n\n" + _table(["target", "scenario", "phase", "status", "why"], lines) + "\n"
        )
    parts.append(READING)
    parts.append(PUBLISHED)
    return "\n".join(parts)


def write_report(result: dict[str, Any], source: Path, docs: Path) -> None:
    # The repository's page uses bench/results/charts; a report written elsewhere gets its own charts beside it.
    directory = CHARTS if docs.resolve() == (REPO / "docs" / "benchmarks.md").resolve() else docs.parent / "charts"
    charts = _charts(result, directory, docs.parent)
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(render(result, source, charts))
