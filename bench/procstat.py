"""Process CPU time and memory from /proc (Linux)."""

from __future__ import annotations

import os

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (its threads included, its children not), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    # The command name may contain spaces and parentheses: fields are counted from the last ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` in bytes."""
    with open(f"/proc/{pid}/statm", "rb") as f:
        return int(f.read().split()[1]) * PAGE_SIZE


def self_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def cpu_times(cpus: list[int]) -> dict[str, float]:
    """Seconds the given CPUs spent busy (anything but idle/iowait) and in softirq, from /proc/stat.

    Loopback TCP work that the kernel defers to ksoftirqd is charged to no process; the busy time of the
    server's core shows it (together with anything else that ran there).
    """
    busy = softirq = 0.0
    wanted = {f"cpu{c}" for c in cpus}
    with open("/proc/stat") as f:
        for line in f:
            name, *values = line.split()
            if name in wanted:
                ticks = [int(v) for v in values[:8]]
                busy += sum(ticks) - ticks[3] - ticks[4]
                softirq += ticks[6]
    return {"busy": busy / CLOCK_TICKS, "softirq": softirq / CLOCK_TICKS}
