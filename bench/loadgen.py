"""The load generator: worker processes holding many WebSocket subscribers each.

Every worker is a separate process running uvloop with plain :class:`asyncio.Protocol` connections (no
WebSocket library on the receive path). A connection is set up properly — HTTP upgrade, then the target's
own protocol (Centrifugo JSON ``connect`` + ``subscribe``, NATS ``CONNECT``/``SUB``/``PING``, or nothing
for the floor servers) — and from then on incoming bytes are never parsed into frames: deliveries are
counted by counting the payload marker ``"ts":`` in the raw stream (one C-level ``bytes.count`` per
read, however many frames the read holds). A sample of connections also extracts the embedded send
timestamps for publish→receive latency. Server pings (``{}`` for Centrifugo JSON, ``PING`` for NATS, the
Engine.IO ping packet ``2`` for socket.io) are answered so that long idle windows stay connected.

Once a scenario's connections are set up, each worker hands its live sockets to a compiled live receiver
(:mod:`bench.receiver`, :meth:`WorkerPool.hand_off`), which reads them the same way for a fraction of the
cost; the worker keeps what the set-up recorded and relays ``record``/``collect``/``close`` to it.

Protocols: ``centrifugo`` (JSON ``connect`` + ``subscribe``, optionally with ``recover`` and the position a
previous connection of the same worker recorded), ``nats``, ``engineio`` (Engine.IO v4 / Socket.IO v5 over a raw
WebSocket: the server's ``0{...}`` open packet, the client's ``40``, the server's ``40{"sid":...}``; events
arrive as ``42["pub",{...}]``) and ``raw`` (subscribed once the upgrade succeeded: the floors, Django Channels).

The coordinator talks to workers over a pipe (:class:`WorkerPool`) and reads their running delivery totals
from a shared array without asking.

The connect storms do not use these workers: they are driven by the compiled client of :mod:`bench.stormgen`
(``bench/stormgen/main.go``), which takes the upgrade requests and set-up bytes built here
(:func:`_setup_bytes`, :func:`_tokens`) and completes the set-up the way :class:`Subscriber` does. A change to
a protocol's set-up belongs in both. For the reconnect-with-recovery storm, the first connections are opened
here and record their subscription positions, which :meth:`WorkerPool.positions` hands to that client.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import multiprocessing as mp
import os
import resource
import socket
import struct
import time
import traceback
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, cast

from bench import wire
from bench.receiver import Counters, Receiver

IP_BIND_ADDRESS_NO_PORT = 24
SOURCE_ADDRESSES = tuple(f"127.0.0.{i}" for i in range(2, 10))
MAX_LATENCY_SAMPLES = 2_000_000

_HANDSHAKE, _SETUP, _LIVE, _CLOSED, _HANDED = 0, 1, 2, 3, 4  # _HANDED: read by the live receiver now
_LINGER_ZERO = struct.pack("ii", 1, 0)


@dataclass
class ConnSpec:
    """A range of connections for one worker. ``channel`` may contain ``{i}`` (the connection number)."""

    proto: str  # "centrifugo" | "raw" | "nats" | "engineio"
    host: str
    port: int
    path: str  # may contain {channel}
    channel: str
    first: int
    count: int
    secret: str = ""
    sample_every: int = 0  # every n-th connection records latency; 0 = none
    concurrency: int = 200
    timeout: float = 20.0
    sources: Sequence[str] = SOURCE_ADDRESSES
    recover: bool = False  # centrifugo: subscribe with recover + the position recorded by the last connection i


class _Worker:
    """State of one worker process."""

    def __init__(self, index: int, counters: Any, live_counters: str) -> None:
        self.index = index
        self.counters = counters
        self.live_counters = live_counters  # the file of the receivers' running totals (slot = index)
        self.receiver: Receiver | None = None
        self.delivered = 0
        self.recording = False
        self.latencies = array("q")
        self.conns: list[Subscriber] = []
        self.prepared: list[tuple[ConnSpec, int, bytes, bytes]] = []
        self.lost = 0
        self.errors: list[str] = []
        # centrifugo: (epoch, offset) of connection i's subscription, from its subscribe reply
        self.positions: dict[int, tuple[str, int]] = {}
        self.recovered = 0  # subscribe replies with "recovered": true
        self.recovered_publications = 0  # publications those replies carried

    def add_delivered(self, n: int) -> None:
        self.delivered += n
        self.counters[self.index] = self.delivered


class Subscriber(asyncio.Protocol):
    __slots__ = (
        "_buf",
        "_carry",
        "_ping_pat",
        "_pong",
        "_setup",
        "_worker",
        "index",
        "proto",
        "ready",
        "sample",
        "state",
        "transport",
    )

    def __init__(
        self,
        worker: _Worker,
        index: int,
        proto: str,
        request: bytes,
        setup: bytes,
        sample: bool,
        ready: asyncio.Future[None],
    ) -> None:
        self._worker = worker
        self.index = index
        self.proto = proto
        self._setup = setup
        self._buf = request  # the upgrade request until connection_made
        self._carry = b""
        self.sample = sample
        self.ready = ready
        self.state = _HANDSHAKE
        self.transport: asyncio.Transport | None = None
        if proto == "nats":
            self._ping_pat, self._pong = b"PING\r\n", wire.client_frame(b"PONG\r\n", wire.OP_BINARY)
        elif proto == "centrifugo":
            self._ping_pat, self._pong = b"{}", wire.client_frame(b"{}")
        elif proto == "engineio":
            # The whole server frame of the ping packet "2": no payload byte can be 0x81.
            self._ping_pat, self._pong = b"\x81\x012", wire.client_frame(b"3")
        else:
            self._ping_pat, self._pong = b"", b""

    # ---- set-up --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio.Transport
        self.transport.write(self._buf)
        self._buf = b""

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state == _LIVE:
            self._worker.lost += 1
        self.state = _CLOSED
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed during set-up: {exc!r}"))

    def _fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(reason))
        if self.transport is not None:
            self.transport.abort()

    def _go_live(self, rest: bytes) -> None:
        self.state = _LIVE
        self._buf = b""
        if not self.ready.done():
            self.ready.set_result(None)
        if rest:
            self._live(rest)

    def data_received(self, data: bytes) -> None:
        if self.state == _LIVE:
            self._live(data)
            return
        buf = self._buf + data
        if self.state == _HANDSHAKE:
            idx = buf.find(b"\r\n\r\n")
            if idx < 0:
                self._buf = buf
                return
            status = buf[: buf.find(b"\r\n")]
            if b" 101 " not in status + b" ":
                self._fail(f"upgrade refused: {status.decode(errors='replace')}")
                return
            buf = buf[idx + 4 :]
            self.state = _SETUP
            if self.proto == "raw":
                self._go_live(buf)
                return
            if self.proto == "centrifugo":
                assert self.transport is not None
                self.transport.write(self._setup)
        self._setup_frames(buf)

    def _setup_frames(self, buf: bytes) -> None:
        pos = 0
        while self.state == _SETUP:
            parsed = wire.parse_frame(buf, pos)
            if parsed is None:
                self._buf = buf[pos:]
                return
            opcode, payload, pos = parsed
            if opcode == wire.OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 0
                self._fail(f"closed by the server during set-up: {code} {payload[2:].decode(errors='replace')}")
                return
            if opcode == wire.OP_PING:
                assert self.transport is not None
                self.transport.write(wire.client_frame(payload, wire.OP_PONG))
                continue
            if opcode not in (wire.OP_TEXT, wire.OP_BINARY):
                continue
            if self.proto == "centrifugo":
                self._centrifugo_setup(payload, buf[pos:])
            elif self.proto == "engineio":
                self._engineio_setup(payload, buf[pos:])
            else:
                self._nats_setup(payload, buf[pos:])

    def _centrifugo_setup(self, payload: bytes, rest: bytes) -> None:
        lines = payload.split(b"\n")
        for k, line in enumerate(lines):
            if line == b"{}":
                assert self.transport is not None
                self.transport.write(self._pong)
                continue
            if not line:
                continue
            reply = json.loads(line)
            if "error" in reply:
                self._fail(f"command {reply.get('id')} failed: {reply['error']}")
                return
            if reply.get("id") == 2:
                self._subscribed(reply.get("subscribe") or {})
                tail = b"\n".join(lines[k + 1 :])
                self._go_live(tail + b"\n" + rest if tail else rest)
                return

    def _subscribed(self, result: dict[str, Any]) -> None:
        worker = self._worker
        if "epoch" in result:
            worker.positions[self.index] = (result["epoch"], int(result.get("offset", 0)))
        if result.get("recovered"):
            worker.recovered += 1
            worker.recovered_publications += len(result.get("publications") or ())

    def _engineio_setup(self, payload: bytes, rest: bytes) -> None:
        assert self.transport is not None
        if payload.startswith(b"40"):
            self._go_live(rest)
        elif payload.startswith(b"44"):
            self._fail(f"socket.io connect refused: {payload[:200]!r}")
        elif payload.startswith(b"0{"):
            self.transport.write(self._setup)  # "40": connect to the default namespace
        elif payload == b"2":
            self.transport.write(self._pong)

    def _nats_setup(self, payload: bytes, rest: bytes) -> None:
        assert self.transport is not None
        if payload.startswith(b"INFO"):
            self.transport.write(self._setup)
            return
        if b"-ERR" in payload:
            self._fail(f"NATS error: {payload[:200]!r}")
            return
        if b"PING\r\n" in payload:
            self.transport.write(self._pong)
        idx = payload.find(b"PONG\r\n")
        if idx >= 0:
            tail = payload[idx + 6 :]
            self._go_live(tail + rest if tail else rest)

    # ---- the measured path ---------------------------------------------------------------------

    def _live(self, data: bytes) -> None:
        carry = self._carry
        n = data.count(wire.MARK)
        if carry:
            # A marker cut in two by the read boundary; neither side alone can hold a whole one.
            n += (carry[-4:] + data[:4]).count(wire.MARK)
        pat = self._ping_pat
        if pat and (pat in data or (carry and pat in carry[-(len(pat) - 1) :] + data[: len(pat) - 1])):
            assert self.transport is not None
            self.transport.write(self._pong)
        self._carry = data[-8:] if len(data) >= 8 else (carry + data)[-8:]
        if n:
            worker = self._worker
            worker.add_delivered(n)
            if self.sample and worker.recording:
                now = wire.now_ns()
                lat = worker.latencies
                if len(lat) < MAX_LATENCY_SAMPLES:
                    for m in wire.TS_RE.finditer(data):
                        lat.append(now - int(m.group(1)))


def _setup_bytes(spec: ConnSpec, i: int, token: str, channel: str, position: tuple[str, int] | None) -> bytes:
    if spec.proto == "centrifugo":
        connect = json.dumps({"id": 1, "connect": {"token": token}}, separators=(",", ":"))
        sub: dict[str, Any] = {"channel": channel}
        if spec.recover:
            if position is None:
                raise RuntimeError(f"connection {i} has no recorded position to recover from")
            sub.update(recover=True, epoch=position[0], offset=position[1])
        subscribe = json.dumps({"id": 2, "subscribe": sub}, separators=(",", ":"))
        return wire.client_frame(f"{connect}\n{subscribe}".encode())
    if spec.proto == "engineio":
        return wire.client_frame(b"40")
    if spec.proto == "nats":
        connect = json.dumps({"verbose": False, "pedantic": False, "protocol": 1, "name": f"b{i}"})
        return wire.client_frame(f"CONNECT {connect}\r\nSUB {channel} 1\r\nPING\r\n".encode(), wire.OP_BINARY)
    return b""


def _tokens(spec: ConnSpec) -> list[str]:
    if spec.proto != "centrifugo":
        return [""] * spec.count
    import jwt

    exp = int(time.time()) + 3 * 3600
    return [
        jwt.encode({"sub": f"u{i}", "exp": exp}, spec.secret, algorithm="HS256")
        for i in range(spec.first, spec.first + spec.count)
    ]


class _WorkerLoop:
    def __init__(self, index: int, conn: Connection, counters: Any, live_counters: str) -> None:
        self.conn = conn
        self.w = _Worker(index, counters, live_counters)
        self.stop = asyncio.Event()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self._on_command)
        os.set_blocking(self.conn.fileno(), True)  # the event loop made it non-blocking; replies must not fail
        await self.stop.wait()
        loop.remove_reader(self.conn.fileno())

    def _on_command(self) -> None:
        try:
            msg = self.conn.recv()
        except EOFError:
            self.stop.set()
            return
        asyncio.get_running_loop().create_task(self._run(msg))

    async def _run(self, msg: dict[str, Any]) -> None:
        try:
            result = await getattr(self, "op_" + msg["op"])(**msg.get("args", {}))
        except Exception as exc:
            result = {"error": f"{exc!r}\n{traceback.format_exc()}"}
        self.conn.send(result)

    async def op_prepare(self, spec: ConnSpec) -> dict[str, Any]:
        tokens = _tokens(spec)
        for k, i in enumerate(range(spec.first, spec.first + spec.count)):
            channel = spec.channel.format(i=i)
            setup = _setup_bytes(spec, i, tokens[k], channel, self.w.positions.get(i))
            request = wire.upgrade_request(spec.host, spec.port, spec.path.format(channel=channel))
            self.w.prepared.append((spec, i, request, setup))
        return {"prepared": len(self.w.prepared)}

    async def op_open(self) -> dict[str, Any]:
        prepared, self.w.prepared = self.w.prepared, []
        if not prepared:
            return {"ok": 0, "failed": 0, "errors": [], "elapsed": 0.0}
        # A fixed set of runners, each opening connections one after another: no task, semaphore slot or
        # gather entry per connection, and no garbage collection while they are opened, so the load
        # generator's core goes to the connections themselves.
        pending = iter(prepared)
        errors: list[BaseException] = []

        async def runner() -> None:
            for spec, i, request, setup in pending:
                try:
                    await self._open_one(spec, i, request, setup)
                except Exception as exc:
                    errors.append(exc)

        runners = min(len(prepared), prepared[0][0].concurrency)
        gc.disable()
        try:
            started = time.monotonic()
            await asyncio.gather(*(runner() for _ in range(runners)))
            elapsed = time.monotonic() - started
        finally:
            gc.enable()
        return {
            "ok": len(prepared) - len(errors),
            "failed": len(errors),
            "errors": sorted({repr(e)[:300] for e in errors})[:5],
            "elapsed": elapsed,
        }

    async def _open_one(self, spec: ConnSpec, i: int, request: bytes, setup: bytes) -> None:
        loop = asyncio.get_running_loop()
        # One deadline for the whole set-up (asyncio.timeout, not wait_for: no extra task per step).
        async with asyncio.timeout(spec.timeout):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                # No TIME_WAIT left behind on the client side: the source ports stay reusable run after run.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.bind((spec.sources[i % len(spec.sources)], 0))
                sock.setblocking(False)
                await loop.sock_connect(sock, (spec.host, spec.port))
            except BaseException:
                sock.close()
                raise
            ready: asyncio.Future[None] = loop.create_future()
            sample = spec.sample_every > 0 and i % spec.sample_every == 0
            _, proto = await loop.create_connection(
                lambda: Subscriber(self.w, i, spec.proto, request, setup, sample, ready), sock=sock
            )
            self.w.conns.append(proto)
            await ready

    async def op_hand_off(self) -> dict[str, Any]:
        """Hand the live connections over to a live receiver (:mod:`bench.receiver`), which reads them from now
        on; the Python side keeps their set-up results. ``{"handed": N, "pid": receiver pid or None}``."""
        w = self.w
        if w.receiver is not None:
            raise RuntimeError("this worker's connections are already read by a live receiver")
        live = [c for c in w.conns if c.state == _LIVE and c.transport is not None]
        if not live:
            return {"handed": 0, "pid": None}
        if len({c.proto for c in live}) != 1:
            raise RuntimeError("a live receiver takes connections of one protocol")
        fds: list[int] = []
        try:
            for c in live:
                assert c.transport is not None
                c.transport.pause_reading()
                fds.append(os.dup(c.transport.get_extra_info("socket").fileno()))
            sampled = [k for k, c in enumerate(live) if c.sample]
            first = live[0]
            w.receiver = await Receiver.start(fds, sampled, first._ping_pat, first._pong, w.live_counters, w.index)
        finally:
            for fd in fds:
                os.close(fd)
        for c in live:
            c.state = _HANDED
            assert c.transport is not None
            c.transport.abort()  # closes this process's descriptor only: the receiver holds the socket
        w.conns = [c for c in w.conns if c.state != _HANDED]
        return {"handed": len(live), "pid": w.receiver.pid}

    async def op_record(self, on: bool) -> dict[str, Any]:
        if on:
            self.w.latencies = array("q")
        self.w.recording = on
        if self.w.receiver is not None:
            await self.w.receiver.record(on)
        return {}

    async def op_collect(self) -> dict[str, Any]:
        w = self.w
        alive = sum(1 for c in w.conns if c.state == _LIVE)
        delivered, lost, latencies = w.delivered, w.lost, w.latencies
        arrivals = array("q")  # only the live receiver has the kernel's receive timestamps
        if w.receiver is not None:
            live, samples, arrivals = await w.receiver.collect()
            delivered += live["delivered"]
            lost += live["lost"]
            alive += live["alive"]
            latencies = latencies + samples
        return {
            "delivered": delivered,
            "latencies": latencies.tobytes(),
            "arrivals": arrivals.tobytes(),
            "lost": lost,
            "alive": alive,
            "recovered": w.recovered,
            "recovered_publications": w.recovered_publications,
        }

    async def op_positions(self) -> dict[str, Any]:
        return {"positions": self.w.positions}

    async def op_close(self) -> dict[str, Any]:
        receiver, self.w.receiver = self.w.receiver, None
        if receiver is not None:
            # Its deliveries move into this worker's own total; the coordinator then clears the receiver's slot.
            final = await receiver.close()
            self.w.add_delivered(int(final["delivered"]))
            handed = int(final["closed"])
        else:
            handed = 0
        conns, self.w.conns = self.w.conns, []
        for c in conns:
            if c.transport is not None and c.state != _CLOSED:
                c.transport.abort()
        deadline = time.monotonic() + 10
        while any(c.state != _CLOSED for c in conns) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.w.lost = 0
        self.w.latencies = array("q")
        self.w.recovered = self.w.recovered_publications = 0
        return {"closed": len(conns) + handed}

    async def op_exit(self) -> dict[str, Any]:
        self.stop.set()
        return {}


def _worker_main(index: int, conn: Connection, counters: Any, live_counters: str, cpus: list[int] | None) -> None:
    if cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cpus)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    import uvloop

    uvloop.run(_WorkerLoop(index, conn, counters, live_counters).serve())


class WorkerPool:
    """``n`` load-generator processes, their live receivers, and the shared delivery totals of both."""

    def __init__(self, n: int, cpus: list[int] | None) -> None:
        ctx = mp.get_context("spawn")
        self.counters: Any = ctx.Array("q", n, lock=False)
        self.live = Counters(n)  # slot i: the running total of worker i's live receiver
        self.receiver_pids: dict[int, int] = {}
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for i in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(i, child, self.counters, self.live.path, cpus), daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    @property
    def size(self) -> int:
        return len(self.conns)

    @property
    def pids(self) -> list[int]:
        """The workers' processes and their running live receivers'."""
        return [int(p.pid) for p in self.procs] + list(self.receiver_pids.values())

    def delivered(self) -> int:
        return int(sum(self.counters)) + self.live.total()

    async def call(self, index: int, op: str, **args: Any) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        conn = self.conns[index]
        conn.send({"op": op, "args": args})
        fut: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(conn.fileno(), readable)
        os.set_blocking(conn.fileno(), True)
        try:
            await fut
        finally:
            loop.remove_reader(conn.fileno())
        result: dict[str, Any] = conn.recv()
        if "error" in result:
            raise RuntimeError(f"load-generator worker {index}: {result['error']}")
        return result

    async def call_all(
        self, op: str, per_worker: Callable[[int], dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        return list(
            await asyncio.gather(*(self.call(i, op, **(per_worker(i) if per_worker else {})) for i in range(self.size)))
        )

    async def prepare(self, spec: ConnSpec) -> None:
        """Split ``spec.count`` connections over the workers (contiguous ranges)."""
        n, w = spec.count, self.size
        ranges = [(spec.first + k * n // w, spec.first + (k + 1) * n // w) for k in range(w)]

        def args(k: int) -> dict[str, Any]:
            lo, hi = ranges[k]
            part = ConnSpec(**{**spec.__dict__, "first": lo, "count": hi - lo})
            return {"spec": part}

        await self.call_all("prepare", args)

    async def open(self) -> dict[str, Any]:
        results = await self.call_all("open")
        errors: list[str] = []
        for r in results:
            errors.extend(r["errors"])
        return {
            "ok": sum(r["ok"] for r in results),
            "failed": sum(r["failed"] for r in results),
            "errors": errors[:5],
            "elapsed": max(r["elapsed"] for r in results),
        }

    async def hand_off(self) -> int:
        """Hand every worker's live connections to its live receiver (:mod:`bench.receiver`); the number handed."""
        results = await self.call_all("hand_off")
        for k, r in enumerate(results):
            if r["pid"] is not None:
                self.receiver_pids[k] = int(r["pid"])
        return sum(r["handed"] for r in results)

    async def record(self, on: bool) -> None:
        await self.call_all("record", lambda _: {"on": on})

    async def collect(self) -> dict[str, Any]:
        results = await self.call_all("collect")
        lat, arrivals = array("q"), array("q")
        for r in results:
            lat.frombytes(r["latencies"])
            arrivals.frombytes(r["arrivals"])
        return {
            "delivered": sum(r["delivered"] for r in results),
            "lost": sum(r["lost"] for r in results),
            "alive": sum(r["alive"] for r in results),
            "recovered": sum(r["recovered"] for r in results),
            "recovered_publications": sum(r["recovered_publications"] for r in results),
            "latencies": lat,
            "arrivals": arrivals,
        }

    async def positions(self) -> dict[int, tuple[str, int]]:
        """The subscription positions recorded by every worker: connection index -> (epoch, offset)."""
        merged: dict[int, tuple[str, int]] = {}
        for r in await self.call_all("positions"):
            merged.update(r["positions"])
        return merged

    async def close_connections(self) -> None:
        await self.call_all("close")
        self.receiver_pids.clear()
        for k in range(self.size):
            self.live[k] = 0  # moved into the workers' own totals when their receivers closed

    async def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.call_all("exit"), 5)
        for proc in self.procs:
            proc.join(3)
            if proc.is_alive():
                proc.kill()
                proc.join(3)
        self.live.close()
        for conn in self.conns:
            conn.close()
        self.live.close()

    def kill(self) -> None:
        """Kill the workers still alive (an interrupted run); no-op after :meth:`shutdown`."""
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
                proc.join(3)
        self.live.close()
