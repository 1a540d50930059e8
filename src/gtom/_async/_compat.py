"""Concurrency shims of the asyncio face: background jobs, reads in flight, signals, locks.

The engine is written once, against these names; ``gtom/_sync/_compat.py`` gives the same names
for threads, and ``tools/synchro.py`` turns the rest of ``gtom/_async`` into ``gtom/_sync``.
This pair and the queue (``queue.py``) are the only code written twice. Everything here runs on
one event loop: methods that are not coroutines are atomic and need no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

__all__ = [
    "Gather",
    "Job",
    "Jobs",
    "Lock",
    "Prefetcher",
    "Signal",
    "Worker",
    "maybe_await",
    "sleep_until_set",
]

T = TypeVar("T")
_log = logging.getLogger("gtom")


class Prefetcher(Generic[T]):
    """Runs one read in the background while the caller works on the previous one.

    ``start(fn)`` begins ``fn()``; ``await result()`` waits for it and returns its value (or
    raises its error); ``await close()`` cancels whatever still runs.
    """

    def __init__(self, name: str) -> None:
        """Create an idle prefetcher; ``name`` names its task."""
        self._name = name
        self._task: asyncio.Task[T] | None = None

    def start(self, fn: Callable[[], Awaitable[T]]) -> None:
        """Begin ``fn()`` in the background."""
        self._task = asyncio.get_running_loop().create_task(_call(fn), name=self._name)

    async def begin(self, fn: Callable[[], Awaitable[T]]) -> None:
        """Begin ``fn()`` and let it run until it waits (a read: until its request is sent).

        A task created by `start` runs only once the caller awaits something; a caller about
        to do a long stretch of work calls this instead, so that the server is busy meanwhile.
        """
        self.start(fn)
        await asyncio.sleep(0)

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the read begun last; whether it is done."""
        assert self._task is not None, "wait() without start()"
        if not self._task.done():
            await asyncio.wait({self._task}, timeout=timeout)
        return self._task.done()

    async def result(self) -> T:
        """The value of the read begun last."""
        task, self._task = self._task, None
        assert task is not None, "result() without start()"
        return await task

    async def close(self) -> None:
        """Cancel the read in progress, if any, and wait for it to end."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})
        if task is not None and not task.cancelled():
            task.exception()  # retrieved: an error of an abandoned read is not worth a warning


async def _call(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


class Job(Generic[T]):
    """A job begun by `Jobs.start`: poll it, wait for its result, or cancel it."""

    __slots__ = ("_task",)

    def __init__(self, task: asyncio.Task[T]) -> None:
        """Wrap the task running the job."""
        self._task = task
        task.add_done_callback(_retrieve)

    def done(self) -> bool:
        """Whether the job has ended."""
        return self._task.done()

    async def result(self) -> T:
        """Wait for the job; its value (or its error, raised)."""
        return await self._task

    def cancel(self) -> None:
        """Give up on the job: it stops at its next await, and its result is dropped."""
        self._task.cancel()


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # an abandoned job's error is not worth a warning


class Jobs:
    """Starts jobs in the background: tasks here, threads of a pool in the threaded twin."""

    def __init__(self, limit: int, name: str) -> None:
        """Run up to ``limit`` jobs at once (the threaded twin's pool size); ``name`` names them."""
        self._name = name

    def start(self, fn: Callable[[], Awaitable[T]]) -> Job[T]:
        """Begin ``fn()``."""
        return Job(asyncio.get_running_loop().create_task(_call(fn), name=self._name))

    def close(self) -> None:
        """Release what the jobs ran on (nothing to do on an event loop)."""


class Gather:
    """Runs several jobs at once, at most ``limit`` at a time, and returns their results.

    Here: tasks on the event loop. The threaded twin uses a pool of ``limit`` threads.
    """

    def __init__(self, limit: int, name: str) -> None:
        """Allow ``limit`` jobs at a time; ``name`` names the threads of the threaded twin."""
        self._limit = max(1, limit)

    async def run(self, jobs: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
        """Each job's result, in the jobs' order (the first error is raised)."""
        if len(jobs) == 1 or self._limit == 1:
            return [await job() for job in jobs]
        slots = asyncio.Semaphore(self._limit)

        async def one(job: Callable[[], Awaitable[T]]) -> T:
            async with slots:
                return await job()

        return list(await asyncio.gather(*(one(job) for job in jobs)))

    def close(self, *, wait: bool = False) -> None:
        """Release what the jobs ran on (nothing to do on an event loop)."""


class Signal:
    """A flag that can be waited for, with a timeout."""

    def __init__(self) -> None:
        """Create an unset signal."""
        self._event = asyncio.Event()

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        self._event.set()

    def clear(self) -> None:
        """Unset the flag."""
        self._event.clear()

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return self._event.is_set()

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until set or ``timeout`` seconds; whether it is set."""
        if timeout is None:
            await self._event.wait()
            return True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        return self._event.is_set()


async def sleep_until_set(seconds: float, signal: Signal) -> None:
    """Sleep for ``seconds``, or less if ``signal`` is set meanwhile."""
    await signal.wait(seconds)


class Lock:
    """Guards state shared with other threads.

    On one event loop plain methods are already atomic, so this lock does nothing; its threaded
    twin is a real lock.
    """

    def __enter__(self) -> None:
        """Acquire (nothing to do on an event loop)."""

    def __exit__(self, *exc: object) -> None:
        """Release (nothing to do on an event loop)."""


class Worker:
    """A background job of the engine: an asyncio task here, a daemon thread in the sync face.

    ``cancel()`` interrupts it at its next await; `join` waits for it to end. An exception that
    escapes the job is logged (jobs report their own errors to the context first).
    """

    def __init__(self, target: Callable[[], Awaitable[None]], name: str) -> None:
        """Start running ``target()`` in the background."""
        self.name = name
        self._task = asyncio.get_running_loop().create_task(self._run(target), name=name)

    async def _run(self, target: Callable[[], Awaitable[None]]) -> None:
        try:
            await target()
        except asyncio.CancelledError:
            pass
        except Exception:
            _log.exception("gtom worker %s failed", self.name)

    def cancel(self) -> None:
        """Ask the job to stop at once."""
        self._task.cancel()

    def done(self) -> bool:
        """Whether the job has ended."""
        return self._task.done()

    async def join(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the job to end; whether it has."""
        if not self._task.done():
            await asyncio.wait({self._task}, timeout=timeout)
        return self._task.done()


async def maybe_await(value: Any) -> Any:
    """A user callback's result, awaited if it is awaitable (async callbacks are allowed here)."""
    if inspect.isawaitable(value):
        return await value
    return value
