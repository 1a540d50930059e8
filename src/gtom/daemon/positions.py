"""Which events were delivered, as checkpoint positions; and what a restart skips (pure).

Ops arrive in lanes, each ordered on its own: the oplog (one per shard when following shards),
and one per change stream. Direct reads have no position: a copy is either complete (all its
events confirmed) or done again. Every position is a `gtom._position.Position`.

* `confirm` advances a `Checkpoint` over confirmed ops, in delivery order.
* `Skipper` drops, after a restart, the ops at the checkpoint's timestamp that were already
  delivered (an oplog timestamp can be shared by several ops: a transaction's, an ``applyOps``).
* `lane_of` names an op's lane.
"""

from __future__ import annotations

from collections.abc import Iterable

from gtom._op import Op, Source
from gtom._position import Position, ReRead
from gtom.daemon.checkpoint import Checkpoint, StreamMark

__all__ = ["Skipper", "confirm", "lane_of"]


def lane_of(op: Op) -> str:
    """``"copy"``, ``"stream:<id>"``, ``"shard:<name>"`` or ``"oplog"``."""
    if op.source is Source.DIRECT_READ:
        return "copy"
    if op.source is Source.CHANGE_STREAM:
        return f"stream:{op.stream_id}"
    return "oplog" if op.shard is None else f"shard:{op.shard}"


def _passed(position: Position | None, op: Op) -> Position:
    assert op.timestamp is not None
    return Position(op.timestamp, 1) if position is None else position.passed(op.timestamp)


def confirm(checkpoint: Checkpoint, ops: Iterable[Op]) -> None:
    """Record in ``checkpoint`` that ``ops`` (the next ones in delivery order) were delivered."""
    for op in ops:
        if op.source is Source.DIRECT_READ or op.timestamp is None:
            continue
        if op.source is Source.CHANGE_STREAM:
            stream = checkpoint.streams.setdefault(op.stream_id or "", StreamMark())
            stream.mark = _passed(stream.mark, op)
            if op.resume_token is not None:
                stream.token = op.resume_token
        elif op.shard is not None:
            checkpoint.shards[op.shard] = _passed(checkpoint.shards.get(op.shard), op)
        else:
            checkpoint.oplog = _passed(checkpoint.oplog, op)


class Skipper:
    """After a restart, drops the oplog ops a checkpoint says were delivered already.

    A lane's tailing restarts just before its position's timestamp (`Position.tail_after`), so
    its first ops are the ones at that timestamp: the position's `ReRead` drops those passed.
    """

    def __init__(self, checkpoint: Checkpoint) -> None:
        """Skip per the checkpoint's oplog and shard positions (streams resume by token)."""
        self._left: dict[str, ReRead] = {}
        if checkpoint.oplog is not None and checkpoint.oplog.seen > 0:
            self._left["oplog"] = checkpoint.oplog.re_read()
        for shard, position in checkpoint.shards.items():
            if position.seen > 0:
                self._left[f"shard:{shard}"] = position.re_read()

    def skip(self, op: Op, lane: str) -> bool:
        """Whether ``op`` (the next of its lane) was delivered before the restart."""
        left = self._left.get(lane)
        if left is None or op.timestamp is None:
            return False
        if left.admit(op.timestamp):
            del self._left[lane]  # past the position: nothing more to skip in this lane
            return False
        return True
