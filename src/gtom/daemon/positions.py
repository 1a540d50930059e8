"""Which events were delivered, as checkpoint positions; and where a restart picks up (pure).

Ops arrive in lanes, each ordered on its own: the oplog (one per shard when following shards),
and one per change stream. Direct reads have no position: a copy is either complete (all its
events confirmed) or done again.

* `Tracker` advances a `Checkpoint` as batches are confirmed, in delivery order.
* `Skipper` drops, after a restart, the ops at the checkpoint's timestamp that were already
  delivered (an oplog timestamp can be shared by several ops: a transaction's, an ``applyOps``).
* `lane_of` names an op's lane; `resume_after` is where a lane's tailing restarts.
"""

from __future__ import annotations

from collections.abc import Iterable

from bson import Timestamp

from gtom._op import Op, Source
from gtom.daemon.checkpoint import Checkpoint, Mark, StreamMark

__all__ = ["ALL", "Skipper", "Tracker", "lane_of", "previous_timestamp", "resume_after"]

ALL = -1
"""A `Mark` count meaning "everything at ``ts`` was delivered" (a start position)."""


def lane_of(op: Op) -> str:
    """``"copy"``, ``"stream:<id>"``, ``"shard:<name>"`` or ``"oplog"``."""
    if op.source is Source.DIRECT_READ:
        return "copy"
    if op.source is Source.CHANGE_STREAM:
        return f"stream:{op.stream_id}"
    return "oplog" if op.shard is None else f"shard:{op.shard}"


def previous_timestamp(ts: Timestamp) -> Timestamp:
    """The greatest timestamp smaller than ``ts`` (nothing lies between them)."""
    if ts.inc > 0:
        return Timestamp(ts.time, ts.inc - 1)
    return Timestamp(max(0, ts.time - 1), 0xFFFFFFFF)


def resume_after(mark: Mark) -> Timestamp:
    """Where to tail from (strictly after) to see every op not delivered according to ``mark``.

    A mark with a count re-reads its own timestamp, so the `Skipper` can drop what was delivered.
    """
    if mark.count == ALL or mark.ts == Timestamp(0, 0):
        return mark.ts
    return previous_timestamp(mark.ts)


def _advanced(mark: Mark | None, ts: Timestamp) -> Mark:
    if mark is not None and mark.ts == ts and mark.count != ALL:
        return Mark(ts, mark.count + 1)
    return Mark(ts, 1)


class Tracker:
    """Moves a checkpoint forward over confirmed ops, in the order they were delivered."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        """Advance ``checkpoint`` in place."""
        self.checkpoint = checkpoint

    def confirm(self, ops: Iterable[Op]) -> None:
        """Record that ``ops`` (the next ones in delivery order) were delivered."""
        cp = self.checkpoint
        for op in ops:
            ts = op.timestamp
            if op.source is Source.DIRECT_READ or ts is None:
                continue
            if op.source is Source.CHANGE_STREAM:
                stream = cp.streams.setdefault(op.stream_id or "", StreamMark())
                stream.mark = _advanced(stream.mark, ts)
                if op.resume_token is not None:
                    stream.token = op.resume_token
            elif op.shard is not None:
                cp.shards[op.shard] = _advanced(cp.shards.get(op.shard), ts)
            else:
                cp.oplog = _advanced(cp.oplog, ts)


class Skipper:
    """After a restart, drops the oplog ops a checkpoint says were delivered already."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        """Skip per the checkpoint's oplog and shard marks (streams resume by token)."""
        self._left: dict[str, Mark] = {}
        if checkpoint.oplog is not None and checkpoint.oplog.count > 0:
            self._left["oplog"] = Mark(checkpoint.oplog.ts, checkpoint.oplog.count)
        for shard, mark in checkpoint.shards.items():
            if mark.count > 0:
                self._left[f"shard:{shard}"] = Mark(mark.ts, mark.count)

    def skip(self, op: Op, lane: str) -> bool:
        """Whether ``op`` (the next of its lane) was delivered before the restart."""
        left = self._left.get(lane)
        if left is None:
            return False
        if op.timestamp == left.ts and left.count > 0:
            left.count -= 1
            return True
        del self._left[lane]  # past the mark: nothing more to skip in this lane
        return False
