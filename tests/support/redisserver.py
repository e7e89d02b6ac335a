"""A real ``redis-server`` of the test's own, on a free port, that a test can stop, kill and restart.

Started with ``--save '' --appendonly no``: nothing survives a restart, so a restarted server is a fresh
instance (new epochs for every stream), just as a production Redis without persistence. The ``redis_server``
fixture gives each test its own; ``redis_session`` is shared by a module or session (tests then use distinct
key prefixes).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import HOST, free_port

REDIS_BIN = shutil.which("redis-server") or "/usr/bin/redis-server"
START_TIMEOUT = 10.0


class RedisServer:
    def __init__(self, workdir: Path, port: int | None = None, password: str = "") -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"redis-{self.port}.log"

    def start(self) -> RedisServer:
        """Start on ``self.port`` (the same port again after a stop) and wait until it answers PING."""
        args = [
            REDIS_BIN,
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--logfile", str(self.log_path),
            "--enable-debug-command", "local",
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {self.log_tail()}")
            with contextlib.suppress(OSError):
                if self.command("PING") in (b"+PONG\r\n", b"-NOAUTH Authentication required.\r\n"):
                    return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server did not answer PING within {START_TIMEOUT}s: {self.log_tail()}")

    def command(self, *args: str, db: int = 0, timeout: float = 5.0) -> bytes:
        """Send one command (after AUTH when a password is set, in database ``db``) and return its raw reply."""
        commands = ([["AUTH", self.password]] if self.password else []) + ([["SELECT", str(db)]] if db else [])
        commands.append(list(args))
        payload = b"".join(
            b"*%d\r\n" % len(cmd) + b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in cmd)
            for cmd in commands
        )
        with socket.create_connection((HOST, self.port), timeout=timeout) as sock:
            sock.sendall(payload)
            data = b""
            while _complete_replies(data) < len(commands):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        for _ in range(len(commands) - 1):
            data = data[_skip(data, 0) :]
        return data

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def kill(self) -> None:
        """SIGKILL: connections drop at once, as when a Redis host dies."""
        self.stop(signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def restart(self) -> RedisServer:
        """A fresh, empty instance on the same port."""
        self.kill()
        return self.start()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def _complete_replies(data: bytes) -> int:
    """How many whole RESP replies ``data`` starts with."""
    count = pos = 0
    while pos < len(data):
        try:
            pos = _skip(data, pos)
        except (IndexError, ValueError):
            break
        count += 1
    return count


def _skip(data: bytes, pos: int) -> int:
    line_end = data.index(b"\r\n", pos)
    kind, value = data[pos : pos + 1], data[pos + 1 : line_end]
    pos = line_end + 2
    if kind == b"$":
        size = int(value)
        if size < 0:
            return pos
        if pos + size + 2 > len(data):
            raise IndexError("incomplete")
        return pos + size + 2
    if kind == b"*":
        for _ in range(max(0, int(value))):
            pos = _skip(data, pos)
    return pos


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server for one test, killed afterwards."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.resume()
        server.kill()
