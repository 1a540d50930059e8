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


def test_a_unit_of_many_entries_moves_the_position_past_its_run_at_the_last_timestamp() -> None:
    pending = PendingOps(50, 0.75, fetching=False)
    # A server batch: entries at ts 1, 2, 3, 3, 3 (a transaction), one unit ending in a run of 3.
    pending.add([insert(1), insert(2), insert(3)], ts(3), now=0.0, run=3)
    # The next batch starts with two more entries at ts 3: the run goes on across units.
    pending.add([insert(4)], ts(3), now=0.0, run=2)
    ops, pos = pending.take(1, START)
    assert [op.id for op in ops] == [1, 2, 3] and pos == Position(ts(3), 3)
    ops, pos = pending.take(1, pos)
    assert [op.id for op in ops] == [4] and pos == Position(ts(3), 5)


def test_counted_needs_are_taken_as_given_and_ignored_without_fetching() -> None:
    pending = PendingOps(2, 10.0, fetching=True)
    pending.add([update(1), update(2)], ts(2), now=0.0, run=2, needs=2)
    assert pending.needs == 2 and pending.due(0.0) == 1
    plain = PendingOps(2, 10.0, fetching=False)
    plain.add([update(1)], ts(1), now=0.0, needs=1)
    assert plain.needs == 0 and plain.due(0.0) == 1


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


def test_due_units_are_grouped_a_fetch_batch_at_a_time() -> None:
    pending = PendingOps(2, 10.0, fetching=True)
    pending.add([insert(1)], ts(1), now=0.0)  # nothing to fetch: joins the next group
    pending.add([update(2)], ts(2), now=0.0)
    pending.add([update(3)], ts(3), now=0.0)
    pending.add([update(4), update(5)], ts(4), now=0.0)  # one entry: never split
    pending.add([update(6)], ts(5), now=0.0)
    assert pending.due(0.0) == 4  # whole fetch batches: 4 of the 5 updates
    assert pending.group(4) == 3  # insert 1, updates 2 and 3
    pending.take(3, START)
    assert pending.group(1) == 1
    assert PendingOps(2, 10.0, fetching=False).group(5) == 5
