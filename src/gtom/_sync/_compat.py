"""Concurrency shims of the threaded (sync) face: background jobs, reads in flight, signals, locks.

The threaded twin of ``gtom/_async/_compat.py``: the same names and behaviour, on threads. This
file and ``queue.py`` are written by hand; the rest of ``gtom/_sync`` is generated from
``gtom/_async`` by ``tools/synchro.py``.

Threads cannot be interrupted, so `Worker.cancel` does nothing: a job stops cooperatively, at its
next queue operation (a cancelled `Lane` or a closed `OpQueue`) or its next network round trip,
which the engine keeps short.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

__all__ = [
    "Gather",
    "Job",
    "Jobs",
    "Lock",
    "Prefetcher",
    "Signal",
    "Worker",
    "sleep_until_set",
]

T = TypeVar("T")
_log = logging.getLogger("gtom")


class Prefetcher(Generic[T]):
    """Runs one read in the background while the caller works on the previous one.

    ``start(fn)`` begins ``fn()`` on a helper thread; ``result()`` waits for it and returns its
    value (or raises its error); ``close()`` waits for whatever still runs (a read is bounded by
    the engine's short await times) and ends the helper thread.
    """

    def __init__(self, name: str) -> None:
        """Create an idle prefetcher; ``name`` names its thread."""
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._future: Future[T] | None = None

    def start(self, fn: Callable[[], T]) -> None:
        """Begin ``fn()`` in the background."""
        self._future = self._pool.submit(fn)

    def begin(self, fn: Callable[[], T]) -> None:
        """Begin ``fn()`` and give its thread the interpreter first (a read: to send its request).

        Without it the caller, about to do a long stretch of work, keeps the GIL for up to a
        switch interval while the helper thread waits for it.
        """
        self.start(fn)
        time.sleep(0)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the read begun last; whether it is done."""
        assert self._future is not None, "wait() without start()"
        futures.wait([self._future], timeout=timeout)
        return self._future.done()

    def result(self) -> T:
        """The value of the read begun last."""
        future, self._future = self._future, None
        assert future is not None, "result() without start()"
        return future.result()

    def close(self) -> None:
        """Wait for the read in progress, if any, and end the helper thread."""
        self._future = None
        self._pool.shutdown(wait=True)


class Job(Generic[T]):
    """A job begun by `Jobs.start`: poll it, wait for its result, or cancel it."""

    __slots__ = ("_future",)

    def __init__(self, future: Future[T]) -> None:
        """Wrap the future of the job."""
        self._future = future

    def done(self) -> bool:
        """Whether the job has ended."""
        return self._future.done()

    def result(self) -> T:
        """Wait for the job; its value (or its error, raised)."""
        return self._future.result()

    def cancel(self) -> None:
        """Give up on the job: a job not started never runs; a running one's result is dropped."""
        self._future.cancel()


class Jobs:
    """Starts jobs in the background on a pool of threads (tasks in the asyncio twin)."""

    def __init__(self, limit: int, name: str) -> None:
        """Run up to ``limit`` jobs at once on threads named after ``name`` (made on first use)."""
        self._limit = max(1, limit)
        self._name = name
        self._pool: ThreadPoolExecutor | None = None

    def start(self, fn: Callable[[], T]) -> Job[T]:
        """Begin ``fn()``."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._limit, thread_name_prefix=self._name)
        return Job(self._pool.submit(fn))

    def close(self) -> None:
        """End the pool's threads once their jobs are done (without waiting for them)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class Gather:
    """Runs several jobs at once, at most ``limit`` at a time, and returns their results.

    The threaded twin of the asyncio ``Gather``: a pool of ``limit`` threads, made on first use.
    """

    def __init__(self, limit: int, name: str) -> None:
        """Allow ``limit`` jobs at a time on threads named after ``name``."""
        self._limit = max(1, limit)
        self._name = name
        self._pool: ThreadPoolExecutor | None = None

    def run(self, jobs: Sequence[Callable[[], T]]) -> list[T]:
        """Each job's result, in the jobs' order (the first error is raised)."""
        if len(jobs) == 1 or self._limit == 1:
            return [job() for job in jobs]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._limit, thread_name_prefix=self._name)
        futures = [self._pool.submit(job) for job in jobs]
        return [future.result() for future in futures]

    def close(self, *, wait: bool = False) -> None:
        """End the pool's threads once their jobs are done (``wait``: before returning)."""
        if self._pool is not None:
            self._pool.shutdown(wait=wait)
            self._pool = None


class Signal:
    """A flag that can be waited for, with a timeout."""

    def __init__(self) -> None:
        """Create an unset signal."""
        self._event = threading.Event()

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        self._event.set()

    def clear(self) -> None:
        """Unset the flag."""
        self._event.clear()

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until set or ``timeout`` seconds; whether it is set."""
        return self._event.wait(timeout)


def sleep_until_set(seconds: float, signal: Signal) -> None:
    """Sleep for ``seconds``, or less if ``signal`` is set meanwhile."""
    signal.wait(seconds)


class Lock:
    """Guards state shared with other threads (a plain re-entrant lock)."""

    def __init__(self) -> None:
        """Create an unlocked lock."""
        self._lock = threading.RLock()

    def __enter__(self) -> None:
        """Acquire."""
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        """Release."""
        self._lock.release()


class Worker:
    """A background job of the engine: a daemon thread here, an asyncio task in the async face.

    `cancel` does nothing (see the module docstring); `join` waits for the job to end. An exception
    that escapes the job is logged (jobs report their own errors to the context first).
    """

    def __init__(self, target: Callable[[], None], name: str) -> None:
        """Start running ``target()`` in the background."""
        self.name = name
        self._thread = threading.Thread(target=self._run, args=(target,), name=name, daemon=True)
        self._thread.start()

    def _run(self, target: Callable[[], None]) -> None:
        try:
            target()
        except Exception:
            _log.exception("gtom worker %s failed", self.name)

    def cancel(self) -> None:
        """Ask the job to stop (threads stop cooperatively; see the module docstring)."""

    def done(self) -> bool:
        """Whether the job has ended."""
        return not self._thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the job to end; whether it has."""
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()
