"""Write docs/benchmarks.md (tables) and PNG charts from a result file of ``python -m bench run``."""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench.targets import REPO

CHARTS = REPO / "bench" / "results" / "charts"
CLIENT_BOUND = 0.9  # load-generator CPU share above which a row is marked as limited by the load generator
PEERS = ("socketio-node", "python-socketio", "python-socketio-redis", "django-channels")

# Why neoevents is behind Centrifugo in a scenario, written from a final run on a quiet machine (the figures
# move while the server is being optimised). Keys are scenario names ("fanout", "channels", "idle", "storm",
# "recovery", "api"); each non-empty entry is printed under the comparison with Centrifugo.
BEHIND_NOTES: dict[str, str] = {
    # Scenario -> why neoevents is behind Centrifugo there and what would close it. Empty: in the final run
    # neoevents is ahead in every row.
}

# Printed under the targets table, written from the final run: what stands between neoevents and any target it
# does not meet, and what would close it.
TARGET_NOTES = """\
### Every target met here; three were missed on the earlier machine

Every target is met in this run. It ran on another kind of two-core machine (Intel Xeon) than every earlier run
(AMD EPYC), and on it every server costs less: neoevents' connect storm 70 against 220 µs per connection,
Centrifugo's 123 against 334 µs, the picows floor's 79 against 277 µs; at 10,000 subscribers x 10/s a write to one
subscriber costs the floors about 6 µs here against 9.5-12 µs there. The last full run on that machine
(`bench/results/run-20261207T041220.json`, revision 500277b, with the same server code as this one) missed three
targets, and those figures are what a machine like it will show:

- **Fan-out p99 at 10,000 subscribers x 10/s**: 159.8 ms there (227 and 206 ms in its other measurements), at
  9.57 µs of server CPU per delivery; 68.4 ms here at 6.08 µs, where the picows floor measures 60.6 ms. The row
  is one write system call per subscriber per publication: sampled there, three quarters of the server's core
  was inside `write` (the TCP send path, then loopback delivering the packet to the receiver's socket, which it
  runs inside the sender's system call), so one fan-out to 10,000 took 80 to 140 ms of the core depending on
  the hour, and a delivery's latency is where its subscriber falls in that sequence. No server kept the rate
  with a p99 under 100 ms there (Node's `ws` floor: 452 ms). What closes it on such a machine is more than one
  core for one channel's writes: `serve --workers N` on the Redis engine spreads a channel's subscribers over N
  processes; the suite gives every server one core.
- **Connect + subscribe ≥ 5,000/s**: 4,483/s at 220 µs per connection there (single storms ranged from 3,843
  to 5,806/s with the hour); 13,514/s at 70 µs here. There neoevents did the handshake, the token and the
  subscription for what the picows floor spent on the handshake alone (195-277 µs); about 30% of it was the
  kernel's accept, reads and writes.
- **HTTP API batch ≥ 200,000/s**: 184,340/s there, bound by the load generator, which then built every request
  anew; measured again with requests prepared once, 190,934 and 221,945/s
  (`bench/results/checks/api-neoevents-centrifugo-20261207T055252.json`), with eight requests in flight that
  left the server waiting 7-14% of the time (sixteen now). 780,644/s here.

The Redis engine's CPU against the memory engine's at 2,000 and 10,000 subscribers, 1.38x and 1.39x in that
run's table, compared rows from different rounds; as the ratio of the medians over the rounds, as computed now,
they were 1.15x and 1.17x there (1.00x and 0.98x here).
"""

Row = dict[str, Any]

# Earlier full runs for the before/after table (their neoevents rows), oldest first. CHANGES[k] lists what changed
# between BEFORE_RUNS[k] and the next run (the last entry: between the last earlier run and this one).
BEFORE_RUNS = (
    REPO / "bench" / "results" / "run-20261129T091822.json",
    REPO / "bench" / "results" / "run-20261129T113122.json",
    REPO / "bench" / "results" / "run-20261129T135020.json",
    REPO / "bench" / "results" / "run-20261129T155907.json",
    REPO / "bench" / "results" / "run-20261129T180704.json",
    REPO / "bench" / "results" / "run-20261129T184851.json",
    REPO / "bench" / "results" / "run-20261129T210225.json",
    REPO / "bench" / "results" / "run-20261129T222309.json",
    REPO / "bench" / "results" / "run-20261129T230301.json",
    REPO / "bench" / "results" / "run-20261130T003651.json",
    REPO / "bench" / "results" / "run-20261130T011525.json",
    REPO / "bench" / "results" / "run-20261130T024401.json",
    REPO / "bench" / "results" / "run-20261130T032612.json",
    REPO / "bench" / "results" / "run-20261130T050143.json",
    REPO / "bench" / "results" / "run-20261130T071906.json",
    REPO / "bench" / "results" / "run-20261130T081002.json",
    REPO / "bench" / "results" / "run-20261206T210208.json",
    REPO / "bench" / "results" / "run-20261206T234748.json",
    REPO / "bench" / "results" / "run-20261207T013155.json",
    REPO / "bench" / "results" / "run-20261207T041220.json",
)
_CHANGES_1 = """\
- **WebSocket fast path**: complete, final, masked data frames are unmasked (the `websockets` C helper) and
  delivered directly; the library's state machine is built only for a connection that sends anything else
  (control frames, fragments, split or invalid frames). Saves its construction (~15 µs) per connection and
  its memory, and its generator-based parser per client message.
- **Metrics as plain counters** exported by a collector at scrape time, instead of a locked `prometheus_client`
  child (and a histogram observation) per publication and API command: about a quarter of a batch
  publication's cost.
- **Batches decoded in one typed pass** by msgspec (command by command only when something is malformed) and
  publications on the memory engine made through plain calls, without a coroutine per command; the
  namespace's publish options built once.
- **Connection set-up**: client IDs formatted from batched OS randomness, the start-up objects frozen out of the
  garbage collector and a higher young-generation threshold, the peer address looked up only when needed.
"""
_CHANGES_2 = """\
- **Fan-out**: a connection with one frame queued keeps that frame as is (no list per connection per
  publication, so a fan-out to 10,000 no longer feeds the garbage collector 10,000 containers); the event
  loop reports a client over its queue limit (`pause_writing`) instead of a buffer-size call per write; the
  fan-out loop reuses the last frame while the frame format does not change.
- **Connection set-up**: a command frame is handled in the callback that received it (a task only once it has
  to wait, e.g. for Redis); the HTTP parser's reference cycle with its protocol is broken at the upgrade, so a
  connection is freed without the cycle collector; a closed client is released at once (the expiry heaps hold
  client IDs); a pre-keyed HMAC is copied per token and token headers are decoded and checked once; claims are
  plain structs; the handshake key is checked with one regular expression.
- **Redis engine**: the publications of a batch are one write to Redis and one list of replies (no task or
  future per publication).
- **Method**: the HTTP publisher of the max-rate fan-out phases keeps up to 64 requests in flight (8 before),
  so only the bound on outstanding deliveries limits it, as it limits the NATS and WebSocket publishers. More
  publications then arrive per event-loop iteration and share each write; Centrifugo's max-rate rows are
  measured the same way. The fan-out rows of the last column include this change.
"""
_CHANGES_3 = """\
- **HTTP API batch on the memory engine**: a plain publication by the trusted server (no tags, idempotency key
  or history skip) goes straight to the engine with the same checks and metric, without the call layers of
  the single-publication path: about 15% less CPU per batched publication.
- **Method**: the connect storm is driven by a compiled client (`bench/stormgen/`) instead of the Python
  workers, so that the client no longer bounds the rate (see "Connect storm" under the targets). Its figures
  are not directly comparable with the earlier runs': the Python workers saturated their core and answered
  the server in bursts, while the compiled client has idle time and answers each reply at once, so more of
  the server's writes wake a sleeping client, which on loopback is charged to the server.
"""
_CHANGES_4 = """\
- **Fan-out: channel batches.** The publications of one event-loop iteration to a channel with 8 or more
  subscribers (all of one frame format) go into one batch that every subscriber's queue refers to: after the
  first publication, each further one is a single append whatever the number of subscribers, and at the flush
  the batch is joined once and the same bytes are written to every subscriber. The batch closes as soon as a
  subscriber joins, leaves or is sent anything else, so no connection's order changes. It pays in the
  max-rate rows, where many publications share an iteration (at 2,000 subscribers, 1.72 -> 1.29-1.33 µs per
  delivery in checks before this run); at fixed rates, one publication per iteration, it changes nothing.
- **Merged frames**: the publications of such a batch share WebSocket frames (newline-joined JSON, up to 64 KiB
  a frame), as Centrifugo merges queued messages; fewer, larger frames for the client to parse (the load
  generator only counts messages, so its cost barely changes).
- Also in this revision, off the measured paths: cluster-wide limits on the Redis engine (only with rate
  limiting on, which the benchmark leaves off) and the order of a closing connection's last writes.
"""
_CHANGES_5 = """\
- **Flush held one iteration for channel batches**: when a channel batch is queued, the flush waits one more
  event-loop iteration (once, never twice in a row). Publications come from HTTP requests read in the previous
  iteration; those read meanwhile join the same batches, so each write to a subscriber carries about twice as
  many publications. In checks before this run: at 2,000 subscribers 1.23 -> 0.86-0.90 µs per delivery, at
  10,000 4.8 -> 2.8 µs, and the fixed-rate p99 at 10,000 x 10/s 177 -> 131 ms.
"""
_CHANGES_6 = """\
- **Method: live receivers.** Once set up, the load generator's sockets are read by a compiled receiver
  (`bench/receiver/`) instead of the Python workers, polling every 0.5 ms instead of sleeping in
  `epoll_wait` (see "Method"). The Python workers spent about 9 µs of their core per delivery, and at 10,000
  subscribers x 10/s they were the bound of the latency they reported (95% of their core in the last run).
  All targets' rows change with it; the client CPU column is the load generator's whole cost, receivers
  included.
- **Fan-out**: a channel batch queued for an idle connection costs one flusher call instead of four
  (in-process, the publish side went from 245 to 170 ns per subscriber). The measured revision also inlined
  the flush of a lone frame or batch; that made no measurable difference and was taken out after this run.
- Also in this revision, off the measured paths: a channel batch that no subscriber took (all of them closing)
  is not kept open.
- **The machine was slower on the day of this run**: rows whose path did not change (connect storm, recovery,
  HTTP API) cost 10-30% more server CPU than in the last run, and Centrifugo's connect storm went from 196 to
  276 µs per connection.
"""
_CHANGES_7 = """\
- No change on the measured paths: the flush of a lone frame or batch goes back to the one join helper (the
  hand-inlined copy in the last run's revision made no measurable difference).
- The suite gains a compiled floor, `floor-go` (see "Reading the tables").
"""
_CHANGES_8 = """\
- None: the same revision, run again. The difference between these two columns is this machine's run-to-run
  spread. Both runs met a slower machine than the run before them: Centrifugo's own cost was 328 and 347 µs
  per connection against 276 µs, and 9.7 and 9.4 µs per batched publication against 7.8 µs.
"""
_CHANGES_9 = """\
- **HTTP API batch**: a publication by the server into a namespace without publish rules finds its namespace and
  engine options in a per-channel table (up to 4,096 channels) instead of resolving them each time, and each run
  of such publications is counted and timed once instead of per publication; the memory engine reads its clock
  only for history or idempotency. In-process, the Python cost per batched publication about halved (5.0 -> 2.5
  µs, interleaved checks).
- **HTTP**: requests are answered in the callback that parsed them (a task only when the handler has to wait),
  the answers made in one loop iteration leave in one write (pipelined requests used to get a write each), and a
  single publication into the memory engine skips the coroutine layers. Pipelined requests arriving in one
  large read no longer get 431 (the head-size bound counted the whole read).
"""
_CHANGES_10 = """\
- None: the same revision, run again; the difference between these two columns is this machine's run-to-run
  spread.
"""
_CHANGES_11 = """\
- **HTTP API batch**: the fast path for the server's publications remembers namespaces instead of channels (the
  per-channel table started over every 4,096 channels, so with 10,000 rotating channels most lookups missed),
  and it now covers the Redis engine too: plain publications skip the per-publication checks and options, a
  pipelined batch is counted per namespace in one step, and the `PUBLISH` of short data is encoded without
  calls. On the publishing node of the Redis pair this took the many-channels cost from 7.4 to 5.7 µs per
  publication (a check outside the full runs).
- **Method, connect storms**: the connect-storm client polls its sockets instead of sleeping in the Go poller
  (each server write woke it, on loopback inside the server's system call: interleaved checks gave 235, 225 and
  243 against 280, 258 and 258 µs per neoevents connection), and it now drives the reconnect-with-recovery storm
  too, which the Python workers drove at their core's limit. Storm figures from here on are not comparable with
  the earlier columns.
- **Method, latency**: p50/p99 are publish -> arrival at the subscriber's socket (kernel receive timestamps)
  instead of publish -> read by the load generator; the earlier columns are the latter. The page's tables give
  both for this run.
"""
_CHANGES_12 = """\
- **HTTP API batch**: the fast path remembers the first 4,096 channels one by one again (a dictionary hit), on
  top of the namespaces: with the namespace lookup alone, a rotation over 1,000 channels cost about 0.5 µs more
  per publication in-process. Past the bound, channels take the namespace path and nothing is evicted.
"""
_CHANGES_13 = """\
- None on the measured paths. Off them: a closing connection unsubscribes its channels without a task per
  channel (closes fall outside the measured windows); the Redis engine's table of encoded `PUBLISH` heads stops
  growing when full instead of starting over (it holds the bench's 10,000 channels either way), and the
  encoding of short data moved into the codec (the same bytes).
- **Method**: neoevents is measured again after the other targets of each scenario size (see "Order and drift"
  and the drift table).
"""
_CHANGES_14 = """\
- **Fan-out**: a flush of more than 1,024 connections is written a slice (1,024 connections) per loop
  iteration. Between slices the loop reads and runs what has arrived, and a publication read meanwhile joins
  the queues of the subscribers not yet written, who get both in one write: under load the batches grow by
  themselves. Alternated checks before the next run, fan-out to 10,000 at max rate: 2.95 and 2.88 -> 1.90 and 2.42
  µs per delivery; the fixed-rate p99 153 and 153 -> 119 and 148 ms; 1,000, 2,000 and many channels unchanged
  within noise.
- Off the measured paths: a client's close frame is answered without the WebSocket state machine; the
  housekeeping tick scans only the deadlines that are due; the per-channel tables of the API fast path and of
  the Redis engine start over when full, at 16,384 channels (the bench's 10,000 fit either way).
- **Method**: each target runs three connect storms on its server, and its row is the one with the median
  rate (the earlier columns: one storm). In that run a later storm that failed failed the row (python-socketio's
  second storm on the same server did not finish its set-ups within 20 s).
"""
_CHANGES_15 = """\
- **Fan-out**: replies, HTTP responses and single frames are written before the connections whose output
  starts with a channel batch (at most half a slice while batches wait), so the answer to an HTTP publication
  into a big channel leaves with the first slice instead of after the whole fan-out. Not measured by the
  scenarios here, whose publishers keep many requests in flight; a caller publishing one request at a time into
  10,000 subscribers went from 8.8 to 50.6 publications/s (response p50 117 -> 18 ms, 11.0 -> 1.9 µs of server
  CPU per delivery, its publications now sharing writes), into 2,000 from 52-59 to 95/s.
- **Method**: a connect-storm row is the median of the storms that succeeded; a later storm that failed is
  named in the row's note.
"""
_CHANGES_16 = """\
- **Protobuf** (not exercised here: the scenarios speak JSON): replies are written straight from the reply
  structs, 2-4 µs each instead of 10-16; a `connect` + `subscribe` frame decodes in 9 µs instead of 15.
- **Method**: a connect-storm row notes the connections the server closed after their set-up in any of its
  storms, not only in the median one.
"""
_CHANGES_17 = """\
- **Connect storm**: a server listens with 16 sockets on its port (`SO_REUSEPORT`). libuv accepts one
  connection per listening socket per loop iteration, so with one socket a storm was taken one connection per
  iteration, with about 230 finished handshakes waiting in the accept queue; now an iteration accepts up to 16
  and their replies share the flusher's pass. In three alternated pairs of storms before this run: 13-20% less
  server CPU per connection, 16-26% more connections/s. A server started on a port already in use still fails.
- Connection tokens with only registered claims build their claims without looking for others (3.5 -> 1.8 µs).
- Not measured by the default targets: `serve --workers N` (several worker processes on one port, Redis
  engine); the `neoevents-workers2` target runs it.
"""
_CHANGES_18 = """\
- Nothing on the hot path: a server that cannot listen on its port now says so in one line and exits 1.
- **Method**: every scenario was measured twice for every target, the rounds interleaved (`--repeat 2`); each
  table shows, per row, the round with the least other load on the server's core.
"""
_CHANGES_19 = """\
- **HTTP API batch**: a batch made of publications only is decoded straight into them, each command a struct of
  one field (`publish`) instead of one with a field for each of the twelve methods that is then checked for
  exactly one: 0.63 -> 0.41 µs of decoding per publication, measured alone in alternation.
- **Method**: the Redis clusters (`neoevents-redis`, `centrifugo-redis`) now also take the connect storm and the
  reconnect-with-recovery storm (rows in those sections and in the comparison with Centrifugo).
"""
_CHANGES_20 = """\
- Nothing on the hot path.
- **Method**: the HTTP API scenario cycles through requests prepared once (building 100 fresh publications per
  request had bounded the load generator before the server), and its batch phase keeps 16 requests in flight
  instead of 8, with which the server waited for the next request 7-14% of the time. The Redis engine's CPU
  against the memory engine's is the ratio of each engine's median over the rounds.
- **Machine**: this run was made on another kind of machine (Intel Xeon) than every earlier run (AMD EPYC); its
  costs are not comparable with theirs.
"""
CHANGES = (
    _CHANGES_1,
    _CHANGES_2,
    _CHANGES_3,
    _CHANGES_4,
    _CHANGES_5,
    _CHANGES_6,
    _CHANGES_7,
    _CHANGES_8,
    _CHANGES_9,
    _CHANGES_10,
    _CHANGES_11,
    _CHANGES_12,
    _CHANGES_13,
    _CHANGES_14,
    _CHANGES_15,
    _CHANGES_16,
    _CHANGES_17,
    _CHANGES_18,
    _CHANGES_19,
    _CHANGES_20,
)


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


def _lat(row: Row | None, key: str) -> Any:
    """A publish -> receive latency percentile: until the deliveries reached the subscribers' sockets (the
    kernel's receive timestamps, taken by the live receiver), or in runs and rows without them, until the load
    generator read them."""
    if row is None:
        return None
    m = row["metrics"]
    return (m.get("arrival_latency_ms") or m.get("latency_ms") or {}).get(key)


def _read_lat(row: Row | None, key: str) -> Any:
    """A latency percentile until the load generator read the deliveries (its own wait included)."""
    return None if row is None else (row["metrics"].get("latency_ms") or {}).get(key)


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
    if row["metrics"].get("kept_up") is False:
        marks += " ‡"
    if row["status"] == "failed":
        marks += " ✗"
    return marks


def _fixed_rates(sizes: dict[str, Any]) -> dict[int, float]:
    """Fixed-rate publications/s per fan-out size (JSON keys are strings)."""
    rates = {int(k): float(v) for k, v in (sizes.get("fanout_fixed_rates") or {}).items()}
    fallback = sizes.get("fanout_fixed_deliveries") or 0
    return {n: rates.get(n) or max(1.0, fallback / n) for n in sizes["fanout_subscribers"]}


def _rounds(rates: Any) -> str:
    """The rates of a row's storms, in the order they ran ("" for results from before storms were repeated)."""
    if not isinstance(rates, list) or not rates:
        return ""
    return ", ".join(_fmt(rate) for rate in rates)


def _other_load(m: dict[str, Any]) -> float | None:
    """Share of the server's core used by neither the server process nor softirq: a lower bound for what
    other processes took (softirq ticks are also charged to the process they interrupted)."""
    busy, own, soft = m.get("server_core_busy"), m.get("server_cpu_util"), m.get("server_core_softirq")
    if busy is None or own is None or soft is None:
        return None
    return max(0.0, float(busy - own - soft))


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
        ax.set_xticklabels(groups, rotation=30, ha="right")
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)

    sizes = result["sizes"]["fanout_subscribers"]
    fixed = _fixed_rates(result["sizes"])
    fan = {
        f"{n:,} subscribers": {t: _first(_ok(rows, "fanout", "max-rate", subscribers=n), t) for t in targets}
        for n in sizes
    }
    if any(r for per in fan.values() for r in per.values()):
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
        cpu = {g: [_m(per.get(t), "cpu_us_per_delivery") for t in targets] for g, per in fan.items()}
        rate = {g: [_m(per.get(t), "deliveries_per_s") for t in targets] for g, per in fan.items()}
        bars(axes[0], targets, cpu, "server CPU µs per delivery, log (lower is better)", True)
        bars(axes[1], targets, rate, "deliveries/s, max rate, log (higher is better)", True)
        axes[0].legend()
        fig.suptitle("Fan-out to one channel, max rate")
        save(fig, "fanout")

    lat_rows = {
        f"{n:,} x {fixed[n]:g}/s": {t: _first(_ok(rows, "fanout", "fixed-rate", subscribers=n), t) for t in targets}
        for n in sizes
    }
    if any(r for per in lat_rows.values() for r in per.values()):
        fig, ax = plt.subplots(figsize=(13, 4.5))
        series: dict[str, list[float | None]] = {}
        for g, per in lat_rows.items():
            series[f"p50, {g}"] = [_lat(per[t], "p50") if per.get(t) else None for t in targets]
            series[f"p99, {g}"] = [_lat(per[t], "p99") if per.get(t) else None for t in targets]
        bars(ax, targets, series, "publish → receive latency, ms (log)", True)
        ax.legend(fontsize=8)
        ax.set_title("Fan-out latency at fixed rates (subscribers x publications/s)")
        save(fig, "latency")

    idle = {t: _first(_ok(rows, "idle"), t) for t in targets}
    storm = {t: _first(_ok(rows, "storm"), t) for t in targets}
    chans = {t: _first(_ok(rows, "channels", "max-rate"), t) for t in targets}
    if any(idle.values()) or any(storm.values()) or any(chans.values()):
        fig, axes = plt.subplots(1, 3, figsize=(14, 4.5))
        bars(
            axes[0], targets, {"": [_m(idle.get(t), "rss_kb_per_conn") for t in targets]}, "KB RSS per idle conn", False
        )
        axes[0].set_title(f"Idle: {result['sizes']['idle_connections']:,} connections")
        bars(
            axes[1], targets, {"": [_m(storm.get(t), "connects_per_s") for t in targets]}, "connect+subscribe/s", False
        )
        axes[1].set_title(f"Connect storm: {result['sizes']['storm_connections']:,} connections")
        bars(
            axes[2],
            targets,
            {"": [_m(chans.get(t), "cpu_us_per_delivery") for t in targets]},
            "CPU µs/delivery, log",
            True,
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
WebSocket listener, minimal "floor" broadcasters and the real-time frameworks applications use directly
(socket.io on Node.js, python-socketio, Django Channels), all driven by the same load generator on the same
machine. This page is generated by `python -m bench report` from the result file named below; the text
around the tables lives in `bench/report.py`.

## How to run

```bash
make bench                                    # every scenario and target at the sizes below (~45 min)
.venv/bin/python -m bench run --quick         # tiny sizes, a few seconds per target
.venv/bin/python -m bench run --scenarios fanout,idle --targets neoevents,centrifugo --fanout 1000,10000
.venv/bin/python -m bench run --scenarios fanout --targets neoevents,python-socketio --fanout 1000:100,500:20
.venv/bin/python -m bench report              # rewrite this page from the newest full result file
```

Not in the default run: `neoevents-workers2`, one server of two worker processes (`serve --workers 2`) on a
private Redis. With the server pinned to one core it measures what the workers and the Redis engine cost there;
the scaling they exist for needs cores this machine does not have spare.

`--fanout` takes subscriber counts, each optionally with the publications/s of its fixed-rate phase
(`1000:100`). Results go to `bench/results/run-<UTC time>.json` (`--quick` runs get a `-quick` suffix and
are not used for this page unless named). The bench extra (`pip install -e '.[bench]'`) adds picows (a
floor), matplotlib (the charts) and the Python peers (python-socketio, uvicorn, redis-py, Django, Channels,
channels_redis, all pinned). The Centrifugo binary comes from `make centrifugo`, nats-server and
redis-server from `make deps-system`, Node's `ws` from `make deps-node`, socket.io (pinned in
`bench/peers/package-lock.json`) from `make deps-bench-node`; a target that is missing is reported as
skipped. The connect-storm client (`bench/stormgen/`), the live receiver (`bench/receiver/`) and the compiled
floor (`bench/floors/gofloor/`), all Go standard library only, are built with `go build` on first use into
`~/.cache/neoevents/bench/`.

## Method

- **Pinning.** The server runs alone on one core; the load generator (worker processes, live receivers, the
  publisher and the connect-storm client) shares the other. Go's runtime sizes itself from that affinity
  (GOMAXPROCS=1), so every server has exactly one core. Deliveries/s are therefore *one-core* figures; rows
  where the load generator used ≥ 90% of its core are marked **†** — there the server had spare CPU and the
  rate is a floor of what it can do, while CPU per delivery is still a fair cost figure.
- **Load generator.** Worker processes on uvloop with raw `asyncio.Protocol` WebSocket clients, spread over
  source addresses 127.0.0.2-9. Each connection is set up with the target's real protocol — for neoevents
  and Centrifugo a Centrifugo JSON `connect` with its own HS256 token (user `u<i>`) and a `subscribe` — and
  then deliveries are counted on the raw byte stream without parsing frames. ~256 connections per run also
  read the send timestamp embedded in each ~100-byte payload for publish → receive latency. Pings are
  answered. Once set up, each worker hands its sockets to a compiled **live receiver** (`bench/receiver/`,
  Go standard library only, GOMAXPROCS=1 on the load generator's core) that reads them the same way: one
  thread, one epoll instance, deliveries counted by the payload marker, the same connections sampled for
  latency, pings answered. The Python workers spent about 9 µs of their core per delivery (on the earlier
  runs' machine), as much as the servers, and at 10,000 subscribers x 10/s that alone bounded the latency
  they reported. The receiver polls its sockets every 0.5 ms instead of sleeping in `epoll_wait`: a
  receiver asleep there is woken by each write that reaches it, and on loopback that wake-up runs inside
  the sender's system call and is charged to the server, while on a real network it is the receiving
  machine's cost. Polling adds at most 0.5 ms to each measured latency, alike for every target. Its kernel
  time (reading, and the ACKs each read sends back) still makes up most of the load generator's CPU in the
  fan-out rows.
- **Latency** is publish → arrival: for each sampled delivery, the kernel's receive timestamp of the read
  that returned it (`SO_TIMESTAMPNS`) minus the send time in its payload, so the time a delivery waited for
  the load generator to read it is not counted; on this two-core machine the receivers share one core with
  the publisher, and at 10,000 subscribers x 10/s they are near its limit. The tables also give the p99
  until the receiver read the deliveries ("p99 read"), which was the latency reported before this method
  (and still is for rows whose connections stay on the Python workers).
  The connect storm is driven by a compiled client instead (`bench/stormgen/`, Go standard library only,
  GOMAXPROCS=1 on the load generator's core), so that the client's cost per connection does not bound the
  rate: it sends the same upgrade requests and set-up bytes, built by the Python side, and completes each
  set-up the same way (pings answered, close frames and error replies counted as failures). Like the receiver
  it polls its sockets (sleeping 50 µs when none is ready) instead of sleeping in `epoll_wait`, for the same
  reason. It drives the reconnect-with-recovery storm too, with the subscription positions the Python workers
  recorded when the clients first connected, and counts the subscriptions recovered and the publications
  returned.
- **Publishing.** neoevents and Centrifugo: the HTTP server API (`/api/publish`, or `/api/batch` with 100
  publications per request) over keep-alive connections with pipelined, concurrent requests. nats-server:
  `PUB` on its client port. Floors: frames on a `/pub` WebSocket. Peers: a `/pub` WebSocket on the peer's
  own server whose frames carry one or more `<room>\\n<payload>` pairs (100 per frame where the API gets a
  batch), each turned into the framework's own broadcast: `io.to(room).emit("pub", data)` (socket.io),
  `await sio.emit("pub", data, room=room)` (python-socketio), `group_send(group, {"type": "pub", ...})`
  (Channels, whose consumers write the text out unchanged).
- **Peers** (`bench/peers/`). socket.io 4.8 on Node.js and python-socketio 5 on uvicorn: subscribers speak
  Engine.IO v4 / Socket.IO v5 over a WebSocket (`/socket.io/?EIO=4&transport=websocket&room=<room>`, open
  packet, `40` connect, events as `42["pub",{...}]`, pings answered) and join the room in the connect handler.
  python-socketio also runs with its Redis manager (`python-socketio-redis`: every emit goes through Redis
  pub/sub, as with several processes). Django Channels 4 on uvicorn with `channels_redis`: subscribers open
  `/ws/<group>` and the consumer joins the group before it accepts. Targets with a Redis start their own
  `redis-server` pinned to the server's core, and its CPU time and memory are counted with the server's.
  uvicorn's WebSocket pings are off (Engine.IO pings at its own level; Channels has none, like the floors).
- **Fixed-rate phases** publish on a timer. The fan-out rates are the latency points of the performance
  targets: 1,000 subscribers x 100 publications/s, 2,000 x 50/s and 10,000 x 10/s (100,000 deliveries/s
  each). A target that cannot keep up is not fed without bound: while more deliveries are outstanding than it
  delivered in the last second, due publications are skipped. Such rows are marked **‡** (could not keep up;
  achieved vs asked rate in "Skipped, failed, behind"). **Max-rate phases** are a closed loop that keeps at
  most 40,000 deliveries (or two publications, if larger) outstanding, so the rate is the one the server
  sustains with bounded queues; their latency includes that queueing. That bound is the only one: the HTTP
  publisher keeps up to 64 requests in flight (more than the bound allows at these sizes), like the NATS
  and WebSocket publishers, which do not wait for acknowledgements at all. After each phase the queued deliveries
  are waited for (until none is outstanding, none arrived for 3 s, or 10 s passed).
- **CPU** is the server process's utime+stime from `/proc/<pid>/stat` across the measured window divided by
  what was delivered in it, so it includes receiving the publications. This kernel accounts CPU time by
  tick without separate IRQ time, so softirq work (loopback TCP) is charged to whatever process was running
  when it happened: mostly the server's own sends, and work deferred to ksoftirqd is charged to no server.
  The *softirq* column is the softirq share of the server's core; *other load* is core busy - server -
  softirq, a lower bound for what other processes took from the server's core. This machine is shared:
  when other load is high the server got less than a core, and its rate and latency in that row suffer
  while CPU per delivery stays comparable. **RSS** is `/proc/<pid>/statm`;
  RSS per connection is (RSS with the connections - RSS before them) / connections.
- Each target/scenario gets a fresh server. Warm-up, then the measured window (sizes below). A connect storm
  lasts two or three seconds, short enough for a brief stall of the machine to move its rate by a tenth, so
  each target runs three storms on its server (closing each storm's connections and waiting for the server to
  go idle before the next) and its row is the storm with the median rate.
- **Order and drift.** Each scenario size measures its targets one after the other, which takes minutes
  at the larger sizes, and this machine's speed moves by tens of percent within the hour. Unless
  `--no-drift-check` is given (and outside `--quick`), neoevents is measured again after the other targets
  of each size; the two are compared in "How far the machine drifted during the run", and the other tables
  use the first. `--repeat N` interleaves N rounds of all targets and keeps, per row, the round with the
  least other load on the server's core.
- Floors speak no protocol and check nothing: subscribers connect to `/sub/<channel>` and are subscribed.
  nats-server and the peers need no token either. Only neoevents and Centrifugo verify a JWT per connection.
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
- **Fixed-rate fan-out latency is at least the time to write one publication to every socket.** With N
  subscribers the last one is served N sends after the first, so p50 is at least half of N times the per-send
  cost; at 100,000 deliveries/s a server whose CPU per delivery approaches 10 µs has no idle time left on one
  core, and queueing adds to it.
- **Max-rate latency** includes the closed loop's queue (up to 40,000 deliveries in flight), so it measures
  queueing, not the server's responsiveness; compare rates and CPU there.
- **Many channels** cannot batch across connections: each publication is one delivery to one socket, so the
  publish path (HTTP API with 100 publications per batch request) is a large share of neoevents' and
  Centrifugo's cost, while the floors and NATS receive publications over a WebSocket or TCP stream.
- **Floors** are protocol-free and unauthenticated; they bound what a stack costs, not what a real-time
  server must cost. The compiled one (`floor-go`: Go standard library, GOMAXPROCS=1, one goroutine writing
  each publication's frame to every subscriber, one system call each) shows what is left when next to
  nothing runs above the kernel: its fixed-rate rows are the cost of the writes themselves on this machine.
- **Peers** run their framework's own broadcast as an application would, without authentication, history or
  recovery. Where a Redis is part of the design (python-socketio's Redis manager, `channels_redis`) its CPU
  is included, so those rows are what one server process plus its Redis cost on one core.

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
    fixed = _fixed_rates(s)
    points = ", ".join(f"{n:,} x {fixed[n]:g}/s" for n in s["fanout_subscribers"])
    recovery = ""
    if "recovery_connections" in s:
        recovery = (
            f" Reconnect with recovery: {s['recovery_connections']:,} clients, {s['recovery_missed']} missed "
            "publications each."
        )
    return (
        f"Fan-out: {', '.join(f'{n:,}' for n in s['fanout_subscribers'])} subscribers; fixed rate (subscribers x "
        f"publications/s) {points}. Many channels: {s['channels']:,} connections, fixed rate "
        f"{s['channels_fixed_rate']:,} publications/s. Idle: {s['idle_connections']:,} connections for "
        f"{s['idle_window']:g} s. Connect storm: {s['storm_connections']:,} connections, "
        f"{s['storm_concurrency'] * result.get('workers', 1):,} handshakes in flight."
        f"{recovery} Warm-up {s['warmup']:g} s, window {s['window']:g} s, payload {s['payload_size']} bytes."
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
        "target", "phase", "deliveries/s", "CPU µs/delivery", "p50 ms", "p99 ms", "p99.9 ms", "p99 read ms",
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
                _fmt(_read_lat(r, "p99"), 2),
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

    def pair(
        scenario: str, phase: str | None, suffix: str = "", **params: Any
    ) -> Callable[[], tuple[Row | None, Row | None]]:
        def get() -> tuple[Row | None, Row | None]:
            found = _ok(rows, scenario, phase, **params)
            return _first(found, "neoevents" + suffix), _first(found, "centrifugo" + suffix)

        return get

    fixed = _fixed_rates(result["sizes"])
    for n in result["sizes"]["fanout_subscribers"]:
        pairs += [
            (f"fan-out {n:,}: deliveries/s (max rate)", pair("fanout", "max-rate", subscribers=n),
             "deliveries_per_s", True),
            (f"fan-out {n:,}: CPU µs per delivery (max rate)", pair("fanout", "max-rate", subscribers=n),
             "cpu_us_per_delivery", False),
            (f"fan-out {n:,}: p99 latency ms (fixed rate, {fixed[n]:g} publications/s)",
             pair("fanout", "fixed-rate", subscribers=n), "p99", False),
        ]  # fmt: skip
    pairs += [
        ("many channels: deliveries/s (max rate)", pair("channels", "max-rate"), "deliveries_per_s", True),
        ("many channels: CPU µs per delivery (max rate)", pair("channels", "max-rate"), "cpu_us_per_delivery", False),
        ("many channels: p99 latency ms (fixed rate)", pair("channels", "fixed-rate"), "p99", False),
        ("idle: KB per connection", pair("idle", None), "rss_kb_per_conn", False),
        ("idle: CPU µs per connection per second", pair("idle", None), "cpu_us_per_conn_s", False),
        ("connect storm: connect+subscribe/s", pair("storm", None), "connects_per_s", True),
        ("connect storm: CPU µs per connection", pair("storm", None), "cpu_us_per_connect", False),
        ("reconnect with recovery: reconnects/s", pair("recovery", None), "reconnects_per_s", True),
        ("reconnect with recovery: CPU µs per reconnect", pair("recovery", None), "cpu_us_per_reconnect", False),
        ("Redis engine, connect storm: connect+subscribe/s", pair("storm", None, "-redis"), "connects_per_s", True),
        ("Redis engine, connect storm: CPU µs per connection", pair("storm", None, "-redis"), "cpu_us_per_connect",
         False),
        ("Redis engine, reconnect with recovery: reconnects/s", pair("recovery", None, "-redis"), "reconnects_per_s",
         True),
        ("Redis engine, reconnect with recovery: CPU µs per reconnect", pair("recovery", None, "-redis"),
         "cpu_us_per_reconnect", False),
        ("HTTP API: publishes/s, single", pair("api", "single"), "publishes_per_s", True),
        ("HTTP API: CPU µs per publish, single", pair("api", "single"), "cpu_us_per_publish", False),
        ("HTTP API: publishes/s, batch", pair("api", "batch"), "publishes_per_s", True),
        ("HTTP API: CPU µs per publish, batch", pair("api", "batch"), "cpu_us_per_publish", False),
    ]  # fmt: skip
    lines = []
    for label, get, key, higher_better in pairs:
        neo, cen = get()
        if neo is None and cen is None:
            continue
        latency = key in ("p50", "p99", "p999")
        a = _lat(neo, key) if latency and neo else _m(neo, key)
        b = _lat(cen, key) if latency and cen else _m(cen, key)
        better = "higher is better" if higher_better else "lower is better"
        found = [_mark(r) for r in (neo, cen) if r is not None]
        marks = "".join(f" {m}" for m in ("†", "‡") if any(m in f for f in found))
        lines.append([label + marks, _fmt(a, 2), _fmt(b, 2), _ratio(a, b), better])
    return _table(["metric", "neoevents", "Centrifugo", "neoevents / Centrifugo", ""], lines)


DRIFT_MEASURES = {  # scenario: the cost compared in the drift table
    "fanout": ("cpu_us_per_delivery", "CPU µs per delivery"),
    "channels": ("cpu_us_per_delivery", "CPU µs per delivery"),
    "idle": ("cpu_us_per_conn_s", "CPU µs per connection per s"),
    "storm": ("cpu_us_per_connect", "CPU µs per connect"),
    "recovery": ("cpu_us_per_reconnect", "CPU µs per reconnect"),
    "api": ("cpu_us_per_publish", "CPU µs per publication"),
}


def _drift_table(result: dict[str, Any]) -> str:
    """neoevents' first measurement of each scenario size beside the one taken again after the other targets
    (``--drift-check``): how far the machine's speed moved while they ran."""
    lines = []
    for check in result["rows"]:
        if not check.get("drift_check") or check["status"] != "ok" or check["scenario"] not in DRIFT_MEASURES:
            continue
        first = _first_measurement(result["rows"], check)
        if first is None:
            continue
        key, label = DRIFT_MEASURES[check["scenario"]]
        a, b = first["metrics"].get(key), check["metrics"].get(key)
        size = "" if check["scenario"] == "api" else _size(check)  # the API rows' "connections" are the publisher's
        lines.append(
            [f"{check['scenario']} {size} {check['phase']}".replace("  ", " "), label, _fmt(a, 2),
             _fmt(b, 2), _ratio(b, a), _minutes(first.get("at"), check.get("at"))]
        )  # fmt: skip
    if not lines:
        return ""
    header = ["row", "cost", "first", "again, after the other targets", "again / first", "minutes between"]
    return _table(header, lines)


def _first_measurement(rows: list[Row], check: Row) -> Row | None:
    params = {k: v for k, v in check["params"].items() if k != "repeat"}
    for row in rows:
        if row.get("drift_check") or row["status"] != "ok":
            continue
        same = (row["target"], row["scenario"], row["phase"]) == (check["target"], check["scenario"], check["phase"])
        if same and {k: v for k, v in row["params"].items() if k != "repeat"} == params:
            return row
    return None


def _minutes(start: str | None, end: str | None) -> str:
    if not start or not end:
        return "—"
    seconds = (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()
    return f"{seconds / 60:.0f}"


def _size(row: Row) -> str:
    p = row["params"]
    n = p.get("subscribers") or p.get("connections") or p.get("size")
    return _fmt(n) if n else ""


def _problem(row: Row) -> str:
    if row["status"] != "ok":
        return str(row["status"])
    return "behind" if row["metrics"].get("kept_up") is False else "note"


def _behind_notes() -> str:
    """The hook for the explanation of where neoevents is behind Centrifugo (see BEHIND_NOTES)."""
    notes = [(scenario, text.strip()) for scenario, text in BEHIND_NOTES.items() if text.strip()]
    if not notes:
        return ""
    titles = {
        "fanout": "Fan-out", "channels": "Many channels", "idle": "Idle connections", "storm": "Connect storm",
        "recovery": "Reconnect with recovery", "api": "HTTP publish API",
    }  # fmt: skip
    body = "\n\n".join(f"**{titles.get(s, s)}.** {t}" for s, t in notes)
    return "\n### Where neoevents is behind\n\n" + body + "\n"


def _before_after(result: dict[str, Any]) -> str:
    """neoevents in the earlier runs (BEFORE_RUNS) against this run, scenario by scenario."""
    paths = [path for path in BEFORE_RUNS if path.exists()]
    runs = [json.loads(path.read_text()) for path in paths]
    if not runs:
        return ""
    befores = [best_rows(run["rows"]) for run in runs]
    after = best_rows(result["rows"])
    versions = [run["targets"].get("neoevents", {}).get("version", "?") for run in runs]

    def pick(rows: list[Row], scenario: str, phase: str, key: str, **params: Any) -> Any:
        return _m(_first(_ok(rows, scenario, phase, **params), "neoevents"), key)

    sizes = set(result["sizes"]["fanout_subscribers"])
    for run in runs:
        sizes &= set(run["sizes"]["fanout_subscribers"])
    points: list[tuple[str, str, str, str, dict[str, Any]]] = []
    for n in sorted(sizes):
        points.append((f"fan-out {n:,}: CPU µs per delivery (max rate)", "fanout", "max-rate", "cpu_us_per_delivery",
                       {"subscribers": n}))  # fmt: skip
    points += [
        ("many channels: CPU µs per delivery (max rate)", "channels", "max-rate", "cpu_us_per_delivery", {}),
        ("idle: KB per connection", "idle", "idle", "rss_kb_per_conn", {}),
        ("connect storm: CPU µs per connect+subscribe", "storm", "connect+subscribe", "cpu_us_per_connect", {}),
        ("reconnect with recovery: CPU µs per reconnect", "recovery", "reconnect+recover", "cpu_us_per_reconnect", {}),
        ("HTTP API single: CPU µs per publication", "api", "single", "cpu_us_per_publish", {}),
        ("HTTP API batch: CPU µs per publication", "api", "batch", "cpu_us_per_publish", {}),
    ]
    # Costs are compared on one machine only: the last run on the first run's machine against the first.
    machine = _machine(result)
    same_as_first = [k for k, run in enumerate(runs) if _machine(run) == _machine(runs[0])]
    last = same_as_first[-1]
    lines = []
    for label, scenario, phase, key, params in points:
        values = [pick(rows, scenario, phase, key, **params) for rows in befores]
        now = pick(after, scenario, phase, key, **params)
        if now is None and all(v is None for v in values):
            continue
        first, latest = values[0], (now if machine == _machine(runs[0]) else values[last])
        ratio = "—" if not first or latest is None else f"{latest / first:.2f}x"
        lines.append([label, *(_fmt(v, 2) for v in values), _fmt(now, 2), ratio])
    names = [
        f"`{os.path.relpath(path, REPO)}` ({version}{'' if _machine(run) == machine else ', ' + _machine(run)})"
        for path, version, run in zip(paths, versions, runs, strict=True)
    ]
    ratio_name = "this run / first"
    other = ""
    if machine != _machine(runs[0]):
        ratio_name = f"{versions[last]} / first"
        other = (
            f" This run was made on another kind of machine ({machine}) than the runs named with their CPU beside "
            f"them: its costs are not comparable with theirs, so the last column compares {versions[last]}, the "
            "last run on the first run's machine, with the first."
        )
    return (
        "## Before and after the hot-path changes\n\nneoevents in "
        + " and ".join(names)
        + " against this run. Costs are server CPU (robust to other load on the machine); the many-channels size "
        "differs between the runs (5,000 in the first), so that row compares the cost per delivery only; a "
        f"missing value is a scenario the run did not have.{other}\n\n"
        + "".join(f"What changed after {name}:\n\n{text}\n" for name, text in zip(names, CHANGES, strict=False) if text)
        + _table(["measure", *versions, "this run", ratio_name], lines)
        + "\n"
    )


def _machine(result: dict[str, Any]) -> str:
    """A run's CPU model, which names the machine kind it ran on."""
    return str(result.get("machine", {}).get("cpu_model", "?"))


# ---- performance targets ---------------------------------------------------------------------------

# p99 fan-out latency targets (ms) at (subscribers, publications/s) of the fixed-rate phase.
LATENCY_TARGETS_MS: dict[tuple[int, float], float] = {(1000, 100.0): 50.0, (10000, 10.0): 100.0}
SOCKETIO_FACTOR = 10.0  # neoevents at least this many times better than python-socketio


def _fixed_row(rows: list[Row], target: str, n: int, rate: float) -> Row | None:
    found = [r for r in _ok(rows, "fanout", "fixed-rate", subscribers=n) if r["target"] == target]
    return next((r for r in found if abs(float(r["params"].get("publishes_per_s", 0)) - rate) < 0.01), None)


def _met(ok: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "not measured"}[ok]


def _latency_points(rows: list[Row], result: dict[str, Any]) -> list[tuple[int, float, float | None]]:
    """(subscribers, publications/s, p99 target in ms or None) of every fixed-rate fan-out point measured,
    and of every target point even if not measured."""
    fixed = _fixed_rates(result["sizes"])
    points = {(n, rate): LATENCY_TARGETS_MS.get((n, rate)) for n, rate in fixed.items()}
    for key, target in LATENCY_TARGETS_MS.items():
        points.setdefault(key, target)
    return [(n, rate, target) for (n, rate), target in sorted(points.items())]


def _latency_goal(rows: list[Row], n: int, rate: float, target: float) -> tuple[str, bool | None]:
    row = _fixed_row(rows, "neoevents", n, rate)
    p99 = _lat(row, "p99") if row else None
    if row is None or p99 is None:
        return "—", None
    behind = row["metrics"].get("kept_up") is False
    text = f"{_fmt(p99, 2)} ms" + (" (could not keep up)" if behind else "")
    return text, p99 <= target and not behind


def _socketio_factor(rows: list[Row], n: int, key: str, lower_better: bool) -> tuple[Any, Any, float | None]:
    found = _ok(rows, "fanout", "max-rate", subscribers=n)
    neo, sio = _m(_first(found, "neoevents"), key), _m(_first(found, "python-socketio"), key)
    if not neo or not sio:
        return neo, sio, None
    return neo, sio, (sio / neo if lower_better else neo / sio)


def _goals_table(rows: list[Row], result: dict[str, Any]) -> str:
    lines = []
    for n, rate, target in _latency_points(rows, result):
        if target is None:
            continue
        achieved, ok = _latency_goal(rows, n, rate, target)
        lines.append(
            [f"fan-out p99 latency, {n:,} subscribers x {rate:g} publications/s", f"≤ {target:g} ms", achieved,
             _met(ok)]
        )  # fmt: skip
    for n in result["sizes"]["fanout_subscribers"]:
        _, _, cpu = _socketio_factor(rows, n, "cpu_us_per_delivery", True)
        _, _, faster = _socketio_factor(rows, n, "deliveries_per_s", False)
        achieved = "—" if cpu is None else f"{cpu:.1f}x less CPU per delivery"
        if cpu is not None and faster is not None:
            achieved += f" ({faster:.1f}x the deliveries/s)"
        lines.append(
            [f"neoevents ≥ {SOCKETIO_FACTOR:g}x better than python-socketio: fan-out to {n:,}, server CPU per "
             "delivery at max rate", f"≥ {SOCKETIO_FACTOR:g}x", achieved,
             _met(None if cpu is None else cpu >= SOCKETIO_FACTOR)]
        )  # fmt: skip
    lines += _issue_goals(rows, result)
    return _table(["target", "goal", "achieved (neoevents)", ""], lines)


REDIS_CPU_FACTOR = 1.3  # Redis engine CPU per delivery at most this many times the memory engine's
REDIS_P99_FACTOR = 2.0  # cross-node p99 at most this many times single-node


def _max_rate(rows: list[Row], scenario: str, target: str, **params: Any) -> Row | None:
    return _first(_ok(rows, scenario, "max-rate", **params), target)


def _issue_goals(rows: list[Row], result: dict[str, Any]) -> list[list[str]]:
    """The issue's other targets: fan-out cost against Centrifugo and nats-server, the picows floor, idle
    memory, connect rate, the HTTP API, and the Redis engine against the memory engine."""
    lines: list[list[str]] = []
    for n in result["sizes"]["fanout_subscribers"]:
        neo = _m(_max_rate(rows, "fanout", "neoevents", subscribers=n), "cpu_us_per_delivery")
        peers = {
            t: _m(_max_rate(rows, "fanout", t, subscribers=n), "cpu_us_per_delivery") for t in ("centrifugo", "nats")
        }
        if n >= 2000:
            for t, v in peers.items():
                ok = None if neo is None or v is None else neo <= v
                lines.append(
                    [f"fan-out to {n:,}: server CPU per delivery at most `{t}`'s (max rate)", f"≤ {_fmt(v, 2)} µs",
                     f"{_fmt(neo, 2)} µs", _met(ok)]
                )  # fmt: skip
    if 1000 in result["sizes"]["fanout_subscribers"]:
        neo = _m(_max_rate(rows, "fanout", "neoevents", subscribers=1000), "deliveries_per_s")
        floor = _m(_max_rate(rows, "fanout", "floor-picows", subscribers=1000), "deliveries_per_s")
        ok = None if neo is None or floor is None else neo >= floor
        lines.append(["fan-out to 1,000: deliveries/s at least the picows floor's", f"≥ {_fmt(floor)}/s",
                      f"{_fmt(neo)}/s", _met(ok)])  # fmt: skip
    idle = _first(_ok(rows, "idle"), "neoevents")
    kb = _m(idle, "rss_kb_per_conn")
    lines.append(["memory per idle, authenticated, subscribed connection", "≤ 10 KB", f"{_fmt(kb)} KB",
                  _met(None if kb is None else kb <= 10)])  # fmt: skip
    storm = _first(_ok(rows, "storm"), "neoevents")
    rate = _m(storm, "connects_per_s")
    lines.append(["connect + JWT (HS256) + subscribe per second, one process", "≥ 5,000/s", f"{_fmt(rate)}/s",
                  _met(None if rate is None else rate >= 5000)])  # fmt: skip
    for phase, goal in (("single", 20_000), ("batch", 200_000)):
        api = _first(_ok(rows, "api", phase), "neoevents")
        rate = _m(api, "publishes_per_s")
        lines.append([f"HTTP API publications per second ({phase})", f"≥ {goal:,}/s", f"{_fmt(rate)}/s",
                      _met(None if rate is None else rate >= goal)])  # fmt: skip
    for label, scenario, params in _redis_points(result):
        factor, mem, red, per_round = _redis_factor(result["rows"], scenario, params)
        shown = "—"
        if factor is not None:
            shown = f"{factor:.2f}x ({_fmt(red, 2)} against {_fmt(mem, 2)} µs"
            shown += f"; round by round {', '.join(f'{f:.2f}x' for f in per_round)})" if len(per_round) > 1 else ")"
        lines.append(
            [f"Redis engine, {label}: CPU per delivery against the memory engine (max rate)",
             f"≤ {REDIS_CPU_FACTOR:g}x", shown, _met(None if factor is None else factor <= REDIS_CPU_FACTOR)]
        )  # fmt: skip
    fixed = _fixed_rates(result["sizes"])
    for n in result["sizes"]["fanout_subscribers"]:
        single = _fixed_row(rows, "neoevents", n, fixed[n])
        cross = _fixed_row(rows, "neoevents-redis", n, fixed[n])
        a, b = (_lat(single, "p99") if single else None), (_lat(cross, "p99") if cross else None)
        factor = None if not a or b is None else b / a
        lines.append(
            [f"Redis engine, fan-out to {n:,} x {fixed[n]:g}/s: cross-node p99 against single-node",
             f"≤ {REDIS_P99_FACTOR:g}x", "—" if factor is None else f"{factor:.2f}x ({_fmt(b, 2)} ms)",
             _met(None if factor is None else factor <= REDIS_P99_FACTOR)]
        )  # fmt: skip
    return lines


def _redis_factor(
    all_rows: list[Row], scenario: str, params: dict[str, Any]
) -> tuple[float | None, float | None, float | None, list[float]]:
    """The Redis engine's CPU per delivery at the maximum rate against the memory engine's: the ratio of each
    engine's median over the run's rounds, that median for both, and the ratio round by round.

    At the maximum rate the cost per delivery depends on how many publications share each write, which moves
    from one round to the next for either engine; the round with the least other load (what the tables show)
    may be a different round for each engine, so one ratio of two such rows mostly measures that timing."""

    def costs(target: str) -> dict[int, float]:
        out = {}
        for row in _ok(all_rows, scenario, "max-rate", **params):
            value = row["metrics"].get("cpu_us_per_delivery")
            if row["target"] == target and row["status"] == "ok" and not row.get("drift_check") and value:
                out[int(row["params"].get("repeat", 0))] = float(value)
        return out

    mem, red = costs("neoevents"), costs("neoevents-redis")
    if not mem or not red:
        return None, None, None, []
    mem_median, red_median = statistics.median(mem.values()), statistics.median(red.values())
    per_round = [red[k] / mem[k] for k in sorted(mem.keys() & red.keys())]
    return red_median / mem_median, mem_median, red_median, per_round


def _redis_points(result: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    points = [(f"fan-out to {n:,}", "fanout", {"subscribers": n}) for n in result["sizes"]["fanout_subscribers"]]
    points.append((f"many channels ({result['sizes']['channels']:,})", "channels", {}))
    return points


def _redis_table(rows: list[Row], result: dict[str, Any]) -> str:
    lines = []
    fixed = _fixed_rates(result["sizes"])
    for label, scenario, params in _redis_points(result):
        mr = {t: _max_rate(rows, scenario, t, **params) for t in ("neoevents", "neoevents-redis", "centrifugo-redis")}
        fx: dict[str, Row | None] = {}
        for t in mr:
            if scenario == "fanout":
                fx[t] = _fixed_row(rows, t, params["subscribers"], fixed[params["subscribers"]])
            else:
                fx[t] = _first(_ok(rows, scenario, "fixed-rate", **params), t)
        if not any(mr.values()):
            continue
        mem, red = _m(mr["neoevents"], "cpu_us_per_delivery"), _m(mr["neoevents-redis"], "cpu_us_per_delivery")
        factor = _redis_factor(result["rows"], scenario, params)[0]
        lines.append(
            [label, _fmt(mem, 2), _fmt(red, 2), "—" if factor is None else f"{factor:.2f}x",
             _fmt(_m(mr["centrifugo-redis"], "cpu_us_per_delivery"), 2),
             _fmt(_m(mr["neoevents-redis"], "deliveries_per_s")), _fmt(_m(mr["centrifugo-redis"], "deliveries_per_s")),
             _fmt(_lat(fx["neoevents"], "p99"), 2) if fx["neoevents"] else "—",
             _fmt(_lat(fx["neoevents-redis"], "p99"), 2) if fx["neoevents-redis"] else "—",
             _fmt(_lat(fx["centrifugo-redis"], "p99"), 2) if fx["centrifugo-redis"] else "—"]
        )  # fmt: skip
    return _table(
        ["scenario", "memory µs/delivery", "Redis µs/delivery", "Redis / memory (medians of the rounds)",
         "Centrifugo Redis µs/delivery",
         "Redis deliveries/s", "Centrifugo Redis deliveries/s", "single-node p99 ms", "cross-node p99 ms",
         "Centrifugo cross-node p99 ms"],
        lines,
    )  # fmt: skip


def _latency_table(rows: list[Row], result: dict[str, Any]) -> str:
    lines = []
    for n, rate, target in _latency_points(rows, result):
        neo = _fixed_row(rows, "neoevents", n, rate)
        cen = _fixed_row(rows, "centrifugo", n, rate)
        ok = _latency_goal(rows, n, rate, target)[1] if target is not None else None
        lines.append(
            [f"{n:,} x {rate:g}/s", _fmt(n * rate), f"≤ {target:g} ms" if target is not None else "—",
             _fmt(_lat(neo, "p50"), 2) if neo else "—", _fmt(_lat(neo, "p99"), 2) if neo else "—",
             _fmt(_lat(neo, "p999"), 2) if neo else "—", _fmt(_read_lat(neo, "p99"), 2) if neo else "—",
             ("no" if neo["metrics"].get("kept_up") is False else "yes") if neo else "—",
             _met(ok) if target is not None else "",
             _fmt(_lat(cen, "p99"), 2) if cen else "—"]
        )  # fmt: skip
    return _table(
        ["subscribers x publications/s", "deliveries/s", "target p99", "neoevents p50 ms", "p99 ms", "p99.9 ms",
         "p99 read ms", "kept up", "", "Centrifugo p99 ms"],
        lines,
    )  # fmt: skip


def _socketio_table(rows: list[Row], result: dict[str, Any]) -> str:
    lines = []
    for n in result["sizes"]["fanout_subscribers"]:
        for label, key, lower in (
            ("server CPU µs per delivery", "cpu_us_per_delivery", True),
            ("deliveries/s", "deliveries_per_s", False),
        ):
            neo, sio, factor = _socketio_factor(rows, n, key, lower)
            if neo is None and sio is None:
                continue
            lines.append(
                [f"fan-out {n:,}, max rate: {label}", _fmt(neo, 2), _fmt(sio, 2),
                 "—" if factor is None else f"{factor:.1f}x",
                 ("yes" if factor >= SOCKETIO_FACTOR else "no") if factor is not None else "—"]
            )  # fmt: skip
    return _table(["metric", "neoevents", "python-socketio", "neoevents better by", f"≥ {SOCKETIO_FACTOR:g}x"], lines)


def _peers_table(rows: list[Row], result: dict[str, Any]) -> str:
    sizes = result["sizes"]["fanout_subscribers"]
    names = [t for t in ("neoevents", "centrifugo", *PEERS) if t in result["targets"]]
    lines = []
    for t in names:
        fan = [_first(_ok(rows, "fanout", "max-rate", subscribers=n), t) for n in sizes]
        chans = _first(_ok(rows, "channels", "max-rate"), t)
        idle = _first(_ok(rows, "idle"), t)
        storm = _first(_ok(rows, "storm"), t)
        lines.append(
            [f"`{t}`", *[_fmt(_m(r, "cpu_us_per_delivery"), 2) for r in fan],
             *[_fmt(_m(r, "deliveries_per_s")) for r in fan], _fmt(_m(chans, "cpu_us_per_delivery"), 2),
             _fmt(_m(idle, "rss_kb_per_conn")), _fmt(_m(storm, "connects_per_s")),
             _fmt(_m(storm, "cpu_us_per_connect"))]
        )  # fmt: skip
    header = [
        "target", *[f"fan-out {n:,}: CPU µs/delivery" for n in sizes], *[f"fan-out {n:,}: deliveries/s" for n in sizes],
        "many channels: CPU µs/delivery", "idle: KB/conn", "connect+subscribe/s", "CPU µs per connect",
    ]  # fmt: skip
    return _table(header, lines)


def best_rows(rows: list[Row]) -> list[Row]:
    """One row per target/scenario/phase/parameters: of repeated measurements, the one whose window had the
    least other load on the server's core (every repeat stays in the result file)."""
    chosen: dict[tuple[str, str, str, str], Row] = {}
    for row in rows:
        if row.get("drift_check"):
            continue  # only in the drift table
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
        "## Targets\n\nThe performance targets for neoevents (memory engine) and what this run achieved. "
        "The python-socketio comparison is judged on server CPU per delivery, which other load on the machine "
        "does not change; the deliveries/s factor is given beside it.\n\n"
        + _goals_table(rows, result)
        + "\n\n"
        + TARGET_NOTES
    )
    parts.append(
        "## neoevents compared with Centrifugo\n\nSame configuration, same load generator, same core. "
        "A ratio above 1 means neoevents has the larger number (good for rates, bad for costs and latency). "
        "† = load generator at ≥ 90% of its core in that row; ‡ = a target could not keep up with the fixed "
        "rate.\n\n" + _summary(rows, result) + "\n" + _behind_notes()
    )
    drift = _drift_table(result)
    if drift:
        parts.append(
            "### How far the machine drifted during the run\n\nEach scenario size measures its targets one "
            "after the other, so a ratio between two of them also carries any change in the machine's speed "
            "between their turns. neoevents was measured again after the other targets of each size; this table "
            "sets the two measurements side by side (the tables use the first). A cost that moved by more than "
            "the gap between two targets means that gap is within the drift.\n\n" + drift + "\n"
        )
    parts.append(_before_after(result))
    parts.append(
        "## neoevents compared with the peers\n\nThe frameworks applications use directly, each with its own "
        "broadcast (see Method). Against python-socketio (in-memory manager), at the fan-out sizes:\n\n"
        + _socketio_table(rows, result)
        + "\n\nAt a glance (max-rate rows; each scenario's section has the details):\n\n"
        + _peers_table(rows, result)
        + "\n"
    )
    fixed = _fixed_rates(result["sizes"])
    fan_parts = []
    for n in result["sizes"]["fanout_subscribers"]:
        found = _ok(rows, "fanout", None, subscribers=n)
        if found:
            fan_parts.append(
                f"### {n:,} subscribers (fixed rate {fixed[n]:g} publications/s = {n * fixed[n]:,.0f} "
                f"deliveries/s)\n\n{_publish_table(found)}\n"
            )
    if fan_parts:
        chart = ""
        if "fanout" in charts:
            chart += f"![fan-out CPU and throughput]({charts['fanout']})\n\n"
        if "latency" in charts:
            chart += f"![fan-out latency]({charts['latency']})\n\n"
        parts.append(
            "## Fan-out: one channel, many subscribers\n\nOne publication goes to every subscriber of "
            "`bench:fanout` (`bench.fanout` for Channels, whose group names allow no `:`). Fixed rate: a timer "
            "publishes at the rate given per size; max rate: closed loop (see Method). ‡ = could not keep up with "
            "the fixed rate.\n\n### Latency at the target points\n\nFixed-rate phases, neoevents against its "
            "targets (p99), Centrifugo for reference.\n\n"
            + _latency_table(rows, result)
            + "\n\n"
            + chart
            + "\n".join(fan_parts)
        )
    found = _ok(rows, "channels")
    if found:
        n = result["sizes"]["channels"]
        parts.append(
            f"## Many channels: {n:,} connections, each on its own `tenant:<i>:events`\n\nPublications go "
            f"round-robin over all channels, {result['sizes']['api_batch']} per API batch request (per write "
            "for NATS and the floors, per `/pub` frame for the peers), so every publication is one delivery and "
            "the publish path is part of the cost. ‡ = could not keep up with the fixed rate.\n\n"
            + _publish_table(found)
            + "\n"
        )
    if any(r["target"].endswith("-redis") and r["target"] != "python-socketio-redis" for r in _ok(rows, "fanout")):
        parts.append(
            "## Redis engine: two nodes, cross-node delivery\n\nTwo neoevents nodes (and, for reference, two "
            "Centrifugo nodes) share one private `redis-server`; subscribers connect to one node and every "
            "publication goes through the other node's HTTP API, so each delivery crosses Redis PUB/SUB. Both "
            "nodes and the Redis are pinned to the server core and their CPU time is added up; the memory-engine "
            "column is the single-node `neoevents` row of the same scenario. Max-rate rows for CPU, fixed-rate "
            "rows for p99. The ratio of the two engines is that of their medians over the run's rounds: at the "
            "maximum rate the cost per delivery moves from round to round with how many publications share a "
            "write, and the rows shown may come from different rounds. The same clusters also take the connect "
            "storm and the reconnect-with-recovery storm (in those sections, and in the comparison with "
            "Centrifugo).\n\n" + _redis_table(rows, result) + "\n"
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
             _fmt(_other_load(r["metrics"]), 2), _fmt(r["metrics"].get("client_cpu_util"), 2),
             _rounds(r["metrics"].get("connects_per_s_rounds"))]
            for r in found
        ]  # fmt: skip
        parts.append(
            "## Connect storm\n\nNew connections as fast as the connect-storm client (`bench/stormgen/`) opens "
            "them: TCP connect, WebSocket upgrade, and for neoevents/Centrifugo a `connect` with a fresh JWT per "
            "user plus a "
            "`subscribe`; counted when the subscribe reply arrives (the 101 for floors and Channels, whose "
            "consumer joins the group before accepting; the PONG for NATS; the `40` connect reply for socket.io, "
            "sent after the connect handler joined the room). Each target runs several storms on the same "
            "server; the row is the one with the median rate, and the last column gives the rates of all "
            "of them in the order they ran. `neoevents-redis` and `centrifugo-redis` are storms on one node of "
            "a two-node Redis cluster, where each subscription to a new channel is also a Redis subscription; "
            "the CPU time of both nodes and of the Redis is counted.\n\n"
            + _table(["target", "connections", "connect+subscribe/s", "CPU µs per connection", "server CPU",
                      "other load", "client CPU", "every storm's rate"], lines)
            + "\n"
        )  # fmt: skip
    found = _ok(rows, "recovery")
    if found:
        lines = [
            [f"`{r['target']}`{_mark(r)}", _fmt(r["metrics"].get("ok")), _fmt(r["metrics"].get("missed_per_client")),
             _fmt(r["metrics"].get("reconnects_per_s")), _fmt(r["metrics"].get("cpu_us_per_reconnect")),
             f"{_fmt(r['metrics'].get('recovered_publications'))} / {_fmt(r['metrics'].get('expected_publications'))}",
             _fmt(r["metrics"].get("server_cpu_util"), 2), _fmt(_other_load(r["metrics"]), 2),
             _fmt(r["metrics"].get("client_cpu_util"), 2)]
            for r in found
        ]  # fmt: skip
        parts.append(
            "### Reconnect with recovery\n\nClients subscribed to their own channel of a namespace with history "
            "and forced recovery (`recover:<i>`) all drop their connections; while they are away every channel "
            "gets the same number of publications; then they all reconnect at once, each with a fresh JWT and a "
            "`subscribe` with `recover: true` and the epoch and offset of its earlier subscription, and are "
            "counted when the subscribe reply with the recovered publications arrives. The reconnects come from "
            "the connect-storm client (`bench/stormgen/`). neoevents and Centrifugo only (the other targets have "
            "no history), each also on the Redis engine (`-redis`: the history is in Redis, and the publications "
            "go through the other node).\n\n"
            + _table(["target", "clients", "missed each", "reconnects/s", "CPU µs per reconnect",
                      "publications recovered / expected", "server CPU", "other load", "client CPU"], lines)
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
    problems = [r for r in rows if r["status"] != "ok" or r["note"]]
    if problems:
        lines = [
            [f"`{r['target']}`", r["scenario"], _size(r), r["phase"], _problem(r), r["note"][:200]]
            for r in problems
        ]  # fmt: skip
        parts.append(
            "## Skipped, failed, behind\n\n"
            + _table(["target", "scenario", "size", "phase", "status", "why"], lines)
            + "\n"
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
