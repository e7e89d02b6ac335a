"""Benchmark targets: the servers under test and how the load generator speaks to each of them.

A target says how to start its server (pinned to the server CPUs), which subscriber protocol the load
generator uses (``centrifugo`` JSON, ``nats`` over WebSocket, ``engineio`` for socket.io servers, or ``raw``
for the floors and Django Channels), how logical channel names map onto its own, and which publisher injects
publications. Adding a peer means one more :class:`Target` here plus, if it speaks a new protocol, one more
branch in :class:`bench.loadgen.Subscriber` and in the connect-storm client (``bench/stormgen/main.go``) and a
publisher in :mod:`bench.publishers`.

A target that needs a Redis (python-socketio's Redis manager, ``channels_redis``) starts its own
``redis-server`` on a free port, pinned to the server CPUs too; its CPU time and memory are counted with the
server's (:attr:`RunningTarget.pids`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import gobuild
from bench.publishers import HttpApiPublisher, NatsPublisher, Publisher, WsPublisher
from tests.support.servers import ServerOptions, centrifugo_bin_path, free_port, start_server

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
NODE_MODULES = REPO / "tests" / "conformance" / "js" / "node_modules"
PEERS = REPO / "bench" / "peers"
PEER_NODE_MODULES = PEERS / "node_modules"
ENGINEIO_PATH = "/socket.io/?EIO=4&transport=websocket&room={channel}"

# The namespaces every scenario uses: "bench" for fan-out channels, "tenant" for tenant:<i>:events, and
# "recover" (history and forced recovery) for the reconnect-with-recovery storm.
RECOVER_NAMESPACE = "recover"
BENCH_OPTIONS = ServerOptions(
    secret="bench-secret-0123456789abcdef0123456789",
    api_key="bench-api-key",
    namespaces=[
        {"name": "bench", "allow_subscribe_for_client": True, "history_size": 0},
        {"name": "tenant", "allow_subscribe_for_client": True, "history_size": 0},
        {
            "name": RECOVER_NAMESPACE,
            "allow_subscribe_for_client": True,
            "history_size": 100,
            "history_ttl": 600,
            "force_recovery": True,
        },
    ],
    log_level="error",
)


@contextlib.contextmanager
def pinned(cpus: list[int] | None) -> Iterator[None]:
    """Run the body (which starts a server) with this process pinned to ``cpus``: the child inherits it.

    The Go runtime sizes GOMAXPROCS from the affinity it starts with, so pinning before exec matters.
    """
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@dataclass
class Endpoint:
    """What the load generator needs to know about a running target."""

    proto: str  # subscriber protocol: "centrifugo" | "nats" | "raw"
    host: str
    port: int
    path: str  # WebSocket path; may contain {channel}
    secret: str = ""


class RunningTarget:
    def __init__(self, name: str, pid: int, endpoint: Endpoint, stop: contextlib.ExitStack) -> None:
        self.name = name
        self.pid = pid
        self.endpoint = endpoint
        self._stop = stop
        self.extra_pids: list[int] = []  # processes serving with it (a Redis): their CPU and RSS count too

    @property
    def pids(self) -> list[int]:
        return [self.pid, *self.extra_pids]

    def channel(self, logical: str) -> str:
        return logical

    async def publisher(self, connections: int = 4) -> Publisher:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.close()


class Target:
    name = ""
    description = ""
    has_api = False  # serves the Centrifugo HTTP API (the api scenario)
    has_auth = False  # connections carry a JWT and subscribe with a protocol command
    has_recovery = False  # history with recovery on reconnect (the recovery scenario)
    slow = False  # tens of µs per delivery or more: longer time budgets (connecting, draining backlogs)
    two_nodes = False  # a cluster of two nodes sharing an engine (not in the idle and API scenarios)

    def unavailable(self) -> str | None:
        """None when the target can run here, otherwise why not."""
        return None

    def version(self) -> str:
        return ""

    def start(self, workdir: Path, cpus: list[int] | None) -> RunningTarget:
        raise NotImplementedError


# ---- Centrifugo protocol servers -------------------------------------------------------------------


class _CentrifugoProtocolRunning(RunningTarget):
    def __init__(self, name: str, pid: int, endpoint: Endpoint, stop: contextlib.ExitStack, api_key: str) -> None:
        super().__init__(name, pid, endpoint, stop)
        self.api_key = api_key
        self.api_port = endpoint.port  # another node's port when publications must cross nodes

    async def publisher(self, connections: int = 4) -> Publisher:
        return await HttpApiPublisher(self.endpoint.host, self.api_port, self.api_key, connections).start()


class CentrifugoProtocolTarget(Target):
    """neoevents or the reference Centrifugo, started from the same neutral options (tests/support/servers)."""

    has_api = True
    has_auth = True
    has_recovery = True

    def __init__(self, kind: str) -> None:
        self.kind = self.name = kind
        self.rev = ""  # neoevents only: run this git revision (a clean export) instead of the working tree
        self.description = {
            "neoevents": "neoevents (this repository), memory engine",
            "centrifugo": "Centrifugo OSS, memory engine, same options",
        }[kind]

    def unavailable(self) -> str | None:
        if self.kind == "centrifugo" and not centrifugo_bin_path().exists():
            return f"no Centrifugo binary at {centrifugo_bin_path()} (make centrifugo)"
        return None

    def version(self) -> str:
        if self.kind == "centrifugo":
            binary = str(centrifugo_bin_path())
            # `go install` builds report 0.0.0; the module version is in the build info.
            info = subprocess.run(["go", "version", "-m", binary], capture_output=True, text=True, check=False)
            for line in info.stdout.splitlines():
                fields = line.split()
                if fields[:2] == ["mod", "github.com/centrifugal/centrifugo/v6"] and len(fields) > 2:
                    return f"Centrifugo {fields[2]}"
            out = subprocess.run([binary, "version"], capture_output=True, text=True, check=False)
            return out.stdout.strip()
        git = ["git", "-C", str(REPO)]
        rev = subprocess.run([*git, "rev-parse", "--short", self.rev or "HEAD"], capture_output=True, text=True)
        if self.rev:
            return f"neoevents {rev.stdout.strip()}"
        dirty = subprocess.run([*git, "status", "--porcelain", "neoevents"], capture_output=True, text=True)
        return f"neoevents {rev.stdout.strip()}{' + uncommitted changes' if dirty.stdout.strip() else ''}"

    def _export(self, workdir: Path) -> Path:
        """A clean copy of the neoevents package at ``self.rev`` (git archive), for PYTHONPATH."""
        dest = workdir / f"neoevents-{self.rev}"
        if not (dest / "neoevents").is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            archive = subprocess.run(
                ["git", "-C", str(REPO), "archive", self.rev, "neoevents"], capture_output=True, check=True
            )
            subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
        return dest

    @contextlib.contextmanager
    def code(self, workdir: Path) -> Iterator[None]:
        """While starting servers: neoevents from ``self.rev`` (a clean export) when one is set."""
        saved = os.environ.get("PYTHONPATH")
        if self.kind == "neoevents" and self.rev:
            os.environ["PYTHONPATH"] = str(self._export(workdir))
        try:
            yield
        finally:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved

    def start(self, workdir: Path, cpus: list[int] | None) -> RunningTarget:
        with self.code(workdir), pinned(cpus):
            server = start_server(self.kind, BENCH_OPTIONS, workdir)
        stop = contextlib.ExitStack()
        stop.callback(server.stop)
        endpoint = Endpoint("centrifugo", HOST, server.port, "/connection/websocket", BENCH_OPTIONS.secret)
        return _CentrifugoProtocolRunning(self.name, server.process.pid, endpoint, stop, BENCH_OPTIONS.api_key)


class RedisClusterTarget(CentrifugoProtocolTarget):
    """Two nodes of neoevents (or Centrifugo) sharing a private Redis: subscribers connect to node B and
    publications go through node A's HTTP API, so every delivery crosses Redis PUB/SUB. Both nodes and the
    Redis run on the server CPUs; the CPU time and memory of all three are counted."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.name = f"{kind}-redis"
        self.description = {
            "neoevents": "neoevents, Redis engine: two nodes sharing one Redis (cross-node delivery)",
            "centrifugo": "Centrifugo OSS, Redis engine: two nodes sharing one Redis (cross-node delivery)",
        }[kind]
        self.two_nodes = True

    def unavailable(self) -> str | None:
        if shutil.which("redis-server") is None:
            return "no redis-server (make deps-system)"
        return super().unavailable()

    def start(self, workdir: Path, cpus: list[int] | None) -> RunningTarget:
        stop = contextlib.ExitStack()
        try:
            redis_port, redis_pid, redis_stop = _start_redis(workdir, cpus)
            stop.enter_context(redis_stop)
            address = f"{HOST}:{redis_port}"
            options = dataclasses.replace(
                BENCH_OPTIONS,
                extra={**BENCH_OPTIONS.extra, "engine": "redis", "redis_address": [address]},
                centrifugo_extra={"engine": {"type": "redis", "redis": {"address": [f"redis://{address}"]}}},
            )
            nodes = []
            for name in ("a", "b"):
                node_dir = workdir / f"{self.name}-{name}"
                node_dir.mkdir(parents=True, exist_ok=True)
                with self.code(workdir), pinned(cpus):
                    server = start_server(self.kind, options, node_dir)
                stop.callback(server.stop)
                nodes.append(server)
        except BaseException:
            stop.close()
            raise
        publisher, subscribers = nodes
        endpoint = Endpoint("centrifugo", HOST, subscribers.port, "/connection/websocket", BENCH_OPTIONS.secret)
        running = _CentrifugoProtocolRunning(self.name, subscribers.process.pid, endpoint, stop, BENCH_OPTIONS.api_key)
        running.api_port = publisher.port
        running.extra_pids += [publisher.process.pid, redis_pid]
        return running


class WorkersTarget(CentrifugoProtocolTarget):
    """One neoevents server of ``workers`` worker processes on one port (``serve --workers``), sharing a private
    Redis. The supervisor, the workers and the Redis are pinned to the server CPUs and all counted. Not in the
    default run: on a two-core machine the workers could only share the server's core (what that costs is
    what this target measures there) or the load generator's."""

    def __init__(self, workers: int = 2) -> None:
        super().__init__("neoevents")
        self.workers = workers
        self.name = f"neoevents-workers{workers}"
        self.description = f"neoevents serve --workers {workers}, Redis engine, one port"

    def unavailable(self) -> str | None:
        if shutil.which("redis-server") is None:
            return "no redis-server (make deps-system)"
        return None

    def start(self, workdir: Path, cpus: list[int] | None) -> RunningTarget:
        stop = contextlib.ExitStack()
        try:
            redis_port, redis_pid, redis_stop = _start_redis(workdir, cpus)
            stop.enter_context(redis_stop)
            options = dataclasses.replace(
                BENCH_OPTIONS,
                workers=self.workers,
                extra={**BENCH_OPTIONS.extra, "engine": "redis", "redis_address": [f"{HOST}:{redis_port}"]},
            )
            with self.code(workdir), pinned(cpus):
                server = start_server(self.kind, options, workdir)
            stop.callback(server.stop)
        except BaseException:
            stop.close()
            raise
        pid = server.process.pid
        workers = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        endpoint = Endpoint("centrifugo", HOST, server.port, "/connection/websocket", BENCH_OPTIONS.secret)
        running = _CentrifugoProtocolRunning(self.name, pid, endpoint, stop, BENCH_OPTIONS.api_key)
        running.extra_pids += [*workers, redis_pid]
        return running


# ---- generic processes -----------------------------------------------------------------------------


def _wait_port(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {host}:{port} within {timeout}s")


def _spawn(
    cmd: list[str], workdir: Path, name: str, cpus: list[int] | None, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], contextlib.ExitStack]:
    workdir.mkdir(parents=True, exist_ok=True)
    log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed by the exit stack
    with pinned(cpus):
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            env={**os.environ, **(env or {})},
        )
    stop = contextlib.ExitStack()
    stop.callback(log.close)

    def terminate() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    stop.callback(terminate)
    return proc, stop


# ---- nats-server -----------------------------------------------------------------------------------


class _NatsRunning(RunningTarget):
    def __init__(self, name: str, pid: int, endpoint: Endpoint, stop: contextlib.ExitStack, client_port: int) -> None:
        super().__init__(name, pid, endpoint, stop)
        self.client_port = client_port

    def channel(self, logical: str) -> str:
        return logical.replace(":", ".")

    async def publisher(self, connections: int = 4) -> Publisher:
        return await NatsPublisher(self.endpoint.host, self.client_port).start()


class NatsTarget(Target):
    name = "nats"
    description = "nats-server WebSocket listener (core NATS subjects, no auth, no history)"

    def unavailable(self) -> str | None:
        return None if shutil.which("nats-server") else "nats-server is not installed (make deps-system)"

    def version(self) -> str:
        out = subprocess.run(["nats-server", "--version"], capture_output=True, text=True, check=False)
        return out.stdout.strip()

    def start(self, workdir: Path, cpus: list[int] | None) -> RunningTarget:
        client_port, ws_port = free_port(), free_port()
        conf = workdir / f"nats-{ws_port}.conf"
        workdir.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            f"listen: {HOST}:{client_port}\n"
            "max_payload: 1048576\n"
            f'websocket {{\n  listen: "{HOST}:{ws_port}"\n  no_tls: true\n  compression: false\n}}\n'
        )
        proc, stop = _spawn(["nats-server", "-c", str(conf)], workdir, f"nats-{ws_port}", cpus)
        try:
            _wait_port(HOST, ws_port, proc)
            _wait_port(HOST, client_port, proc)
        except RuntimeError:
            stop.close()
            raise
        return _NatsRunning(self.name, proc.pid, Endpoint("nats", HOST, ws_port, "/"), stop, client_port)


# ---- floors ----------------------------------------------------------------------------------------


class _FloorRunning(RunningTarget):
    async def publisher(self, connections: int = 4) -> Publisher:
        return await WsPublisher(self.endpoint.host, self.endpoint.port).start()


class FloorTarget(Target):
    """A minimal broadcaster (see :mod:`bench.floors`): no protocol, no auth."""

    def __init__(
        self,
        name: str,
        description: str,
        command: list[str],
        module: str = "",
        node: bool = False,
        go_source: Path | None = None,
    ) -> None:
        self.name = name
        self.description = description
        self._command = command
        self._module = module
        self._node = node
        self._go_source = go_source  # a Go package built on first use (the command is then its executable)

    def unavailable(self) -> str | None:
        if self._go_source is not None and not shutil.which("go"):
            return "go is not installed"
        if self._node:
            if not shutil.which("node"):
                return "node is not installed"
            if not (NODE_MODULES / "ws").is_dir():
                return f"the ws package is not installed in {NODE_MODULES} (make deps-node)"
        if self._module:
            try:
                __import__(self._module)
            except ImportError:
                return f"Python package {self._module!r} is not installed (pip install -e '.[bench]')"
        return None

    def version(self) -> str:
        if self._node:
            return "node " + subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        if self._go_source is not None:
            return subprocess.run(["go", "version"], capture_output=True, text=True).stdout.strip()
        from importlib.metadata import version

        return f"{self._module} {version(self._module)}"

    def start(self, workdir: Path, cpus: list[int] | None) -> RunningTarget:
        port = free_port()
        env = {"NODE_PATH": str(NODE_MODULES)} if self._node else None
        command = [str(gobuild.build(self._go_source, self.name))] if self._go_source is not None else self._command
        proc, stop = _spawn([*command, str(port)], workdir, f"{self.name}-{port}", cpus, env)
        try:
            _wait_port(HOST, port, proc)
        except RuntimeError:
            stop.close()
            raise
        return _FloorRunning(self.name, proc.pid, Endpoint("raw", HOST, port, "/sub/{channel}"), stop)


# ---- peers: socket.io, python-socketio, Django Channels --------------------------------------------


def _start_redis(workdir: Path, cpus: list[int] | None) -> tuple[int, int, contextlib.ExitStack]:
    """A private redis-server (no persistence) on a free port: (port, pid, stop)."""
    port = free_port()
    cmd = [
        "redis-server", "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no",
        "--protected-mode", "no", "--daemonize", "no", "--maxclients", "4000", "--dir", str(workdir),
    ]  # fmt: skip
    proc, stop = _spawn(cmd, workdir, f"redis-{port}", cpus)
    try:
        _wait_port(HOST, port, proc)
    except RuntimeError:
        stop.close()
        raise
    return port, proc.pid, stop


class _PeerRunning(RunningTarget):
    def __init__(self, name: str, pid: int, endpoint: Endpoint, stop: contextlib.ExitStack, dots: bool) -> None:
        super().__init__(name, pid, endpoint, stop)
        self._dots = dots

    def channel(self, logical: str) -> str:
        return logical.replace(":", ".") if self._dots else logical

    async def publisher(self, connections: int = 4) -> Publisher:
        return await WsPublisher(self.endpoint.host, self.endpoint.port, "/pub", batched=True).start()


class PeerTarget(Target):
    """A real-time framework applications use directly (see :mod:`bench.peers`): its own protocol, its own
    broadcast (a room emit, a ``group_send``), publications injected on a ``/pub`` WebSocket of the same server."""

    slow = True

    def __init__(
        self,
        name: str,
        description: str,
        command: list[str],
        proto: str,
        path: str,
        *,
        node: bool = False,
        packages: tuple[str, ...] = (),
        redis: bool = False,
        dots: bool = False,
    ) -> None:
        self.name = name
        self.description = description
        self._command = command
        self._proto = proto
        self._path = path
        self._node = node
        self._packages = packages
        self._redis = redis
        self._dots = dots  # channel names with "." instead of ":" (Channels group names allow no ":")

    def unavailable(self) -> str | None:
        if self._node:
            if not shutil.which("node"):
                return "node is not installed"
            if not (PEER_NODE_MODULES / "socket.io").is_dir():
                return f"socket.io is not installed in {PEER_NODE_MODULES} (make deps-bench-node)"
        if self._redis and not shutil.which("redis-server"):
            return "redis-server is not installed (make deps-system)"
        from importlib.metadata import PackageNotFoundError, version

        for package in self._packages:
            try:
                version(package)
            except PackageNotFoundError:
                return f"Python package {package!r} is not installed (pip install -e '.[bench]')"
        return None

    def version(self) -> str:
        parts = []
        if self._node:
            info = json.loads((PEER_NODE_MODULES / "socket.io" / "package.json").read_text())
            node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
            parts.append(f"socket.io {info['version']} on node {node}")
        from importlib.metadata import version

        parts += [f"{package} {version(package)}" for package in self._packages]
        if self._redis:
            out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
            parts.append(next((f"redis-server {w[2:]}" for w in out.split() if w.startswith("v=")), "redis-server"))
        return ", ".join(parts)

    def start(self, workdir: Path, cpus: list[int] | None) -> RunningTarget:
        stop = contextlib.ExitStack()
        try:
            command = list(self._command)
            redis_pid = 0
            if self._redis:
                redis_port, redis_pid, redis_stop = _start_redis(workdir, cpus)
                stop.push(redis_stop)  # closed last: the server goes first
                command += ["--redis", f"redis://{HOST}:{redis_port}/0"]
            port = free_port()
            command = [arg.replace("{port}", str(port)) for arg in command]
            proc, server_stop = _spawn(command, workdir, f"{self.name}-{port}", cpus)
            stop.push(server_stop)
            _wait_port(HOST, port, proc, timeout=30)
        except BaseException:
            stop.close()
            raise
        running = _PeerRunning(self.name, proc.pid, Endpoint(self._proto, HOST, port, self._path), stop, self._dots)
        if redis_pid:
            running.extra_pids.append(redis_pid)
        return running


def all_targets() -> dict[str, Target]:
    py = [sys.executable, "-m"]
    targets: list[Target] = [
        CentrifugoProtocolTarget("neoevents"),
        CentrifugoProtocolTarget("centrifugo"),
        RedisClusterTarget("neoevents"),
        RedisClusterTarget("centrifugo"),
        WorkersTarget(2),
        NatsTarget(),
        FloorTarget(
            "floor-picows",
            "floor: picows 2.3 server, one pre-encoded frame written to every socket",
            [*py, "bench.floors.picows_floor", "--port"],
            module="picows",
        ),
        FloorTarget(
            "floor-websockets",
            "floor: websockets 17 (asyncio), one pre-encoded frame written to every socket",
            [*py, "bench.floors.websockets_floor", "--port"],
            module="websockets",
        ),
        FloorTarget(
            "floor-go",
            "floor: Go standard library, one goroutine writing one pre-encoded frame to every socket (GOMAXPROCS=1)",
            [],
            go_source=REPO / "bench" / "floors" / "gofloor",
        ),
        FloorTarget(
            "floor-node-ws",
            "floor: Node.js ws 8, one pre-encoded frame written to every socket",
            ["node", str(REPO / "bench" / "floors" / "node_ws_floor.js")],
            node=True,
        ),
        PeerTarget(
            "socketio-node",
            "socket.io 4.8 (Node.js), in-memory adapter, room emit",
            ["node", str(PEERS / "socketio_server.js"), "{port}"],
            "engineio",
            ENGINEIO_PATH,
            node=True,
        ),
        PeerTarget(
            "python-socketio",
            "python-socketio 5 on uvicorn, in-memory manager, room emit",
            [*py, "bench.peers.pysocketio_server", "--port", "{port}"],
            "engineio",
            ENGINEIO_PATH,
            packages=("python-socketio", "uvicorn"),
        ),
        PeerTarget(
            "python-socketio-redis",
            "python-socketio 5 on uvicorn, AsyncRedisManager (every emit through Redis pub/sub)",
            [*py, "bench.peers.pysocketio_server", "--port", "{port}"],
            "engineio",
            ENGINEIO_PATH,
            packages=("python-socketio", "uvicorn", "redis"),
            redis=True,
        ),
        PeerTarget(
            "django-channels",
            "Django Channels 4 on uvicorn, channels_redis RedisChannelLayer, group_send",
            [*py, "bench.peers.channels_server", "--port", "{port}"],
            "raw",
            "/ws/{channel}",
            packages=("channels", "channels-redis", "Django", "uvicorn"),
            redis=True,
            dots=True,
        ),
    ]
    return {t.name: t for t in targets}


PEER_TARGETS = ("socketio-node", "python-socketio", "python-socketio-redis", "django-channels")
REDIS_TARGETS = ("neoevents-redis", "centrifugo-redis")
DEFAULT_TARGETS = (
    "neoevents",
    "centrifugo",
    *REDIS_TARGETS,
    "nats",
    "floor-picows",
    "floor-websockets",
    "floor-go",
    "floor-node-ws",
    *PEER_TARGETS,
)
