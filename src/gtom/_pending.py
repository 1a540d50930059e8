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

from gtom._op import Op, Source
from gtom._position import OplogPosition

__all__ = ["PendingOps", "needs_document"]


def needs_document(op: Op) -> bool:
    """Whether ``op`` is an oplog update whose document must be fetched."""
    return op.operation == "u" and op.data is None and op.source is Source.OPLOG


@dataclass(slots=True)
class _Entry:
    ops: list[Op]
    position: OplogPosition  # the tailer's position once this entry is handed over
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

    def add(self, ops: list[Op], position: OplogPosition, now: float) -> None:
        """An entry's ops, and the position once they are handed over; ``now`` is monotonic."""
        needs = sum(map(needs_document, ops)) if self._fetching else 0
        self._entries.append(_Entry(ops, position, now, needs))
        self.needs += needs

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

    @property
    def last_position(self) -> OplogPosition | None:
        """The position after the newest waiting entry (None when none waits)."""
        return self._entries[-1].position if self._entries else None

    def remaining(self, now: float) -> float:
        """Seconds until the oldest waiting entry must be handed over (0: now)."""
        if not self._entries:
            return 0.0
        return max(0.0, self._duration - (now - self._entries[0].arrived))

    def take(self, count: int) -> tuple[list[Op], OplogPosition]:
        """The ops of the first ``count`` entries (in order) and the position after them."""
        ops: list[Op] = []
        entry = self._entries[0]
        for _ in range(count):
            entry = self._entries.popleft()
            ops += entry.ops
            self.needs -= entry.needs
        return ops, entry.position
