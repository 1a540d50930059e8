"""The bounded queue ops flow through (``ctx.op_c``), for the threaded (sync) face.

Written by hand, as is its asyncio twin ``gtom/_async/queue.py``: waiting on threads and waiting
on an event loop are different enough that each face has its own. Safe to use from any thread.
"""

from __future__ import annotations

import queue
import threading
import time
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


#: Longest single wait of a consumer, so that the main thread runs pending signal handlers.
_SLICE = 0.25


class _Chunk(Generic[T]):
    """Items put together by one producer, taken from ``start`` on."""

    __slots__ = ("items", "lane", "start")

    def __init__(self, items: Sequence[T], lane: Lane | None) -> None:
        self.items = items
        self.lane = lane
        self.start = 0


class OpQueue(Generic[T]):
    """The bounded queue ops flow through (``ctx.op_c``); safe to use from any thread.

    ``get(timeout=None)`` returns the next op; it raises `queue.Empty` when ``timeout`` seconds
    pass without one, and once the context is stopped and the queue drained it raises the error
    that stopped it, or `gtom.StoppedError`. ``get_many(max_items)`` returns every op waiting
    (at least one, at most ``max_items``), in order, with the same rules.

    Ops enter in batches (a server batch, decoded) and are kept as such: putting and taking a
    batch costs about what one op does, and a waiting consumer is woken once per batch.
    """

    def __init__(self, maxsize: int) -> None:
        """Create a queue holding at most ``maxsize`` items."""
        self._maxsize = maxsize
        # A blocked producer is woken once the queue has drained to this level, so it refills
        # many slots at a time instead of trading one item at a time with the consumer.
        self._low_water = maxsize // 2
        self._chunks: deque[_Chunk[T]] = deque()
        self._count = 0
        self._blocked_getters = 0  # consumers waiting on _not_empty: only then is it notified
        # Re-entrant: a signal handler may stop the context (close the queue) while the main
        # thread is inside get(); with a plain lock that would deadlock.
        lock = threading.RLock()
        self._not_empty = threading.Condition(lock)
        self._not_full = threading.Condition(lock)  # room, resume, cancel or close
        self._blocked_putters = 0  # producers waiting on _not_full: only then is it notified
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

    def put_many(self, items: Sequence[T], lane: Lane, *, atomic: bool = False) -> bool:
        """Put items in order, waiting for room (and for `resume` on a gated lane).

        Returns False when the lane was cancelled (the rest is dropped); raises `QueueClosed` once
        the queue is closed. ``atomic``: all items go in together or none do (at most
        ``maxsize`` items).
        """
        done, total = 0, len(items)
        need = min(total, self._maxsize) if atomic else 1
        with self._not_full:
            while done < total:
                if self._closed:
                    raise QueueClosed
                if lane.cancelled:
                    return False
                room = self._maxsize - self._count
                if room < need or (lane.gated and self._paused):
                    self._wait_not_full()
                    continue
                batch = items if not done and room >= total else items[done : done + room]
                self._chunks.append(_Chunk(batch, lane))
                self._count += len(batch)
                done += len(batch)
                if self._blocked_getters:
                    self._not_empty.notify_all()
            return not lane.cancelled

    def wait_resumed(self, lane: Lane) -> bool:
        """Wait until the queue is not paused; False if the lane was cancelled meanwhile."""
        with self._not_full:
            while self._paused and not lane.cancelled:
                if self._closed:
                    raise QueueClosed
                self._wait_not_full()
            if self._closed:
                raise QueueClosed
            return not lane.cancelled

    def offer(self, item: T) -> None:
        """Put without waiting; when full, drop the oldest item (for ``err_c``)."""
        with self._not_empty:
            if self._closed:
                return
            if self._count >= self._maxsize:
                self._take(1)
            self._chunks.append(_Chunk((item,), None))
            self._count += 1
            if self._blocked_getters:
                self._not_empty.notify_all()

    # -- consumers -----------------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> T:
        """The next item; see the class docstring for timeouts and the end of the stream."""
        with self._not_empty:
            if not self._count:
                self._wait_items(timeout)
            chunk = self._chunks[0]
            item = chunk.items[chunk.start]
            chunk.start += 1
            if chunk.start == len(chunk.items):
                self._chunks.popleft()
            self._count -= 1
            if self._blocked_putters and self._count <= self._low_water:
                self._not_full.notify_all()
            return item

    def get_many(self, max_items: int | None = None, timeout: float | None = None) -> list[T]:
        """Every item waiting, in order: at least one, at most ``max_items`` (None: no limit).

        Waits as `get` does; see the class docstring for timeouts and the end of the stream.
        """
        if max_items is not None and max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items!r}")
        with self._not_empty:
            if not self._count:
                self._wait_items(timeout)
            return self._take(self._count if max_items is None else min(max_items, self._count))

    def get_nowait(self) -> T:
        """The next item if one waits, else `queue.Empty` (or the end of the stream)."""
        with self._not_empty:
            if not self._count:
                if self._closed:
                    raise self._end()
                raise queue.Empty
            return self._take(1)[0]

    def _wait_items(self, timeout: float | None) -> None:
        """Wait until an item waits (raise `queue.Empty` after ``timeout``, or the end)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._count:
            if self._closed:
                raise self._end()
            remaining = _SLICE if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise queue.Empty
            # In slices: a thread blocked on a lock never runs the signal handlers a signal
            # delivered to another thread left pending (Ctrl-C, SIGTERM would wait forever).
            self._blocked_getters += 1
            try:
                self._not_empty.wait(min(remaining, _SLICE))
            finally:
                self._blocked_getters -= 1

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
        if self._blocked_putters and self._count <= self._low_water:
            self._not_full.notify_all()
        return out

    def _wait_not_full(self) -> None:
        self._blocked_putters += 1
        try:
            self._not_full.wait()
        finally:
            self._blocked_putters -= 1

    def _end(self) -> BaseException:
        return self._error if self._error is not None else StoppedError("the context is stopped")

    # -- control -------------------------------------------------------------------------------

    def pause(self) -> None:
        """Hold back gated lanes: none of their items enters the queue until `resume`."""
        with self._not_full:
            self._paused = True
            self._pauses += 1

    def resume(self) -> None:
        """Let gated lanes in again."""
        with self._not_full:
            self._paused = False
            self._not_full.notify_all()

    def cancel_lane(self, lane: Lane) -> None:
        """Cancel ``lane``: drop its waiting items and refuse its future ones."""
        with self._not_full:
            lane.cancelled = True
            self._chunks = deque(chunk for chunk in self._chunks if chunk.lane is not lane)
            self._count = sum(len(chunk.items) - chunk.start for chunk in self._chunks)
            self._not_full.notify_all()

    def close(self, error: BaseException | None = None) -> None:
        """Refuse new items; consumers drain what waits, then get ``error`` (or StoppedError)."""
        with self._not_full:
            if not self._closed:
                self._closed = True
                self._error = error
                self._not_full.notify_all()
                self._not_empty.notify_all()
