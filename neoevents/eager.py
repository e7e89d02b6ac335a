"""Running a coroutine eagerly: up to its first suspension in the caller, and only then as a task.

Most commands finish without waiting for anything (the memory engine, tokens with keys in memory, the API
publishing into memory). Running them where they arrive saves a task, its bookkeeping and a loop iteration
each; those that do suspend go on as a task, exactly as if they had been one from the start.
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

__all__ = ["run_eagerly"]


@types.coroutine
def _continue(coro: Coroutine[Any, Any, Any], pending: Any) -> Generator[Any, Any, Any]:
    """Drive ``coro``, suspended on ``pending`` (what it yielded), to its end: what the awaiting task
    sends or throws in is passed on, as if the task had been running ``coro`` from the start."""
    if pending is not None and hasattr(pending, "_asyncio_future_blocking"):
        pending._asyncio_future_blocking = True  # what awaiting it had set: the task now waits for it
    while True:
        try:
            value = yield pending
        except BaseException as exc:
            try:
                pending = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                pending = coro.send(value)
            except StopIteration as stop:
                return stop.value


async def _resumed(coro: Coroutine[Any, Any, Any], pending: Any) -> Any:
    return await _continue(coro, pending)


def run_eagerly(
    coro: Coroutine[Any, Any, Any], spawn: Callable[[Coroutine[Any, Any, Any]], object], log: logging.Logger
) -> None:
    """Run ``coro`` now, up to its first suspension; if it suspends, ``spawn`` gets the rest of it (to run as a
    task). Its result is dropped; an exception it raises before suspending is logged to ``log``. Until it
    suspends the coroutine runs outside any task (:func:`asyncio.current_task` is None there)."""
    try:
        first = coro.send(None)
    except (StopIteration, asyncio.CancelledError):
        return
    except Exception:
        log.error("background task failed", exc_info=True)
        return
    if getattr(first, "_asyncio_future_blocking", False):
        # Awaiting a future marks it as waited on until a task takes it over; until then other coroutines
        # could not await the same future (a shared one: e.g. one Redis confirmation for many subscribers).
        first._asyncio_future_blocking = False
    spawn(_resumed(coro, first))
