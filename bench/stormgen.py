"""The connect-storm client: a compiled program (``bench/stormgen/``, Go, standard library only) that opens
connections as fast as it can and holds them.

The connect storm measures how many connections a server sets up per second, so its client must cost less
per connection than the server; the Python load generator (:mod:`bench.loadgen`) spends about 220 µs of its
core on each, most of it in the interpreter. This client takes the same input the Python workers build — per
connection the HTTP upgrade request and the set-up bytes (:func:`bench.loadgen._setup_bytes`, with the
tokens of :func:`bench.loadgen._tokens`) — and completes each set-up the way :class:`bench.loadgen.Subscriber`
does: TCP connect from one of the source addresses, upgrade, then the target's protocol, answering pings and
failing on close frames and error replies. For the reconnect-with-recovery storm it subscribes with the
positions the Python workers recorded on the first connection (:meth:`bench.loadgen.WorkerPool.positions`) and
counts the subscriptions recovered and the publications they returned.

It polls its sockets instead of sleeping in ``epoll_wait``, as the live receiver does (:mod:`bench.receiver`):
on loopback the wake-up of a sleeping client runs inside the server's write and would be charged to it.

The binary is built with ``go build`` into a cache directory outside the repository
(``~/.cache/neoevents/bench/stormgen``, or under ``$XDG_CACHE_HOME``), once per version of its sources, and
runs with GOMAXPROCS=1 pinned to the load generator's CPUs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

from bench import wire
from bench.gobuild import build, reply
from bench.loadgen import ConnSpec, _setup_bytes, _tokens
from bench.targets import pinned

SOURCE = Path(__file__).resolve().parent / "stormgen"
# How long the client sleeps between polls when nothing is ready (it never sleeps in epoll_wait, see main.go).
POLL_US = 50


def binary() -> Path:
    """The client's executable, built first if its sources changed since the last build."""
    return build(SOURCE, "the connect-storm client")


def encode(spec: ConnSpec, positions: dict[int, tuple[str, int]] | None = None) -> bytes:
    """The client's input for ``spec``: a JSON header line, then per connection its source address index and
    the lengths of its upgrade request and set-up bytes (``!BII``), followed by those bytes. A ``spec`` that
    recovers needs ``positions``: connection index -> (epoch, offset) to recover from."""
    if spec.recover and (spec.proto != "centrifugo" or positions is None):
        raise ValueError("recovery needs the Centrifugo protocol and the recorded positions")
    sources = list(spec.sources)
    if not 0 < len(sources) < 256:
        raise ValueError(f"{len(sources)} source addresses")
    header = {
        "proto": spec.proto,
        "host": spec.host,
        "port": spec.port,
        "concurrency": spec.concurrency,
        "timeout": spec.timeout,
        "sources": sources,
        "recover": spec.recover,
        "poll_us": POLL_US,
    }
    parts = [json.dumps(header).encode() + b"\n"]
    tokens = _tokens(spec)
    for k, i in enumerate(range(spec.first, spec.first + spec.count)):
        channel = spec.channel.format(i=i)
        setup = _setup_bytes(spec, i, tokens[k], channel, positions.get(i) if positions is not None else None)
        request = wire.upgrade_request(spec.host, spec.port, spec.path.format(channel=channel))
        parts.append(struct.pack("!BII", i % len(sources), len(request), len(setup)) + request + setup)
    return b"".join(parts)


class StormClient:
    """One run of the compiled client: :meth:`prepare` starts it with the connections of a :class:`ConnSpec`,
    :meth:`open` opens them all (timed by the client itself), :meth:`close` closes them and ends it."""

    def __init__(self, cpus: list[int] | None) -> None:
        self.cpus = cpus
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None else []

    async def prepare(self, spec: ConnSpec, positions: dict[int, tuple[str, int]] | None = None) -> None:
        if self.proc is not None:
            raise RuntimeError("the connect-storm client is already running")
        exe = await asyncio.to_thread(binary)
        data = await asyncio.to_thread(encode, spec, positions)
        fd, name = tempfile.mkstemp(prefix="stormgen-", suffix=".bin")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            env = {**os.environ, "GOMAXPROCS": "1"}
            with pinned(self.cpus):  # the child inherits the affinity (and Go sizes itself from it)
                self.proc = await asyncio.create_subprocess_exec(
                    str(exe),
                    name,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=env,
                )
            ready = await asyncio.wait_for(self._reply(), 60)
        finally:
            os.unlink(name)
        if ready.get("ready") != spec.count:
            raise RuntimeError(f"connect-storm client: {ready}")

    async def open(self) -> dict[str, Any]:
        """Open every prepared connection: ``{"ok", "failed", "errors", "elapsed"}`` like the worker pool's, and
        ``{"recovered", "recovered_publications"}``."""
        return await self._command("open")

    async def close(self) -> dict[str, Any]:
        """Close the connections (resets) and end the client: ``{"closed", "lost"}``; lost = closed by the server
        after their set-up."""
        proc = self.proc
        result: dict[str, Any] = {}
        if proc is None:
            return {}
        try:
            if proc.returncode is None:
                result = await asyncio.wait_for(self._command("close"), 30)
                await asyncio.wait_for(proc.wait(), 10)
        finally:
            self.kill()
            self.proc = None
        return result

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    async def _command(self, command: str) -> dict[str, Any]:
        proc = self.proc
        if proc is None or proc.stdin is None:
            raise RuntimeError("the connect-storm client is not running")
        proc.stdin.write(command.encode() + b"\n")
        await proc.stdin.drain()
        return await self._reply()

    async def _reply(self) -> dict[str, Any]:
        assert self.proc is not None
        return await reply(self.proc, "the connect-storm client")
