"""The bounded queue ops flow through (``ctx.op_c``), for the asyncio face.

Written by hand, as is its threaded twin ``gtom/_sync/queue.py``: waiting on an event loop and
waiting on threads are different enough that each face has its own. Everything here runs on one
event loop: methods that are not coroutines are atomic and need no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

from gtom._errors import StoppedError

__all__ = ["Lane", "OpQueue", "QueueClosed"]

T = TypeVar("T")


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


class _Chunk(Generic[T]):
    """Items put together by one producer, taken from ``start`` on."""

    __slots__ = ("items", "lane", "start")

    def __init__(self, items: Sequence[T], lane: Lane | None) -> None:
        self.items = items
        self.lane = lane
        self.start = 0


class OpQueue(Generic[T]):
    """The bounded queue ops flow through (``ctx.op_c``).

    ``await get(timeout=None)`` returns the next op; it raises `queue.Empty` when ``timeout``
    seconds pass without one, and once the context is stopped and the queue drained it raises the
    error that stopped it, or `gtom.StoppedError`. ``await get_many(max_items)`` returns every
    op waiting (at least one, at most ``max_items``), in order, with the same rules.

    Ops enter in batches (a server batch, decoded) and are kept as such: putting and taking a
    batch costs about what one op does.
    """

    def __init__(self, maxsize: int) -> None:
        """Create a queue holding at most ``maxsize`` items."""
        self._maxsize = maxsize
        # A blocked producer is woken once the queue has drained to this level, so it refills
        # many slots at a time instead of trading one item at a time with the consumer.
        self._low_water = maxsize // 2
        self._chunks: deque[_Chunk[T]] = deque()
        self._count = 0
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
        return self._count

    def empty(self) -> bool:
        """Whether no item waits in the queue."""
        return not self._count

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
            room = self._maxsize - self._count
            if room < need or (lane.gated and self._paused):
                await self._wait(self._putters, None)
                continue
            batch = items if not done and room >= total else items[done : done + room]
            self._chunks.append(_Chunk(batch, lane))
            self._count += len(batch)
            done += len(batch)
            if self._getters:
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
        if self._count >= self._maxsize:
            self._take(1)
        self._chunks.append(_Chunk((item,), None))
        self._count += 1
        self._wake(self._getters)

    # -- consumers -----------------------------------------------------------------------------

    async def get(self, timeout: float | None = None) -> T:
        """The next item; see the class docstring for timeouts and the end of the stream."""
        if not self._count:
            await self._wait_items(timeout)
        chunk = self._chunks[0]
        item = chunk.items[chunk.start]
        chunk.start += 1
        if chunk.start == len(chunk.items):
            self._chunks.popleft()
        self._count -= 1
        if self._putters and self._count <= self._low_water:
            self._wake(self._putters)
        return item

    async def get_many(self, max_items: int | None = None, timeout: float | None = None) -> list[T]:
        """Every item waiting, in order: at least one, at most ``max_items`` (None: no limit).

        Waits as `get` does; see the class docstring for timeouts and the end of the stream.
        """
        if max_items is not None and max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items!r}")
        if not self._count:
            await self._wait_items(timeout)
        return self._take(self._count if max_items is None else min(max_items, self._count))

    def get_nowait(self) -> T:
        """The next item if one waits, else `queue.Empty` (or the end of the stream)."""
        if not self._count:
            if self._closed:
                raise self._end()
            raise queue.Empty
        return self._take(1)[0]

    async def _wait_items(self, timeout: float | None) -> None:
        """Wait until an item waits (raise `queue.Empty` after ``timeout``, or the end)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self._count:
            if self._closed:
                raise self._end()
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise queue.Empty
            await self._wait(self._getters, remaining)

    def _take(self, count: int) -> list[T]:
        """The first ``count`` items (as many wait), removed."""
        out: list[T] = []
        chunks = self._chunks
        while len(out) < count:
            chunk = chunks[0]
            end = chunk.start + count - len(out)
            if chunk.start == 0 and end >= len(chunk.items):
                out += chunk.items
                chunks.popleft()
                continue
            out += chunk.items[chunk.start : end]
            if end >= len(chunk.items):
                chunks.popleft()
            else:
                chunk.start = end
        self._count -= len(out)
        if self._putters and self._count <= self._low_water:
            self._wake(self._putters)
        return out

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
        self._chunks = deque(chunk for chunk in self._chunks if chunk.lane is not lane)
        self._count = sum(len(chunk.items) - chunk.start for chunk in self._chunks)
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
