"""Smoke run of the benchmark suite: tiny sizes, neoevents, one floor and the socket.io peer (Engine.IO
subscribers; `make test` installs its npm packages), well-formed results only.

No assertion here is about speed: the suite's numbers depend on the machine and on what else runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import skip_unless_kind_available

REPO = Path(__file__).resolve().parents[2]
TARGETS = ("neoevents", "floor-websockets", "socketio-node")
SCENARIOS = ("fanout", "channels", "idle", "storm", "recovery", "api")


@pytest.mark.timeout(300)
def test_bench_quick_run_produces_well_formed_results(tmp_path: Path) -> None:
    skip_unless_kind_available("neoevents")
    cmd = [
        sys.executable, "-m", "bench", "run", "--quick", "--no-docs", "--output", str(tmp_path),
        "--targets", ",".join(TARGETS), "--scenarios", ",".join(SCENARIOS), "--workers", "1",
        "--fanout", "20:10", "--channels", "20", "--idle", "20", "--storm", "20", "--recovery", "20",
        "--warmup", "0.3", "--window", "0.7", "--idle-window", "0.5", "--drift-check",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=280, check=False)
    files = list(tmp_path.glob("run-*-quick.json"))
    assert len(files) == 1, f"no result file; exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(files[0].read_text())
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"

    assert result["quick"] is True
    assert set(result["targets"]) == set(TARGETS)
    # neoevents is measured again after the other targets of every scenario size (--drift-check), unless it
    # was the only one measured (api, recovery); those rows stay out of the tables, in the drift table only.
    checks = [r for r in result["rows"] if r.get("drift_check")]
    compared = ("fanout", "channels", "idle", "storm")
    assert {(r["target"], r["scenario"]) for r in checks} == {("neoevents", s) for s in compared}
    for scenario in compared:
        ran = [r for r in result["rows"] if r["scenario"] == scenario and r["status"] != "skipped"]
        tail = ran[-len([r for r in checks if r["scenario"] == scenario]) :]
        assert all(r.get("drift_check") for r in tail), scenario  # the check comes after the others
    rows = [r for r in result["rows"] if not r.get("drift_check")]
    for row in rows:
        keys = {"target", "scenario", "phase", "params", "metrics", "status", "note"}
        assert set(row) == (keys if row["status"] == "skipped" else keys | {"at"})
        assert row["status"] in ("ok", "skipped"), row
        for key, value in row["metrics"].items():
            if key.endswith(("_per_s", "_us_per_delivery", "_us_per_publish", "_util", "_mb")) and value is not None:
                assert isinstance(value, int | float) and value >= 0, (key, row)

    def phases(target: str, scenario: str) -> set[str]:
        return {r["phase"] for r in rows if r["target"] == target and r["scenario"] == scenario}

    for target in TARGETS:
        assert phases(target, "fanout") == {"fixed-rate", "max-rate"}
        assert phases(target, "channels") == {"fixed-rate", "max-rate"}
        assert phases(target, "idle") == {"idle"}
        assert phases(target, "storm") == {"connect+subscribe"}
    assert phases("neoevents", "api") == {"single", "batch"}
    assert phases("neoevents", "recovery") == {"reconnect+recover"}
    for target in ("floor-websockets", "socketio-node"):
        for scenario in ("api", "recovery"):
            assert [r["status"] for r in rows if r["target"] == target and r["scenario"] == scenario] == ["skipped"]

    for row in rows:
        if row["scenario"] in ("fanout", "channels") and row["status"] == "ok":
            m = row["metrics"]
            assert m["deliveries"] > 0, row
            assert m["cpu_us_per_delivery"] is not None, row
            assert set(m["latency_ms"]) == {"p50", "p99", "p999", "max", "samples"}
            assert m["latency_ms"]["samples"] > 0, row
            # The live receiver also takes each sampled delivery's kernel receive timestamp: a delivery reaches
            # its socket before it is read.
            arrival = m["arrival_latency_ms"]
            assert arrival["samples"] == m["latency_ms"]["samples"], row
            assert arrival["p50"] <= m["latency_ms"]["p50"] + 0.01, row
        if row["scenario"] == "idle":
            assert row["metrics"]["connections_lost"] == 0
        if row["scenario"] == "fanout" and row["phase"] == "fixed-rate":
            assert row["params"]["publishes_per_s"] == 10
        if row["scenario"] == "storm":  # opened by the compiled connect-storm client (bench/stormgen)
            assert row["metrics"]["ok"] == 20
            assert row["metrics"]["connections_lost"] == 0
            # Quick runs repeat the storm twice on the same server; the row is the median (here: slower) one.
            rates = row["metrics"]["connects_per_s_rounds"]
            assert row["params"]["rounds"] == len(rates) == 2, row
            assert row["metrics"]["connects_per_s"] == min(rates), row
        if row["scenario"] == "recovery" and row["status"] == "ok":
            m = row["metrics"]
            assert m["ok"] == m["recovered"] == 20, row
            assert m["recovered_publications"] == m["expected_publications"] == 20 * m["missed_per_client"], row

    from bench.report import render

    text = render(result, files[0], charts={})
    for heading in (
        "## Targets", "## neoevents compared with the peers", "## Fan-out", "### Latency at the target points",
        "## Many channels", "## Idle connections", "## Connect storm", "### Reconnect with recovery",
        "## HTTP publish API",
        "### How far the machine drifted during the run",
    ):  # fmt: skip
        assert heading in text
    assert "| storm 20 connect+subscribe | CPU µs per connect |" in text


@pytest.mark.timeout(300)
def test_bench_runs_a_server_of_several_workers(tmp_path: Path) -> None:
    """``neoevents-workers2`` (serve --workers 2 on a private Redis): the processes counted are the supervisor,
    both workers and the Redis, and every scenario it takes part in runs."""
    skip_unless_kind_available("neoevents")
    from bench.targets import WorkersTarget

    running = WorkersTarget(2).start(tmp_path / "direct", None)
    try:
        supervisor, *others = running.pids
        parents = [_ppid(pid) for pid in others]
        assert parents.count(supervisor) == 2 and len(others) == 3  # two workers, then the Redis
        assert Path(f"/proc/{others[-1]}/comm").read_text().startswith("redis-server")
    finally:
        running.stop()
    cmd = [
        sys.executable, "-m", "bench", "run", "--quick", "--no-docs", "--output", str(tmp_path),
        "--targets", "neoevents-workers2", "--scenarios", "fanout,storm,recovery,api", "--workers", "1",
        "--fanout", "20:10", "--storm", "20", "--recovery", "20", "--warmup", "0.3", "--window", "0.7",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=280, check=False)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    [path] = tmp_path.glob("run-*-quick.json")
    rows = json.loads(path.read_text())["rows"]
    assert {(r["scenario"], r["status"]) for r in rows} == {(s, "ok") for s in ("fanout", "storm", "recovery", "api")}
    for row in rows:
        m = row["metrics"]
        if row["scenario"] == "fanout":
            assert m["deliveries"] > 0 and m["cpu_us_per_delivery"] is not None, row
        if row["scenario"] == "storm":
            assert m["ok"] == 20 and m["cpu_us_per_connect"] is not None, row
        if row["scenario"] == "recovery":
            assert m["ok"] == m["recovered"] == 20, row


def _ppid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid for {pid}")


@pytest.mark.timeout(300)
def test_bench_runs_the_storms_on_a_redis_cluster(tmp_path: Path) -> None:
    """``neoevents-redis`` (two nodes sharing a private Redis) takes the connect storm and the reconnect-with-
    recovery storm as well as the fan-out; the idle scenario and the API stay single-node."""
    skip_unless_kind_available("neoevents")
    cmd = [
        sys.executable, "-m", "bench", "run", "--quick", "--no-docs", "--output", str(tmp_path),
        "--targets", "neoevents-redis", "--scenarios", "storm,recovery,idle,api", "--workers", "1",
        "--storm", "20", "--recovery", "20", "--idle", "20", "--idle-window", "0.5",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=280, check=False)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    [path] = tmp_path.glob("run-*-quick.json")
    result = json.loads(path.read_text())
    status = {r["scenario"]: r["status"] for r in result["rows"]}
    assert status == {"storm": "ok", "recovery": "ok", "idle": "skipped", "api": "skipped"}
    for row in result["rows"]:
        m = row["metrics"]
        if row["scenario"] == "storm":
            assert m["ok"] == 20 and m["connections_lost"] == 0, row
        if row["scenario"] == "recovery":
            # The publications went through the other node and the history is in Redis.
            assert m["ok"] == m["recovered"] == 20, row
            assert m["recovered_publications"] == m["expected_publications"] == 20 * m["missed_per_client"], row

    from bench.report import render

    text = render(result, path, charts={})
    assert "| Redis engine, connect storm: connect+subscribe/s" in text
    assert "| Redis engine, reconnect with recovery: reconnects/s" in text
