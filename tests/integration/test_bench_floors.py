"""The compiled floor server (``bench/floors/gofloor``), started as the benchmark starts it: every subscriber of
a channel gets each publication once, in the frame it was published in, and one that left gets nothing."""

from __future__ import annotations

import contextlib
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import ClientConnection, connect

from bench.targets import RunningTarget, all_targets

pytestmark = pytest.mark.skipif(shutil.which("go") is None, reason="go is not installed")


@pytest.fixture
def floor(tmp_path: Path) -> Iterator[RunningTarget]:
    running = all_targets()["floor-go"].start(tmp_path, None)
    try:
        yield running
    finally:
        running.stop()


def _open(stack: contextlib.ExitStack, target: RunningTarget, path: str) -> ClientConnection:
    url = f"ws://{target.endpoint.host}:{target.endpoint.port}{path}"
    return stack.enter_context(connect(url, open_timeout=10))


def test_every_subscriber_gets_each_publication_once(floor: RunningTarget) -> None:
    with contextlib.ExitStack() as stack:
        subs = [_open(stack, floor, "/sub/room") for _ in range(3)]
        other = _open(stack, floor, "/sub/elsewhere")
        pub = _open(stack, floor, "/pub")
        pub.send("room\n" + '{"n":1}')
        pub.send("nobody\n" + '{"n":0}')  # a channel without subscribers: dropped
        pub.send("room\n" + "x" * 70_000)  # a 64-bit length frame
        for sub in subs:
            assert sub.recv(timeout=5) == '{"n":1}'
            assert sub.recv(timeout=5) == "x" * 70_000
        with pytest.raises(TimeoutError):
            other.recv(timeout=0.3)

        subs[0].close()
        pub.send("room\n" + '{"n":2}')
        for sub in subs[1:]:
            assert sub.recv(timeout=5) == '{"n":2}'
        with pytest.raises(TimeoutError):
            subs[1].recv(timeout=0.3)  # exactly once


def test_a_request_that_is_not_an_upgrade_is_closed(floor: RunningTarget) -> None:
    with socket.create_connection((floor.endpoint.host, floor.endpoint.port), timeout=5) as sock:
        sock.sendall(b"POST /pub HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(100) == b""
