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
from typing import Any

from bson import Timestamp

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


def _passed(position: Position | None, ts: Timestamp, count: int) -> Position:
    return Position(ts, count) if position is None else position.passed(ts, count)


def confirm(checkpoint: Checkpoint, ops: Iterable[Op]) -> None:
    """Record in ``checkpoint`` that ``ops`` (the next ones in delivery order) were delivered.

    Each lane's ops come in timestamp order, so a lane moves to its last op's timestamp, past
    the run of ops that share it: one position per lane and call, whatever the number of ops.
    """
    runs: dict[str | None, list[Any]] = {}  # shard (None: the oplog) -> [ts, run]
    streams: dict[str, list[Any]] = {}  # stream id -> [ts, run, token]
    for op in ops:
        ts = op.timestamp
        if op.source is Source.DIRECT_READ or ts is None:
            continue
        if op.source is Source.CHANGE_STREAM:
            run = streams.get(op.stream_id or "")
            if run is None:
                streams[op.stream_id or ""] = [ts, 1, op.resume_token]
            else:
                run[1] = run[1] + 1 if run[0] == ts else 1
                run[0] = ts
                if op.resume_token is not None:
                    run[2] = op.resume_token
            continue
        run = runs.get(op.shard)
        if run is None:
            runs[op.shard] = [ts, 1]
        elif run[0] == ts:
            run[1] += 1
        else:
            run[0], run[1] = ts, 1
    for shard, (ts, count) in runs.items():
        if shard is None:
            checkpoint.oplog = _passed(checkpoint.oplog, ts, count)
        else:
            checkpoint.shards[shard] = _passed(checkpoint.shards.get(shard), ts, count)
    for sid, (ts, count, token) in streams.items():
        stream = checkpoint.streams.setdefault(sid, StreamMark())
        stream.mark = _passed(stream.mark, ts, count)
        if token is not None:
            stream.token = token


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
