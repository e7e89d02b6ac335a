"""The supervisor of ``serve --workers``, with stand-in workers (no server), in a process of its own.

Each test runs :class:`neoevents.workers.Supervisor` in a fresh Python process whose workers behave in one
way (serve until SIGTERM, fail before being ready, ignore SIGTERM, exit while serving...) and checks the
supervisor's exit code, its log and which workers it forked.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SCRIPT = r"""
import logging, os, signal, sys, time
from pathlib import Path
from neoevents.workers import Supervisor

logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
mode, marker = sys.argv[1], Path(sys.argv[2])

def run_worker(index, ready):
    stop = []
    signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else (lambda *_: stop.append(1)))
    if mode == "fail-before-ready" and index == 2:
        return 3
    if mode == "never-ready":
        time.sleep(60)
    ready()
    os.write(1, f"serving {index} {os.getpid()}\n".encode())  # one write: lines of processes never mix
    if mode == "crash-once" and index == 1 and not marker.exists():
        marker.touch()
        time.sleep(0.3)
        return 5
    if mode == "always-crash" and index == 1:
        time.sleep(0.3)
        return 6
    while not stop:
        time.sleep(0.02)
    return 0

supervisor = Supervisor(2, run_worker, stop_timeout=2.0, start_timeout=2.0, on_ready=lambda: print("READY", flush=True))
sys.exit(supervisor.run())
"""


Start = Callable[[str], subprocess.Popen[str]]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """``start(mode)``: a supervisor of stand-in workers in a session of its own, killed with its workers
    after the test whatever happened."""
    started: list[subprocess.Popen[str]] = []

    def run(mode: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, mode, str(tmp_path / "marker")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        started.append(proc)
        return proc

    yield run
    for proc in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def wait_for_lines(proc: subprocess.Popen[str], *wanted: str, timeout: float = 15.0) -> list[str]:
    """Lines of output up to the one that contains the last of ``wanted`` (each in turn)."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    pending = list(wanted)
    while pending:
        assert time.monotonic() < deadline, f"waited for {pending[0]!r}; got {lines}"
        line = proc.stdout.readline()
        assert line, f"output ended before {pending[0]!r}; got {lines}"
        lines.append(line.rstrip("\n"))
        if pending[0] in line:
            pending.pop(0)
    return lines


def finish(proc: subprocess.Popen[str], timeout: float = 15.0) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def serving_pids(lines: list[str]) -> list[int]:
    return [int(line.split()[2]) for line in lines if line.startswith("serving ")]


def test_ready_once_every_worker_is_then_sigterm_stops_them_all(start: Start) -> None:
    proc = start("serve")
    lines = wait_for_lines(proc, "READY")
    assert sum("worker" in line and "ready (pid" in line for line in lines) == 2
    proc.send_signal(signal.SIGTERM)
    code, out = finish(proc)
    pids = serving_pids(lines + out.splitlines())
    assert code == 0
    assert len(pids) == 2 and not any(alive(pid) for pid in pids)
    assert out.count("READY") == 0  # announced once, before the stop


def test_sigint_stops_them_too(start: Start) -> None:
    proc = start("serve")
    wait_for_lines(proc, "READY")
    proc.send_signal(signal.SIGINT)
    assert finish(proc)[0] == 0


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("fail-before-ready", "worker 2 exited with code 3 before it was ready; stopping"),
        ("never-ready", "workers not ready after 2 s; stopping"),
    ],
)
def test_a_start_fails_unless_every_worker_gets_ready(start: Start, mode: str, message: str) -> None:
    code, out = finish(start(mode))
    assert code == 1
    assert message in out
    assert "READY" not in out
    assert not any(alive(pid) for pid in serving_pids(out.splitlines()))


def test_a_worker_exiting_while_serving_is_restarted(start: Start) -> None:
    proc = start("crash-once")
    lines = wait_for_lines(proc, "READY", "worker 1 exited with code 5; restarting it in 1 s", "serving 1")
    first, second = [int(line.split()[2]) for line in lines if line.startswith("serving 1 ")]
    assert first != second and alive(second) and not alive(first)
    proc.send_signal(signal.SIGTERM)
    assert finish(proc)[0] == 0


def test_a_worker_that_keeps_exiting_is_restarted_with_growing_delays(start: Start) -> None:
    proc = start("always-crash")
    lines = wait_for_lines(
        proc,
        "READY",
        "worker 1 exited with code 6; restarting it in 1 s",
        "worker 1 exited with code 6; restarting it in 2 s",
        "worker 1 exited with code 6; restarting it in 4 s",
        timeout=30,
    )
    assert sum(line.startswith("serving 2 ") for line in lines) == 1  # the other worker was left alone
    proc.send_signal(signal.SIGTERM)
    assert finish(proc)[0] == 0


def test_a_worker_ignoring_sigterm_is_killed_after_the_stop_timeout(start: Start) -> None:
    proc = start("stubborn")
    lines = wait_for_lines(proc, "READY")
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code, out = finish(proc)
    assert code == 1
    assert "did not stop in 2 s: killing it" in out
    assert 1.5 < time.monotonic() - started < 10
    assert not any(alive(pid) for pid in serving_pids(lines + out.splitlines()))


def test_workers_stop_when_the_supervisor_is_killed(start: Start) -> None:
    proc = start("serve")
    lines = wait_for_lines(proc, "READY")
    while len(serving_pids(lines)) < 2:  # a worker's own line may come after the announcement
        lines += wait_for_lines(proc, "serving")
    pids = serving_pids(lines)
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, "workers still running without their supervisor"
        time.sleep(0.05)
