"""The live receiver: a compiled program (``bench/receiver/``, Go, standard library only) that takes over a
worker's connected sockets once they are set up, and from then on reads them.

The Python workers set connections up well (HTTP upgrade, then each target's protocol) but spend about 9 µs
of their core on every delivery they read, as much as the servers they measure: at 10,000 subscribers one
publication cost the load generator some 95 ms to take in, so the latency it reported was its own. The
receiver reads the same sockets for a fraction of that, counts deliveries the same way (the payload marker
in the raw stream), samples latencies from the same connections and answers server pings. Each sample is
taken twice: when the receiver read the delivery, and when it reached the socket by the kernel's receive
timestamp (``SO_TIMESTAMPNS``), which leaves out the time it waited for the receiver.

It polls its sockets every ``POLL_US`` microseconds rather than sleeping in ``epoll_wait``: a receiver asleep
there is woken by each write that reaches it, and on loopback that wake-up runs inside the server's write
and is charged to it, while on a real network it is the receiving machine's cost. Polling adds at most
``POLL_US`` to each measured latency, alike for every target.

Each worker runs at most one receiver at a time. Its running delivery total lives in one 8-byte slot of a
file the coordinator also maps (:class:`Counters`), so :meth:`bench.loadgen.WorkerPool.delivered` reads it
without asking.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mmap
import os
import struct
import tempfile
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.gobuild import build, reply

SOURCE = Path(__file__).resolve().parent / "receiver"
POLL_US = 500


def binary() -> Path:
    """The receiver's executable, built first if its sources changed since the last build."""
    return build(SOURCE, "the live receiver")


class Counters:
    """A file of ``n`` 8-byte little-endian slots, mapped here and by the receivers (one slot each)."""

    def __init__(self, n: int) -> None:
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        fd, self.path = tempfile.mkstemp(prefix="neoevents-bench-", suffix=".counters", dir=shm)
        try:
            os.ftruncate(fd, 8 * n)
            self._map = mmap.mmap(fd, 8 * n)
        finally:
            os.close(fd)
        self.n = n

    def __getitem__(self, slot: int) -> int:
        return int(struct.unpack_from("<q", self._map, 8 * slot)[0])

    def __setitem__(self, slot: int, value: int) -> None:
        struct.pack_into("<q", self._map, 8 * slot, value)

    def total(self) -> int:
        return sum(struct.unpack_from(f"<{self.n}q", self._map))

    def close(self) -> None:
        with contextlib.suppress(BufferError, ValueError):
            self._map.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class Receiver:
    """One run of the receiver over a set of sockets (inside a worker process)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(
        cls,
        fds: Sequence[int],
        sampled: Sequence[int],
        ping: bytes,
        pong: bytes,
        counters_path: str,
        slot: int,
    ) -> Receiver:
        """Start a receiver over ``fds`` (inherited; the caller closes its copies afterwards); ``sampled`` are
        positions in ``fds``."""
        exe = await asyncio.to_thread(binary)
        proc = await asyncio.create_subprocess_exec(
            str(exe),
            counters_path,
            str(slot),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            pass_fds=tuple(fds),
            env={**os.environ, "GOMAXPROCS": "1"},
            limit=1 << 24,
        )
        receiver = cls(proc)
        header = {"fds": list(fds), "sample": list(sampled), "ping": ping.hex(), "pong": pong.hex(), "poll_us": POLL_US}
        try:
            ready = await asyncio.wait_for(receiver._send(json.dumps(header)), 30)
        except BaseException:
            receiver.kill()
            raise
        if ready.get("ready") != len(fds):
            receiver.kill()
            raise RuntimeError(f"live receiver: {ready}")
        return receiver

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    async def record(self, on: bool) -> None:
        await self._send(f"record {int(on)}")

    async def collect(self) -> tuple[dict[str, Any], array[int], array[int]]:
        """(``{"delivered", "lost", "alive", "samples", "arrival_samples"}``, the latency samples in ns until
        each sampled delivery was read, and until it reached the socket by the kernel's receive timestamp)."""
        result = await self._send("collect")
        assert self.proc.stdout is not None
        lat, arrivals = array("q"), array("q")
        lat.frombytes(await self.proc.stdout.readexactly(8 * int(result["samples"])))
        arrivals.frombytes(await self.proc.stdout.readexactly(8 * int(result.get("arrival_samples", 0))))
        return result, lat, arrivals

    async def close(self) -> dict[str, Any]:
        """Close the sockets (resets: they carry SO_LINGER 0) and end the receiver: ``{"closed", "delivered",
        "lost"}``."""
        try:
            result = await asyncio.wait_for(self._send("close"), 30)
            await asyncio.wait_for(self.proc.wait(), 10)
        finally:
            self.kill()
        return result

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    async def _send(self, line: str) -> dict[str, Any]:
        proc = self.proc
        assert proc.stdin is not None
        proc.stdin.write(line.encode() + b"\n")
        await proc.stdin.drain()
        return await reply(proc, "the live receiver")
