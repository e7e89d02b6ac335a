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

    __slots__ = ("_dirty", "_held", "_hold", "_loop", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[Flushable] = []
        self._scheduled = False
        self._hold = False  # a channel batch is queued: hold the next flush one iteration
        self._held = False  # the scheduled flush has been held once already

    def mark(self, conn: Flushable) -> None:
        self._dirty.append(conn)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._run)

    def mark_holding(self, conn: Flushable) -> None:
        """:meth:`mark` and :meth:`hold` in one call (a channel batch queued for an idle connection)."""
        self._dirty.append(conn)
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
        dirty = self._dirty
        if len(dirty) > SLICE:
            # The rest goes first in the next round; connections marked meanwhile follow it.
            self._dirty = dirty[SLICE:]
            self._loop.call_soon(self._run)
            dirty = dirty[:SLICE]
        else:
            self._dirty = []
            self._scheduled = False
        for conn in dirty:
            conn.flush()
