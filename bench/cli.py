"""``python -m bench run [--quick] [--scenarios ...] [--targets ...]`` and ``python -m bench report [FILE]``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from bench import receiver, stormgen
from bench import scenarios as sc
from bench.loadgen import WorkerPool
from bench.targets import DEFAULT_TARGETS, REPO, CentrifugoProtocolTarget, all_targets

RESULTS = REPO / "bench" / "results"
DOCS = REPO / "docs" / "benchmarks.md"
DRIFT_TARGET = "neoevents"  # measured again at the end of each scenario size (--drift-check)


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _cpus(value: str) -> list[int]:
    return [int(v) for v in _csv(value)] if value else []


def _fanout(value: str) -> list[tuple[int, float | None]]:
    out: list[tuple[int, float | None]] = []
    for item in _csv(value):
        count, _, rate = item.partition(":")
        out.append((int(count), float(rate) if rate else None))
    return out


def _default_cpus() -> tuple[str, str]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return "", ""
    return str(cpus[0]), ",".join(str(c) for c in cpus[1:])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    server_cpus, client_cpus = _default_cpus()
    run = sub.add_parser("run", help="run scenarios against targets, write a result file and the report")
    run.add_argument("--quick", action="store_true", help="tiny sizes and short windows (seconds per target)")
    run.add_argument("--scenarios", type=_csv, default=list(sc.SCENARIOS), help=f"any of {','.join(sc.SCENARIOS)}")
    run.add_argument("--targets", type=_csv, default=list(DEFAULT_TARGETS), help=f"any of {','.join(all_targets())}")
    run.add_argument("--workers", type=int, default=0, help="load-generator processes (default 4, quick 2)")
    run.add_argument("--server-cpus", type=_cpus, default=_cpus(server_cpus), help="CPUs the server is pinned to")
    run.add_argument("--client-cpus", type=_cpus, default=_cpus(client_cpus), help="CPUs of the load generator")
    run.add_argument(
        "--fanout",
        type=_fanout,
        help="fan-out subscriber counts, each optionally with its fixed rate in publications/s: 1000:100,10000",
    )
    run.add_argument("--channels", type=int, help="connections (one channel each) in the channels scenario")
    run.add_argument("--idle", type=int, help="connections in the idle scenario")
    run.add_argument("--idle-window", type=float, help="seconds measured in the idle scenario")
    run.add_argument("--storm", type=int, help="connections opened in the connect storm")
    run.add_argument("--storm-rounds", type=int, help="connect storms per target (the row is the median one)")
    run.add_argument("--recovery", type=int, help="clients of the reconnect-with-recovery storm")
    run.add_argument("--warmup", type=float, help="seconds of warm-up before each measured window")
    run.add_argument("--window", type=float, help="seconds of each measured window")
    run.add_argument("--repeat", type=int, default=1, help="measure every scenario/target N times (interleaved)")
    run.add_argument(
        "--drift-check",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure neoevents again after the other targets of each scenario size, to show how much the "
        "machine's speed moved meanwhile (default: on, except in quick mode)",
    )
    run.add_argument("--neoevents-rev", default="", help="benchmark this git revision of neoevents, not the tree")
    run.add_argument("--output", type=Path, default=RESULTS, help="directory of the result file")
    run.add_argument("--docs", type=Path, default=DOCS, help="report to regenerate")
    run.add_argument("--no-docs", action="store_true", help="write the result file only")
    rep = sub.add_parser("report", help="regenerate the report from a result file")
    rep.add_argument("file", type=Path, nargs="?", help="result file (default: newest full run)")
    rep.add_argument("--docs", type=Path, default=DOCS)
    return parser


def sizes_from(args: argparse.Namespace) -> sc.Sizes:
    sizes = sc.Sizes.quick() if args.quick else sc.Sizes()
    if args.fanout is not None:
        sizes.fanout_subscribers = [n for n, _ in args.fanout]
        sizes.fanout_fixed_rates = {**sizes.fanout_fixed_rates, **{n: r for n, r in args.fanout if r}}
    overrides = {
        "channels": args.channels,
        "idle_connections": args.idle,
        "idle_window": args.idle_window,
        "storm_connections": args.storm,
        "storm_rounds": args.storm_rounds,
        "recovery_connections": args.recovery,
        "warmup": args.warmup,
        "window": args.window,
    }
    for key, value in overrides.items():
        if value is not None:
            setattr(sizes, key, value)
    return sizes


def _machine(args: argparse.Namespace) -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "server_cpus": args.server_cpus,
        "client_cpus": args.client_cpus,
        "loadavg_before": _loadavg(),
    }


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


async def run_suite(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    sizes = sizes_from(args)
    registry = all_targets()
    unknown = [t for t in args.targets if t not in registry] + [s for s in args.scenarios if s not in sc.SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown targets/scenarios: {unknown}")
    stamp = dt.datetime.now(dt.UTC)
    workdir = RESULTS / "tmp" / stamp.strftime("%Y%m%d-%H%M%S")
    workers = args.workers or (2 if args.quick else 4)
    if args.client_cpus:
        os.sched_setaffinity(0, args.client_cpus)
    result: dict[str, Any] = {
        "format": 1,
        "started": stamp.isoformat(timespec="seconds"),
        "quick": bool(args.quick),
        "machine": _machine(args),
        "sizes": sizes.__dict__,
        "workers": workers,
        "repeat": args.repeat,
        "targets": {},
        "rows": [],
    }
    for target in registry.values():  # neoevents and neoevents-redis
        if isinstance(target, CentrifugoProtocolTarget) and target.kind == "neoevents":
            target.rev = args.neoevents_rev
    for name in args.targets:
        target = registry[name]
        reason = target.unavailable()
        result["targets"][name] = {
            "description": target.description,
            "version": "" if reason else target.version(),
            "unavailable": reason,
        }
        if reason:
            log(f"target {name} unavailable: {reason}")
    pool = WorkerPool(workers, args.client_cpus or None)
    ctx = sc.Context(pool, sizes, workdir, log, list(args.server_cpus), list(args.client_cpus))
    if "storm" in args.scenarios:
        try:  # before any target starts, outside the scenario's time budget
            await asyncio.to_thread(stormgen.binary)
        except RuntimeError as exc:
            log(f"connect-storm client unavailable (the storm rows will fail): {exc}")
    await asyncio.to_thread(receiver.binary)  # every scenario that reads deliveries needs it
    drift_check = (not args.quick) if args.drift_check is None else args.drift_check
    try:
        for scenario in args.scenarios:
            for size, fn in sc.variants(scenario, sizes):
                measured: list[str] = []  # targets measured at this size, in order
                for repeat in range(max(1, args.repeat)):
                    for name in args.targets:
                        target = registry[name]
                        label = (
                            f"{scenario}{f' n={size}' if size else ''}{f' #{repeat + 1}' if args.repeat > 1 else ''}"
                        )
                        reason = result["targets"][name]["unavailable"] or sc.applicable(scenario, target)
                        if reason:
                            if repeat == 0:
                                row = sc.Row(name, scenario, "-", {"size": size}, status="skipped", note=reason)
                                result["rows"].append(row.as_dict())
                            continue
                        log(f"{name}: {label}")
                        at = _now()
                        measured.append(name)
                        rows = await _run_one(ctx, target, scenario, size, fn, workdir, args.server_cpus or None)
                        for row in rows:
                            row.params["repeat"] = repeat
                            result["rows"].append({**row.as_dict(), "at": at})
                # A second measurement of neoevents after the other targets of this size shows how far the
                # machine's speed drifted while they ran (the report sets the two side by side).
                if drift_check and DRIFT_TARGET in measured and measured[-1] != DRIFT_TARGET:
                    log(f"{DRIFT_TARGET}: {scenario}{f' n={size}' if size else ''} again (drift check)")
                    at = _now()
                    target = registry[DRIFT_TARGET]
                    rows = await _run_one(ctx, target, scenario, size, fn, workdir, args.server_cpus or None)
                    for row in rows:
                        row.params["repeat"] = 0
                        result["rows"].append({**row.as_dict(), "at": at, "drift_check": True})
    finally:
        try:
            await pool.shutdown()
        finally:
            pool.kill()  # when interrupted (cancelled) before the workers were asked to exit
    result["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    result["machine"]["loadavg_after"] = _loadavg()
    return result


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


async def _run_one(
    ctx: sc.Context, target: Any, scenario: str, size: int, fn: sc.ScenarioFn, workdir: Path, cpus: list[int] | None
) -> list[sc.Row]:
    try:
        running = target.start(workdir, cpus)
    except Exception as exc:
        ctx.log(f"  failed to start: {exc}")
        return [sc.Row(target.name, scenario, "-", {"size": size}, status="failed", note=f"start: {exc}"[:500])]
    try:
        budget = sc.time_budget(scenario, ctx.sizes, size, target.slow)
        return await asyncio.wait_for(fn(ctx, running, size), budget)
    except Exception as exc:
        ctx.log(f"  failed: {exc!r}")
        return [sc.Row(target.name, scenario, "-", {"size": size}, status="failed", note=repr(exc)[:500])]
    finally:
        try:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ctx.pool.close_connections(), 30)
        finally:
            running.stop()  # also when the run is interrupted (cancelled) here
        time.sleep(0.5)


def write_result(result: dict[str, Any], output: Path) -> Path:
    output.mkdir(parents=True, exist_ok=True)
    stamp = result["started"].replace(":", "").replace("-", "").replace("+0000", "")[:15]
    path = output / f"run-{stamp}{'-quick' if result['quick'] else ''}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path


def newest_full_run(directory: Path = RESULTS) -> Path | None:
    runs = sorted(p for p in directory.glob("run-*.json") if not p.name.endswith("-quick.json"))
    return runs[-1] if runs else None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "report":
        from bench.report import write_report

        path = args.file or newest_full_run()
        if path is None:
            print("no result file in bench/results", file=sys.stderr)
            return 1
        write_report(json.loads(path.read_text()), path, args.docs)
        print(f"wrote {args.docs}")
        return 0
    import signal

    import uvloop

    def interrupted(signum: int, _: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)  # stop servers and workers on the way out
    result = uvloop.run(run_suite(args))
    path = write_result(result, args.output)
    print(f"wrote {path}")
    if not args.no_docs:
        from bench.report import write_report

        write_report(result, path, args.docs)
        print(f"wrote {args.docs}")
    failed = [r for r in result["rows"] if r["status"] == "failed"]
    return 1 if failed else 0
