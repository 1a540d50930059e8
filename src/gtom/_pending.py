"""Oplog ops waiting to be queued while their updates' documents are fetched together. Pure.

An oplog update says what changed, not what the document now is, so gtom fetches the documents
of updates — many at once: it holds decoded ops, entry by entry and in oplog order, until
``buffer_size`` updates wait (then it hands over whole fetch batches) or the oldest has waited
``buffer_duration`` seconds (then everything goes). Ops leave in the order they came, so
fetching never reorders anything; the tailer's position moves only past entries handed over.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from bson import Timestamp

from gtom._op import Op, Source
from gtom._position import Position

__all__ = ["PendingOps", "needs_document"]


def needs_document(op: Op) -> bool:
    """Whether ``op`` is an oplog update whose document must be fetched."""
    return op.operation == "u" and op.data is None and op.source is Source.OPLOG


@dataclass(slots=True)
class _Entry:
    ops: list[Op]
    ts: Timestamp  # the entry's own timestamp: handing it over advances the position past it
    arrived: float
    needs: int


class PendingOps:
    """Decoded entries not yet handed over, and when to hand them over."""

    def __init__(self, buffer_size: int, buffer_duration: float, *, fetching: bool) -> None:
        """Hold at most ``buffer_size`` updates for ``buffer_duration`` s (when ``fetching``)."""
        self._size = buffer_size
        self._duration = buffer_duration
        self._fetching = fetching
        self._entries: deque[_Entry] = deque()
        self.needs = 0
        """Ops waiting that need their document fetched."""

    def __len__(self) -> int:
        """How many entries wait."""
        return len(self._entries)

    def clear(self) -> None:
        """Drop everything (the tailer re-reads it from its position)."""
        self._entries.clear()
        self.needs = 0

    def add(self, ops: list[Op], ts: Timestamp, now: float) -> None:
        """The ops of the entry at ``ts`` (possibly none); ``now`` is monotonic."""
        needs = 0
        if self._fetching:
            for op in ops:
                if op.operation == "u" and op.data is None:  # oplog ops: needs_document
                    needs += 1
            self.needs += needs
        self._entries.append(_Entry(ops, ts, now, needs))

    def due(self, now: float, *, force: bool = False) -> int:
        """How many entries to hand over now (0: keep waiting)."""
        entries = self._entries
        if not entries:
            return 0
        if force or not self.needs or now - entries[0].arrived >= self._duration:
            return len(entries)
        if self.needs < self._size:
            return 0
        # Whole fetch batches: the shortest prefix holding a multiple of buffer_size updates.
        target = self.needs - self.needs % self._size
        count = needs = 0
        for entry in entries:
            count += 1
            needs += entry.needs
            if needs >= target:
                break
        return count

    def remaining(self, now: float) -> float:
        """Seconds until the oldest waiting entry must be handed over (0: now)."""
        if not self._entries:
            return 0.0
        return max(0.0, self._duration - (now - self._entries[0].arrived))

    def take(self, count: int, position: Position) -> tuple[list[Op], Position]:
        """The ops of the first ``count`` entries (in order) and the position after them.

        That is ``position`` passed over each entry taken: only the run of entries sharing the
        last one's timestamp matters (usually one entry), so only that run is counted.
        """
        ops: list[Op] = []
        entries = self._entries
        taken = [entries.popleft() for _ in range(count)]
        for entry in taken:
            ops += entry.ops
            self.needs -= entry.needs
        last = taken[-1].ts
        run = 1
        while run < len(taken) and taken[-run - 1].ts == last:
            run += 1
        return ops, position.passed(last, run)
