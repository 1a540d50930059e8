"""When oplog ops waiting for a fetch batch are handed over (pure), and delta mode's data."""

from __future__ import annotations

from bson import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from gtom import Op, Source
from gtom._async.fetch import delta
from gtom._pending import PendingOps, needs_document
from gtom._position import ALL, Position


def update(i: int) -> Op:
    return Op("u", "db.c", id=i, timestamp=Timestamp(1, i), source=Source.OPLOG)


def insert(i: int) -> Op:
    return Op("i", "db.c", id=i, data={"_id": i}, source=Source.OPLOG)


def ts(i: int) -> Timestamp:
    return Timestamp(1, i)


def position(i: int) -> Position:
    return Position(ts(i), 1)


START = Position(Timestamp(0, 5))


def test_only_oplog_updates_without_a_document_need_one() -> None:
    assert needs_document(update(1))
    assert not needs_document(insert(1))
    replaced = Op("u", "db.c", id=1, data={"_id": 1}, source=Source.OPLOG)
    streamed = Op("u", "db.c", id=1, source=Source.CHANGE_STREAM)
    assert not needs_document(replaced) and not needs_document(streamed)


def test_ops_needing_nothing_go_at_once() -> None:
    pending = PendingOps(50, 0.75, fetching=True)
    pending.add([insert(1)], ts(1), now=0.0)
    assert pending.due(0.0) == 1
    ops, pos = pending.take(1, START)
    assert [op.id for op in ops] == [1] and pos == position(1) and not len(pending)


def test_updates_wait_for_a_full_batch_or_their_time() -> None:
    pending = PendingOps(3, 0.75, fetching=True)
    pending.add([update(1)], ts(1), now=0.0)
    pending.add([insert(2)], ts(2), now=0.1)  # behind a waiting update: waits too
    assert pending.due(0.5) == 0
    assert pending.remaining(0.5) == 0.25
    assert pending.due(0.75) == 2  # time is up: everything
    assert pending.remaining(0.75) == 0.0


def test_whole_fetch_batches_leave_and_the_rest_waits() -> None:
    pending = PendingOps(2, 10.0, fetching=True)
    for i in range(5):
        pending.add([update(i)], ts(i), now=0.0)
    assert pending.needs == 5
    count = pending.due(0.0)
    assert count == 4  # two batches of two; the fifth update waits for a partner
    ops, pos = pending.take(count, START)
    assert [op.id for op in ops] == [0, 1, 2, 3] and pos == position(3)
    assert pending.needs == 1 and pending.due(0.0) == 0
    assert pending.due(0.0, force=True) == 1


def test_an_entry_with_several_updates_is_never_split() -> None:
    pending = PendingOps(2, 10.0, fetching=True)
    pending.add([update(1), update(2), update(3)], ts(1), now=0.0)  # a transaction
    assert pending.due(0.0) == 1
    ops, _ = pending.take(1, START)
    assert len(ops) == 3


def test_without_fetching_nothing_waits() -> None:
    pending = PendingOps(50, 0.75, fetching=False)
    pending.add([update(1)], ts(1), now=0.0)
    assert pending.needs == 0 and pending.due(0.0) == 1


def test_clear_drops_what_waits() -> None:
    pending = PendingOps(50, 0.75, fetching=True)
    pending.add([update(1)], ts(1), now=0.0)
    pending.clear()
    assert not len(pending) and pending.needs == 0


def test_the_position_advances_past_every_entry_taken_even_those_without_ops() -> None:
    pending = PendingOps(50, 0.75, fetching=False)
    pending.add([insert(1)], ts(1), now=0.0)
    pending.add([], ts(1), now=0.0)  # a second entry at the same ts (a SecantusDB transaction)
    pending.add([], ts(2), now=0.0)  # a no-op or an entry filtered out
    ops, pos = pending.take(2, START)
    assert len(ops) == 1 and pos == Position(ts(1), 2)
    assert Position(Timestamp(0, 5)) == START  # the start is not changed
    _, pos = pending.take(1, pos)
    assert pos == position(2)


def test_delta_is_an_update_document() -> None:
    op = update(1)
    op.update_description = {"updatedFields": {"a": 1}, "removedFields": ["b"]}
    assert delta(op) == {"$set": {"a": 1}, "$unset": {"b": True}}
    op.update_description = {"updatedFields": {"a": 1}, "removedFields": []}
    assert delta(op) == {"$set": {"a": 1}}
    op.update_description = None
    assert delta(op) is None


@given(
    start=st.tuples(st.integers(1, 3), st.sampled_from([ALL, 0, 1, 2])),
    steps=st.lists(st.integers(0, 2), min_size=1, max_size=8),
)
def test_the_position_after_a_take_is_that_of_advancing_entry_by_entry(
    start: tuple[int, int], steps: list[int]
) -> None:
    begin = Position(Timestamp(1, start[0]), start[1])
    stamps, inc = [], start[0]
    for step in steps:  # oplog order: timestamps never go back
        inc += step
        stamps.append(Timestamp(1, inc))
    pending = PendingOps(50, 0.75, fetching=False)
    for stamp in stamps:
        pending.add([], stamp, now=0.0)
    expected = begin
    for stamp in stamps:
        expected = expected.passed(stamp)
    assert pending.take(len(stamps), begin)[1] == expected
