"""Shared fixtures: the reference Centrifugo binary and servers started from a neutral configuration."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.redisserver import redis_server  # noqa: F401  (a fixture every test may use)
from tests.support.servers import (
    KINDS,
    RunningServer,
    ServerOptions,
    centrifugo_bin_path,
    neoevents_available,
    start_server,
)

ServerFactory = Callable[..., RunningServer]

_neoevents_ok: bool | None = None


def neoevents_can_serve() -> bool:
    """Cached: whether ``python -m neoevents serve --help`` works in this checkout."""
    global _neoevents_ok
    if _neoevents_ok is None:
        _neoevents_ok = neoevents_available()
    return _neoevents_ok


def skip_unless_kind_available(kind: str) -> None:
    """Fail (never skip) when a server kind cannot run: a missing reference is a broken set-up, not a pass."""
    if kind == "centrifugo" and not centrifugo_bin_path().exists():
        pytest.fail(f"Centrifugo binary not found at {centrifugo_bin_path()} (run `make centrifugo`)")
    if kind == "neoevents" and not neoevents_can_serve():
        pytest.fail("neoevents cannot serve (python -m neoevents serve --help fails)")


@pytest.fixture(scope="session")
def centrifugo_bin() -> Path:
    """Path of the reference Centrifugo binary; fails the test when it is missing."""
    path = centrifugo_bin_path()
    if not path.exists():
        pytest.fail(f"Centrifugo binary not found at {path} (run `make centrifugo`)")
    return path


class ServerPool:
    """Starts servers on demand and stops all of them at the end of its scope."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.servers: list[RunningServer] = []
        self._shared: dict[tuple[str, str], RunningServer] = {}

    def start(self, kind: str, options: ServerOptions | None = None) -> RunningServer:
        skip_unless_kind_available(kind)
        server = start_server(kind, options or ServerOptions(), self.workdir)
        self.servers.append(server)
        return server

    def shared(self, kind: str, key: str, options: ServerOptions) -> RunningServer:
        """One server per (kind, key) for the pool's lifetime; restarted if it died."""
        server = self._shared.get((kind, key))
        if server is None or not server.alive():
            server = self.start(kind, options)
            self._shared[(kind, key)] = server
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()
        self._shared.clear()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """``server_factory(kind, options=None) -> RunningServer``; every server is stopped after the test.

    Skips the test if ``kind`` cannot run here (no Centrifugo binary / neoevents not serving yet).
    """
    pool = ServerPool(tmp_path / "servers")
    try:
        yield pool.start
    finally:
        pool.stop_all()


@pytest.fixture(scope="session")
def server_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    """A session-wide pool: ``server_pool.shared(kind, key, options)`` reuses one server per key."""
    workdir = tmp_path_factory.mktemp("shared-servers")
    pool = ServerPool(workdir)
    try:
        yield pool
    finally:
        pool.stop_all()
        if not any(workdir.iterdir()):
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(params=KINDS)
def server_kind(request: pytest.FixtureRequest) -> str:
    """Parametrized over "centrifugo" and "neoevents"; skips a kind that cannot run here."""
    kind: str = request.param
    skip_unless_kind_available(kind)
    return kind
