"""Batches in flight, and the checkpoint that is safe to save: the ack tracker (pure).

Each `Batch` the daemon hands to its sink carries what confirming it means for the checkpoint:
its ops (positions move past them), where the copies were once its ops had been read, and
whether every copied document is in it or before it. `AckTracker.track` registers a batch, in
read order, and returns its `Ack`; resolving acks, in whatever order they come, applies every
batch up to the first unresolved one to the checkpoint, never further. So the checkpoint never
passes an event the sink has not confirmed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gtom._op import Op
from gtom.daemon.checkpoint import Checkpoint
from gtom.daemon.positions import confirm
from gtom.daemon.sinks.base import Event

__all__ = ["Ack", "AckTracker", "Batch"]


@dataclass(eq=False)
class Batch:
    """Events to deliver together, and what confirming them means for the checkpoint."""

    events: list[Event] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    copies: Mapping[str, Any] | None = None
    """Where the copies were once every op of this batch had been read (to save with it)."""
    copies_done: bool = False
    """Every copied document is in this batch or an earlier one."""

    def add(self, event: Event, op: Op) -> None:
        """Append one event (and the op it is made of)."""
        self.events.append(event)
        self.ops.append(op)

    def __len__(self) -> int:
        """How many events the batch holds."""
        return len(self.events)


@dataclass(eq=False)
class Ack:
    """A tracked batch's acknowledgement: resolve it once the sink confirmed the batch."""

    batch: Batch
    resolved: bool = False


class AckTracker:
    """Applies confirmed batches to a checkpoint, in read order, whatever order acks come in."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        """Track batches against ``checkpoint`` (advanced in place)."""
        self.checkpoint = checkpoint
        self._pending: deque[Ack] = deque()
        self.copies_done = False
        """Whether a confirmed batch said every copied document was delivered."""

    @property
    def pending(self) -> int:
        """How many tracked batches are not applied yet."""
        return len(self._pending)

    @property
    def newest(self) -> Batch | None:
        """The most recently tracked batch not applied yet."""
        return self._pending[-1].batch if self._pending else None

    def track(self, batch: Batch) -> Ack:
        """Register ``batch``, the next one in read order; its `Ack`."""
        ack = Ack(batch)
        self._pending.append(ack)
        return ack

    def resolve(self, ack: Ack) -> bool:
        """Record that ``ack``'s batch was confirmed; whether the checkpoint moved."""
        ack.resolved = True
        moved = False
        while self._pending and self._pending[0].resolved:
            self._apply(self._pending.popleft().batch)
            moved = True
        return moved

    def _apply(self, batch: Batch) -> None:
        confirm(self.checkpoint, batch.ops)
        if batch.copies is not None:
            self.checkpoint.copies = dict(batch.copies)
        if batch.copies_done:
            self.copies_done = True
