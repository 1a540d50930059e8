"""Oplog ops waiting to be queued while their updates' documents are fetched together. Pure.

An oplog update says what changed, not what the document now is, so gtom fetches the documents
of updates — many at once: it holds decoded ops, in oplog order, until ``buffer_size`` updates
wait (then it hands over the units holding whole fetch batches) or the oldest has waited
``buffer_duration`` seconds (then everything goes). Ops leave in the order they came, so
fetching never reorders anything; the tailer's position moves only past entries handed over.

A unit is what the tailer adds at once: the ops of a server batch's entries (or of one entry).
Its position is its last entry's timestamp and how many of the entries read share it.
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
class _Unit:
    ops: list[Op]
    ts: Timestamp  # its last entry's timestamp: handing it over advances the position past it
    run: int  # how many of its entries (at its end) have that timestamp
    arrived: float
    needs: int


class PendingOps:
    """Decoded entries not yet handed over, and when to hand them over."""

    def __init__(self, buffer_size: int, buffer_duration: float, *, fetching: bool) -> None:
        """Hold at most ``buffer_size`` updates for ``buffer_duration`` s (when ``fetching``)."""
        self._size = buffer_size
        self._duration = buffer_duration
        self._fetching = fetching
        self._entries: deque[_Unit] = deque()
        self.needs = 0
        """Ops waiting that need their document fetched."""

    def __len__(self) -> int:
        """How many units wait."""
        return len(self._entries)

    def clear(self) -> None:
        """Drop everything (the tailer re-reads it from its position)."""
        self._entries.clear()
        self.needs = 0

    def add(
        self, ops: list[Op], ts: Timestamp, now: float, run: int = 1, *, needs: int | None = None
    ) -> None:
        """The ops (possibly none) of entries read up to the one at ``ts``, in order.

        ``run``: how many of those entries, at the end, have timestamp ``ts`` (1 for one entry);
        ``now`` is monotonic; ``needs``: how many of the ops need their document fetched, if the
        caller counted them already.
        """
        if not self._fetching:
            needs = 0
        elif needs is None:
            needs = sum(1 for op in ops if op.operation == "u" and op.data is None)
        self.needs += needs
        self._entries.append(_Unit(ops, ts, run, now, needs))

    def due(self, now: float, *, force: bool = False) -> int:
        """How many units to hand over now (0: keep waiting)."""
        entries = self._entries
        if not entries:
            return 0
        if force or not self.needs or now - entries[0].arrived >= self._duration:
            return len(entries)
        if self.needs < self._size:
            return 0
        # Whole fetch batches: the shortest run of units holding a multiple of buffer_size
        # updates.
        target = self.needs - self.needs % self._size
        count = needs = 0
        for entry in entries:
            count += 1
            needs += entry.needs
            if needs >= target:
                break
        return count

    def group(self, count: int) -> int:
        """Of the first ``count`` units, how many make the first fetch group.

        That is the shortest prefix holding ``buffer_size`` updates to fetch, or all ``count``:
        groups fetched at once each make full queries.
        """
        if not self._fetching:
            return count
        needs = 0
        for taken, unit in enumerate(self._entries, start=1):
            needs += unit.needs
            if needs >= self._size or taken >= count:
                return taken
        return count

    def remaining(self, now: float) -> float:
        """Seconds until the oldest waiting unit must be handed over (0: now)."""
        if not self._entries:
            return 0.0
        return max(0.0, self._duration - (now - self._entries[0].arrived))

    def take(self, count: int, position: Position) -> tuple[list[Op], Position]:
        """The ops of the first ``count`` units (in order) and the position after them.

        That is ``position`` passed over each unit's entries: only the run of entries sharing
        the last timestamp matters, so only that run is counted.
        """
        entries = self._entries
        if count == 1:
            unit = entries.popleft()
            self.needs -= unit.needs
            return unit.ops, position.passed(unit.ts, unit.run)
        ops: list[Op] = []
        for _ in range(count):
            unit = entries.popleft()
            ops += unit.ops
            self.needs -= unit.needs
            position = position.passed(unit.ts, unit.run)
        return ops, position
