"""The benchmark's live receiver (``bench/receiver/``, compiled) over real loopback sockets: it counts what the
Python workers would count, samples latencies only while recording and only on sampled sockets, answers
pings, notices sockets the server closes, and keeps its running total where the coordinator reads it.

Nothing here measures speed.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from bench import wire
from bench.receiver import Counters, Receiver

pytestmark = pytest.mark.skipif(shutil.which("go") is None, reason="the live receiver is built with Go")

N = 4


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """N loopback TCP connections: (server side, client side); client sides close with a reset, as the
    load generator's do."""
    listener = socket.create_server(("127.0.0.1", 0))
    made = []
    for _ in range(N):
        client = socket.create_connection(listener.getsockname())
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        server, _ = listener.accept()
        made.append((server, client))
    listener.close()
    yield made
    for server, client in made:
        server.close()
        client.close()


async def _until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


def _publications(count: int) -> bytes:
    """``count`` publications in one newline-joined frame, as a batch of merged frames arrives."""
    return wire.server_frame(b"\n".join(wire.payload(k) for k in range(count)))


async def test_counts_samples_pings_and_losses(pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    counters = Counters(2)
    try:
        fds = [client.fileno() for _, client in pairs]
        receiver = await Receiver.start(fds, [0, 2], b"{}", wire.client_frame(b"{}"), counters.path, 1)
        for _, client in pairs:
            client.close()  # the receiver holds the sockets now, as after a worker's hand-off
        try:
            servers = [server for server, _ in pairs]
            for server in servers:
                server.sendall(_publications(3))
            # A marker cut in two by the read boundary still counts once.
            frame = _publications(1)
            cut = frame.index(wire.MARK) + 2
            servers[1].sendall(frame[:cut])
            await asyncio.sleep(0.05)
            servers[1].sendall(frame[cut:])
            await _until(lambda: counters[1] == 3 * N + 1)
            assert counters[0] == 0  # another worker's slot

            # Latencies: only while recording, only from the sampled sockets (0 and 2).
            await receiver.record(True)
            for server in servers:
                server.sendall(_publications(2))
            await _until(lambda: counters[1] == 5 * N + 1)
            await receiver.record(False)
            servers[0].sendall(_publications(1))
            await _until(lambda: counters[1] == 5 * N + 2)
            stats, latencies, arrivals = await receiver.collect()
            assert stats == {"delivered": 5 * N + 2, "lost": 0, "alive": N, "samples": 4, "arrival_samples": 4}
            assert len(latencies) == 4
            assert all(0 <= lat < 10_000_000_000 for lat in latencies)
            # The same deliveries by the kernel's receive timestamps: each reached its socket before it was read
            # (within 0.1 ms: the timestamp is converted from the wall clock).
            assert len(arrivals) == 4
            assert all(0 <= arrived <= read + 100_000 for arrived, read in zip(arrivals, latencies, strict=True))

            # A server ping ({} in a frame) is answered with the pong frame.
            servers[3].sendall(wire.server_frame(b"{}"))
            servers[3].settimeout(5)
            assert servers[3].recv(64) == wire.client_frame(b"{}")

            # A socket the server closes is lost.
            servers[2].close()
            for _ in range(200):
                stats, _, _ = await receiver.collect()
                if stats["lost"]:
                    break
                await asyncio.sleep(0.01)
            assert (stats["lost"], stats["alive"]) == (1, N - 1)

            closed = await receiver.close()
            assert closed == {"closed": N - 1, "delivered": 5 * N + 2, "lost": 1}
        finally:
            receiver.kill()
        # Closing reset the connections (SO_LINGER 0): the server sides see them gone.
        servers[0].settimeout(5)
        with pytest.raises(ConnectionResetError):
            servers[0].recv(64)
    finally:
        counters.close()
