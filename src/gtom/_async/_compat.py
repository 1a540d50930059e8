"""Concurrency primitives of the asyncio face.

The engine is written once, against these names; ``gtom/_sync/_compat.py`` gives the same names
for threads, and ``tools/synchro.py`` turns the rest of ``gtom/_async`` into ``gtom/_sync``.
This pair is the only code written twice. Everything here runs on one event loop: methods that are
not coroutines are atomic and need no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import queue
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from gtom._errors import StoppedError

__all__ = [
    "Gather",
    "Lane",
    "Lock",
    "OpQueue",
    "Prefetcher",
    "QueueClosed",
    "Signal",
    "Worker",
    "maybe_await",
    "sleep_until_set",
]

T = TypeVar("T")
_log = logging.getLogger("gtom")


class QueueClosed(Exception):  # noqa: N818 - a control-flow signal for producers
    """The queue was closed: a producer must stop."""


class Lane:
    """A producer's ticket into an `OpQueue`.

    Items of a ``gated`` lane wait while the queue is paused. Items of a cancelled lane are dropped:
    that is how a restarted tailer's predecessor is silenced at once.
    """

    __slots__ = ("cancelled", "gated")

    def __init__(self, *, gated: bool) -> None:
        """Create a lane; ``gated`` lanes are held back while the queue is paused."""
        self.gated = gated
        self.cancelled = False


class OpQueue(Generic[T]):
    """The bounded queue ops flow through (``ctx.op_c``).

    ``await get(timeout=None)`` returns the next op; it raises `queue.Empty` when ``timeout``
    seconds pass without one, and once the context is stopped and the queue drained it raises the
    error that stopped it, or `gtom.StoppedError`.
    """

    def __init__(self, maxsize: int) -> None:
        """Create a queue holding at most ``maxsize`` items."""
        self._maxsize = maxsize
        # A blocked producer is woken once the queue has drained to this level, so it refills
        # many slots at a time instead of trading one item at a time with the consumer.
        self._low_water = maxsize // 2
        self._items: deque[tuple[T, Lane | None]] = deque()
        self._getters: list[asyncio.Future[None]] = []
        self._putters: list[asyncio.Future[None]] = []
        self._closed = False
        self._error: BaseException | None = None
        self._paused = False
        self._pauses = 0

    @property
    def maxsize(self) -> int:
        """The capacity."""
        return self._maxsize

    def qsize(self) -> int:
        """How many items wait in the queue."""
        return len(self._items)

    def empty(self) -> bool:
        """Whether no item waits in the queue."""
        return not self._items

    @property
    def paused(self) -> bool:
        """Whether gated lanes are held back."""
        return self._paused

    @property
    def pause_count(self) -> int:
        """How many times `pause` was called: a producer that sees it change was paused."""
        return self._pauses

    @property
    def closed(self) -> bool:
        """Whether the queue was closed (items may still wait to be taken)."""
        return self._closed

    # -- producers -----------------------------------------------------------------------------

    async def put_many(self, items: Sequence[T], lane: Lane, *, atomic: bool = False) -> bool:
        """Put items in order, waiting for room (and for `resume` on a gated lane).

        Returns False when the lane was cancelled (the rest is dropped); raises `QueueClosed` once
        the queue is closed. ``atomic``: all items go in together or none do (at most
        ``maxsize`` items).
        """
        done, total = 0, len(items)
        need = min(total, self._maxsize) if atomic else 1
        while done < total:
            if self._closed:
                raise QueueClosed
            if lane.cancelled:
                return False
            room = self._maxsize - len(self._items)
            if room < need or (lane.gated and self._paused):
                await self._wait(self._putters, None)
                continue
            batch = items[done : done + room]
            self._items.extend((item, lane) for item in batch)
            done += len(batch)
            self._wake(self._getters)
        return not lane.cancelled

    async def wait_resumed(self, lane: Lane) -> bool:
        """Wait until the queue is not paused; False if the lane was cancelled meanwhile."""
        while self._paused and not lane.cancelled:
            if self._closed:
                raise QueueClosed
            await self._wait(self._putters, None)
        if self._closed:
            raise QueueClosed
        return not lane.cancelled

    def offer(self, item: T) -> None:
        """Put without waiting; when full, drop the oldest item (for ``err_c``)."""
        if self._closed:
            return
        if len(self._items) >= self._maxsize:
            self._items.popleft()
        self._items.append((item, None))
        self._wake(self._getters)

    # -- consumers -----------------------------------------------------------------------------

    async def get(self, timeout: float | None = None) -> T:
        """The next item; see the class docstring for timeouts and the end of the stream."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self._items:
            if self._closed:
                raise self._end()
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise queue.Empty
            await self._wait(self._getters, remaining)
        return self._pop()

    def get_nowait(self) -> T:
        """The next item if one waits, else `queue.Empty` (or the end of the stream)."""
        if not self._items:
            if self._closed:
                raise self._end()
            raise queue.Empty
        return self._pop()

    def _pop(self) -> T:
        item = self._items.popleft()[0]
        if self._putters and len(self._items) <= self._low_water:
            self._wake(self._putters)
        return item

    def _end(self) -> BaseException:
        return self._error if self._error is not None else StoppedError("the context is stopped")

    # -- control -------------------------------------------------------------------------------

    def pause(self) -> None:
        """Hold back gated lanes: none of their items enters the queue until `resume`."""
        self._paused = True
        self._pauses += 1

    def resume(self) -> None:
        """Let gated lanes in again."""
        self._paused = False
        self._wake_all()

    def cancel_lane(self, lane: Lane) -> None:
        """Cancel ``lane``: drop its waiting items and refuse its future ones."""
        lane.cancelled = True
        self._items = deque(pair for pair in self._items if pair[1] is not lane)
        self._wake_all()

    def close(self, error: BaseException | None = None) -> None:
        """Refuse new items; consumers drain what waits, then get ``error`` (or StoppedError)."""
        if not self._closed:
            self._closed = True
            self._error = error
            self._wake_all()

    # -- waiting -------------------------------------------------------------------------------

    @staticmethod
    def _wake(waiters: list[asyncio.Future[None]]) -> None:
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        waiters.clear()

    def _wake_all(self) -> None:
        self._wake(self._getters)
        self._wake(self._putters)

    @staticmethod
    async def _wait(waiters: list[asyncio.Future[None]], timeout: float | None) -> None:
        waiter = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        try:
            if timeout is None:
                await waiter
            else:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(waiter, timeout)
        finally:
            with contextlib.suppress(ValueError):
                waiters.remove(waiter)


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
