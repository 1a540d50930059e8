"""Positions (pure): one value type for the engine's tailers and the daemon's checkpoints."""

from __future__ import annotations

from bson import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from gtom._position import ALL, Position, next_timestamp, previous_timestamp

T1, T2, T3 = Timestamp(10, 1), Timestamp(10, 2), Timestamp(11, 1)


def admitted(position: Position, stream: list[Timestamp]) -> list[Timestamp]:
    re_read = position.re_read()
    return [ts for ts in stream if re_read.admit(ts)]


def test_a_re_read_skips_exactly_what_was_passed_at_the_position() -> None:
    # Three entries share T2 (a SecantusDB transaction); two of them were delivered.
    position = Position(T1).passed(T2).passed(T2)
    assert position == Position(T2, 2)
    assert admitted(position, [T1, T2, T2, T2, T3]) == [T2, T3]


def test_a_position_strictly_after_a_timestamp_skips_all_of_it() -> None:
    position = Position(T2)
    assert position.seen == ALL
    assert admitted(position, [T1, T2, T2, T3, T3]) == [T3, T3]
    assert position.passed(T2) == position  # passing more at the same ts keeps "all of it"


def test_once_past_the_passed_prefix_everything_is_new() -> None:
    assert admitted(Position(T1, 1), [T1, T2, T2, T3]) == [T2, T2, T3]


def test_passing_a_run_counts_it_and_a_new_timestamp_starts_over() -> None:
    assert Position(T1, 2).passed(T1, 3) == Position(T1, 5)
    assert Position(T1, 2).passed(T2, 3) == Position(T2, 3)


def test_tailing_restarts_just_before_a_timestamp_partly_passed() -> None:
    assert Position(T2, 1).tail_after() == Timestamp(10, 1)
    assert Position(T2).tail_after() == T2
    assert Position(Timestamp(0, 0), 3).tail_after() == Timestamp(0, 0)
    assert previous_timestamp(Timestamp(100, 0)) == Timestamp(99, 0xFFFFFFFF)
    assert next_timestamp(Timestamp(99, 0xFFFFFFFF)) == Timestamp(100, 0)


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.sampled_from([ALL, 0, 1, 7]))
def test_a_position_round_trips_through_a_document(time: int, inc: int, seen: int) -> None:
    position = Position(Timestamp(time, inc), seen)
    assert Position.from_document(position.to_document()) == position
    if (time, inc) != (0, 0):
        assert previous_timestamp(Timestamp(time, inc)) < Timestamp(time, inc)
