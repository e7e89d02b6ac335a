"""Several serving processes behind one port: ``neoevents serve --workers N``.

One Python process runs one thread of bytecode at a time, so a server uses one core. To use more, the
process the operator starts becomes a supervisor and forks ``N`` workers. Each worker is a complete node: its
own event loop, its own connection to the engine and its own listening socket on the same address and port
(``SO_REUSEPORT``: the kernel spreads new connections over the workers by a hash of the client's address and
port). Workers meet exactly as nodes on different machines do, through the engine, which is why more than one
worker needs the Redis engine; with the memory engine each worker would be a separate server behind one port.

The supervisor:

- is given the port held by :func:`neoevents.ports.hold_port` (bound, never listening sockets on every address),
  so that port 0 means one port for every worker and a restarted worker binds the same one;
- forks after the configuration is loaded and checked, so a bad configuration fails once, before any fork;
- reports readiness when every worker is ready, and fails the start if one exits before that;
- restarts a worker that exits or is killed while serving: at once if it had served for
  :data:`STABLE_AFTER` seconds, otherwise after a back-off that doubles from 1 s to :data:`MAX_BACKOFF`;
- on SIGTERM or SIGINT passes SIGTERM to every worker (each shuts down gracefully: clients closed with
  3001, in-flight API requests finished) and exits once all have, killing those still running after
  ``stop_timeout`` seconds.

It never touches client traffic: a supervisor is a few kilobytes of Python waiting for signals.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

log = logging.getLogger("neoevents.workers")

#: A worker that served this long before exiting is restarted at once (else after a back-off).
STABLE_AFTER: Final = 10.0
#: Longest wait before restarting a worker that keeps exiting soon after it starts.
MAX_BACKOFF: Final = 30.0

#: ``run_worker(index, ready)``: serve as worker ``index`` (1-based), call ``ready()`` once listening,
#: return the exit code when shut down.
WorkerMain = Callable[[int, Callable[[], None]], int]

_HANDLED: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
_PR_SET_PDEATHSIG: Final = 1  # prctl(2)


@dataclass
class _Worker:
    index: int
    pid: int = 0
    started: float = 0.0
    ready: bool = False
    ready_fd: int = -1  # read end of the pipe the worker writes to once it is listening
    failures: int = 0  # exits in a row before serving STABLE_AFTER seconds
    restart_at: float | None = None  # a restart is due (monotonic time)


class Supervisor:
    """Forks ``count`` workers running ``run_worker`` and keeps them running until SIGTERM or SIGINT."""

    def __init__(
        self,
        count: int,
        run_worker: WorkerMain,
        *,
        stop_timeout: float,
        start_timeout: float = 60.0,
        on_ready: Callable[[], None] | None = None,
        close_in_worker: tuple[int, ...] = (),
    ) -> None:
        if count < 1:
            raise ValueError("at least one worker")
        self._workers = [_Worker(i + 1) for i in range(count)]
        self._run_worker = run_worker
        self._stop_timeout = stop_timeout
        self._start_timeout = start_timeout
        self._on_ready = on_ready
        self._close_in_worker = close_in_worker  # the supervisor's own descriptors
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stop_requested = False
        self._child_exited = False

    # ---- the supervisor's loop -------------------------------------------------------------------

    def run(self) -> int:
        """Start the workers and supervise them; returns the process exit code (0 after a clean stop)."""
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _HANDLED}
        old_wakeup = signal.set_wakeup_fd(self._wake_w.fileno())
        try:
            code = self._supervise()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()
        return code

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGCHLD:
            self._child_exited = True
        else:
            self._stop_requested = True

    def _supervise(self) -> int:
        for worker in self._workers:
            self._spawn(worker)
        deadline = time.monotonic() + self._start_timeout
        announced = False
        while not self._stop_requested:
            self._wait(1.0)
            if self._child_exited:
                self._child_exited = False
                for worker, status in self._reap():
                    if not announced:
                        log.error("worker %d %s before it was ready; stopping", worker.index, _describe(status))
                        return self._stop(failed=True)
                    self._schedule_restart(worker, status)
            if not announced:
                if all(w.ready for w in self._workers):
                    announced = True
                    if self._on_ready is not None:
                        self._on_ready()
                elif time.monotonic() > deadline:
                    log.error("workers not ready after %.0f s; stopping", self._start_timeout)
                    return self._stop(failed=True)
            now = time.monotonic()
            for worker in self._workers:
                if worker.restart_at is not None and now >= worker.restart_at:
                    self._spawn(worker)
        return self._stop(failed=False)

    def _wait(self, timeout: float) -> None:
        """Sleep until a signal, a readiness note or ``timeout``; records readiness notes."""
        for key, _ in self._selector.select(timeout):
            if key.fileobj is self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    while self._wake_r.recv(512):
                        pass
                continue
            worker: _Worker = key.data
            with contextlib.suppress(BlockingIOError):
                note = os.read(worker.ready_fd, 64)
                if note:
                    worker.ready = True
                    log.info("worker %d ready (pid %d)", worker.index, worker.pid)
                self._forget_pipe(worker)  # one note per worker life; EOF means it exited first

    def _reap(self) -> list[tuple[_Worker, int]]:
        """Workers that have exited since the last call, with their wait statuses."""
        exited = []
        by_pid = {w.pid: w for w in self._workers if w.pid}
        while by_pid:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            worker = by_pid.pop(pid, None)
            if worker is not None:
                worker.pid = 0
                self._forget_pipe(worker)
                exited.append((worker, status))
        return exited

    def _schedule_restart(self, worker: _Worker, status: int) -> None:
        served = time.monotonic() - worker.started
        if worker.ready and served >= STABLE_AFTER:
            worker.failures = 0
            delay = 0.0
        else:
            worker.failures += 1
            delay = min(MAX_BACKOFF, 2.0 ** (worker.failures - 1))
        log.warning("worker %d %s; restarting it in %.0f s", worker.index, _describe(status), delay)
        worker.ready = False
        worker.restart_at = time.monotonic() + delay

    def _stop(self, *, failed: bool) -> int:
        """SIGTERM to every worker; wait for them (SIGKILL after the stop timeout). Returns the exit code."""
        live = [w for w in self._workers if w.pid]
        for worker in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._stop_timeout
        clean = not failed
        while any(w.pid for w in self._workers):
            if time.monotonic() > deadline:
                for worker in self._workers:
                    if worker.pid:
                        log.error("worker %d did not stop in %.0f s: killing it", worker.index, self._stop_timeout)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(worker.pid, signal.SIGKILL)
                deadline = float("inf")
                clean = False
            self._child_exited = False
            for worker, status in self._reap():
                if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
                    clean = False
                    log.warning("worker %d %s while stopping", worker.index, _describe(status))
            if any(w.pid for w in self._workers):
                self._wait(0.2)
        return 0 if clean else 1

    # ---- forking ---------------------------------------------------------------------------------

    def _spawn(self, worker: _Worker) -> None:
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        # A stop signal arriving during the fork waits until the worker has its own handling (and then stops it).
        signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
        supervisor = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the worker, which always leaves through os._exit
            os.close(read_fd)
            os._exit(self._worker_main(worker.index, write_fd, supervisor))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)
        os.close(write_fd)
        worker.pid = pid
        worker.started = time.monotonic()
        worker.ready = False
        worker.restart_at = None
        worker.ready_fd = read_fd
        os.set_blocking(read_fd, False)
        self._selector.register(read_fd, selectors.EVENT_READ, worker)
        log.info("worker %d started (pid %d)", worker.index, pid)

    def _forget_pipe(self, worker: _Worker) -> None:
        if worker.ready_fd >= 0:
            self._selector.unregister(worker.ready_fd)
            os.close(worker.ready_fd)
            worker.ready_fd = -1

    def _worker_main(self, index: int, ready_fd: int, supervisor: int) -> int:  # pragma: no cover - runs in the worker
        """In the forked worker: drop the supervisor's signal handling and descriptors, then serve."""
        signal.set_wakeup_fd(-1)
        for sig in _HANDLED:
            signal.signal(sig, signal.SIG_DFL)
        with contextlib.suppress(Exception):
            self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
        for other in self._workers:
            if other.ready_fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(other.ready_fd)
        for fd in self._close_in_worker:
            with contextlib.suppress(OSError):
                os.close(fd)
        _stop_with_parent(supervisor)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)

        def ready() -> None:
            with contextlib.suppress(OSError):
                os.write(ready_fd, b"ready")
                os.close(ready_fd)

        try:
            code = self._run_worker(index, ready)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        return code


def _stop_with_parent(supervisor: int) -> None:  # pragma: no cover - runs in the worker
    """Have the kernel send this worker SIGTERM if the supervisor dies (killed, say), so that no worker is left
    serving on the port without one; if it died during the fork, stop now."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != supervisor:
        os.kill(os.getpid(), signal.SIGTERM)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(sig).name}"
        return f"was killed by signal {sig}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"
