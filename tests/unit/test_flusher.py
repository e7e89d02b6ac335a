"""The flusher writes pending output once per loop iteration; a queued channel batch holds it one iteration."""

from __future__ import annotations

import asyncio

import pytest

from neoevents.transport.flusher import Flusher

pytestmark = pytest.mark.asyncio


class Conn:
    def __init__(self) -> None:
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1


async def test_pending_output_is_flushed_on_the_next_iteration_once() -> None:
    flusher = Flusher(asyncio.get_running_loop())
    conn = Conn()
    flusher.mark(conn)
    await asyncio.sleep(0)
    assert conn.flushes == 1
    await asyncio.sleep(0)
    assert conn.flushes == 1


async def test_a_channel_batch_holds_the_flush_one_iteration_and_what_comes_meanwhile_joins_it() -> None:
    flusher = Flusher(asyncio.get_running_loop())
    first, later = Conn(), Conn()
    flusher.mark(first)
    flusher.hold()
    await asyncio.sleep(0)
    assert first.flushes == 0
    flusher.mark(later)  # queued during the held iteration: written with the first
    await asyncio.sleep(0)
    assert (first.flushes, later.flushes) == (1, 1)


async def test_a_flush_is_never_held_twice_in_a_row() -> None:
    flusher = Flusher(asyncio.get_running_loop())
    conn = Conn()
    flusher.mark(conn)
    flusher.hold()
    await asyncio.sleep(0)
    flusher.hold()  # another batch during the held iteration
    await asyncio.sleep(0)
    assert conn.flushes == 1
    # The next flush may be held again.
    flusher.mark(conn)
    flusher.hold()
    await asyncio.sleep(0)
    assert conn.flushes == 1
    await asyncio.sleep(0)
    assert conn.flushes == 2


async def test_mark_holding_is_mark_then_hold() -> None:
    flusher = Flusher(asyncio.get_running_loop())
    conn, other = Conn(), Conn()
    flusher.mark_holding(conn)
    flusher.mark_holding(other)  # a second subscriber of the batch: still one flush, held once
    await asyncio.sleep(0)
    assert (conn.flushes, other.flushes) == (0, 0)
    await asyncio.sleep(0)
    assert (conn.flushes, other.flushes) == (1, 1)
    await asyncio.sleep(0)
    assert (conn.flushes, other.flushes) == (1, 1)


async def test_a_big_round_is_written_a_slice_per_iteration_and_later_marks_follow_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("neoevents.transport.flusher.SLICE", 2)
    flusher = Flusher(asyncio.get_running_loop())
    conns = [Conn() for _ in range(5)]
    for conn in conns:
        flusher.mark(conn)
    await asyncio.sleep(0)
    assert [c.flushes for c in conns] == [1, 1, 0, 0, 0]
    late = Conn()
    flusher.mark(late)  # marked between slices: written after the rest of the round
    flusher.mark(conns[0])  # written already in this round, and given more
    await asyncio.sleep(0)
    assert [c.flushes for c in conns] == [1, 1, 1, 1, 0] and late.flushes == 0
    await asyncio.sleep(0)
    assert [c.flushes for c in conns] == [1, 1, 1, 1, 1] and late.flushes == 1
    await asyncio.sleep(0)
    assert [c.flushes for c in conns] == [2, 1, 1, 1, 1] and late.flushes == 1
    await asyncio.sleep(0)
    assert [c.flushes for c in conns] == [2, 1, 1, 1, 1] and late.flushes == 1


async def test_replies_are_written_before_channel_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("neoevents.transport.flusher.SLICE", 2)
    flusher = Flusher(asyncio.get_running_loop())
    order: list[str] = []

    class Named(Conn):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def flush(self) -> None:
            super().flush()
            order.append(self.name)

    for name in ("s1", "s2", "s3"):
        flusher.mark_holding(Named(name))  # a fan-out: three subscribers
    flusher.mark(Named("reply"))
    await asyncio.sleep(0)  # held once for the batch
    assert order == []
    await asyncio.sleep(0)
    assert order == ["reply", "s1"]
    flusher.mark(Named("reply2"))  # marked between slices: ahead of the rest of the fan-out
    await asyncio.sleep(0)
    assert order == ["reply", "s1", "reply2", "s2"]
    await asyncio.sleep(0)
    assert order == ["reply", "s1", "reply2", "s2", "s3"]


async def test_neither_replies_nor_batches_starve_the_other(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("neoevents.transport.flusher.SLICE", 4)
    flusher = Flusher(asyncio.get_running_loop())
    replies, batches = [Conn() for _ in range(10)], [Conn() for _ in range(10)]
    for conn in batches:
        flusher.mark_holding(conn)
    for conn in replies:
        flusher.mark(conn)
    await asyncio.sleep(0)  # held once for the batches
    await asyncio.sleep(0)
    assert sum(c.flushes for c in replies) == 2 and sum(c.flushes for c in batches) == 2
    for written in (4, 6, 8, 10):  # half a slice each, in the order they were marked
        await asyncio.sleep(0)
        assert [c.flushes for c in replies] == [1] * written + [0] * (10 - written)
        assert [c.flushes for c in batches] == [1] * written + [0] * (10 - written)
    # Fewer batches than half a slice: the replies fill the rest of it.
    more = [Conn() for _ in range(6)]
    for conn in more:
        flusher.mark(conn)
    flusher.mark_holding(batches[0])
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [c.flushes for c in more] == [1, 1, 1, 0, 0, 0] and batches[0].flushes == 2
