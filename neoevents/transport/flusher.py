"""Write coalescing: every connection's pending frames are written once per event-loop iteration.

A publication fanned out to N connections costs N list appends during the broadcast, then one
``transport.write`` per connection per loop iteration, however many frames were queued for it. This
is what makes delivery cost a fraction of a microsecond per frame instead of a syscall each.

When a channel batch (:class:`~neoevents.hub.SharedFrames`) is queued, the flush waits one more loop
iteration, once: publications usually come from requests read in the previous iteration, and the ones read
meanwhile then join the same batches and share their writes. The cost is one loop iteration of latency for
those deliveries; a flush is never held twice in a row, so a steady stream of publications cannot hold it back.

A round of more than :data:`SLICE` connections (a fan-out to a big channel) is written a slice at a time, one
slice per loop iteration. Between slices the loop reads what has arrived and runs it, so a fan-out to ten
thousand subscribers (tens of milliseconds of writes) does not hold up every other connection's commands,
pings and publications until it ends; and a publication read meanwhile joins the queues of the subscribers not
yet written, which then get both in one write.

Connections whose output starts with a channel batch (:meth:`Flusher.mark_holding`) are written after the
others (:meth:`Flusher.mark`: replies, HTTP responses, single frames), which take at most half of a slice
while batches wait, so that neither kind can starve the other. A reply is small and someone waits for it: the
answer to an HTTP publication into a channel of ten thousand subscribers leaves with the first slice instead of
after the whole fan-out, so a caller that publishes one request at a time can send its next one while the
fan-out goes on, and its publications share the writes of the subscribers not yet written. Each connection's
output is still written in the order it was queued: only the order between connections changes.
"""

from __future__ import annotations

import asyncio
from typing import Final, Protocol

#: Most connections written in one loop iteration (see the module docstring).
SLICE: Final = 1024


class Flushable(Protocol):
    def flush(self) -> None: ...


class Flusher:
    """Collects connections with pending output and flushes them on the next loop iteration (or the one after,
    see :meth:`hold`)."""

    __slots__ = ("_bulk", "_dirty", "_held", "_hold", "_loop", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[Flushable] = []  # written first
        self._bulk: list[Flushable] = []  # connections whose output starts with a channel batch
        self._scheduled = False
        self._hold = False  # a channel batch is queued: hold the next flush one iteration
        self._held = False  # the scheduled flush has been held once already

    def mark(self, conn: Flushable) -> None:
        self._dirty.append(conn)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._run)

    def mark_holding(self, conn: Flushable) -> None:
        """:meth:`mark` and :meth:`hold` in one call, for a channel batch queued for an idle connection (written
        after the connections marked with :meth:`mark`)."""
        self._bulk.append(conn)
        self._hold = True
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._run)

    def hold(self) -> None:
        """A channel batch was queued: let the next flush wait one more loop iteration (at most once)."""
        self._hold = True

    def _run(self) -> None:
        if self._hold and not self._held:
            self._held = True
            self._loop.call_soon(self._run)
            return
        self._hold = self._held = False
        dirty, bulk = self._dirty, self._bulk
        if len(dirty) + len(bulk) <= SLICE:
            self._dirty, self._bulk = [], []
            self._scheduled = False
        else:
            # A slice now; the rest of each list stays ahead of what is marked meanwhile. Replies (mark) take at
            # most half a slice while batches (mark_holding) wait, so that neither list can starve the other.
            self._loop.call_soon(self._run)
            first = min(len(dirty), SLICE - min(len(bulk), SLICE // 2))
            then = SLICE - first
            self._dirty, dirty = dirty[first:], dirty[:first]
            self._bulk, bulk = bulk[then:], bulk[:then]
        for conn in dirty:
            conn.flush()
        for conn in bulk:
            conn.flush()
