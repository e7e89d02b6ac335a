"""One ``/metrics`` for a server of several workers.

A scrape reaches whichever worker the kernel hands its connection to, and each worker counts only its own
connections and publications. So that every scrape describes the whole server, each worker serves a
snapshot of its figures (:class:`~neoevents.metrics.Snapshot`) on a Unix socket in a directory private to
the server (created by the supervisor, mode 0700), and the worker answering a scrape adds up its own figures
and those of its siblings. A sibling that does not answer within :data:`TIMEOUT` (it is restarting, say) is
left out; the ``server_workers`` gauge says how many were added up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from neoevents.metrics import Metrics, Snapshot

log = logging.getLogger("neoevents.workermetrics")

#: Seconds a scrape waits for a sibling's snapshot.
TIMEOUT: Final = 1.0
#: Largest snapshot read from a sibling (bytes).
MAX_SNAPSHOT: Final = 1 << 20

_decoder = msgspec.json.Decoder(Snapshot)
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class WorkerSlot:
    """Where a worker stands among its server's: number ``index`` (1-based) of ``count``, sharing
    ``directory`` (private to the server) with the others."""

    index: int
    count: int
    directory: Path


def socket_path(directory: Path, index: int) -> Path:
    return directory / f"worker-{index}.sock"


class SiblingMetrics:
    """Serves this worker's snapshot and gathers every worker's for a scrape."""

    def __init__(self, slot: WorkerSlot, metrics: Metrics) -> None:
        self._directory = slot.directory
        self._index = slot.index
        self._count = slot.count
        self._metrics = metrics
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        path = socket_path(self._directory, self._index)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # left by this worker's previous life
        self._server = await asyncio.start_unix_server(self._serve, path=str(path))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            socket_path(self._directory, self._index).unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(_encoder.encode(self._metrics.snapshot()))
            await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def combined(self) -> Metrics:
        """This worker's figures plus those of every sibling that answered."""
        others = [i for i in range(1, self._count + 1) if i != self._index]
        gathered = await asyncio.gather(*(self._fetch(i) for i in others))
        snapshots = [self._metrics.snapshot(), *(s for s in gathered if s is not None)]
        return Metrics.combined(snapshots)

    async def _fetch(self, index: int) -> Snapshot | None:
        path = str(socket_path(self._directory, index))
        try:
            async with asyncio.timeout(TIMEOUT):
                reader, writer = await asyncio.open_unix_connection(path)
                try:
                    data = await reader.read(MAX_SNAPSHOT + 1)
                    while data and len(data) <= MAX_SNAPSHOT:
                        more = await reader.read(MAX_SNAPSHOT + 1 - len(data))
                        if not more:
                            break
                        data += more
                finally:
                    writer.close()
            return _decoder.decode(data)
        except (OSError, TimeoutError, msgspec.DecodeError) as exc:
            log.debug("worker %d's metrics left out: %r", index, exc)
            return None
