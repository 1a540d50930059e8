# Generated from tests/_async/test_queue.py by tools/synchro.py. Edit that one.
"""The queue ops flow through: bounded, pausable per lane, cancellable per lane, closable."""

from __future__ import annotations

import queue

import pytest

import gtom
from gtom._sync.queue import Lane, OpQueue, QueueClosed
from tests._sync._tcompat import Background, sleep
from tests._sync.helpers import wait_until


def test_items_come_out_in_order_and_get_times_out_when_empty() -> None:
    q: OpQueue[int] = OpQueue(5)
    assert q.put_many([1, 2, 3], Lane(gated=False))
    assert [q.get(), q.get(), q.get_nowait()] == [1, 2, 3]
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    with pytest.raises(queue.Empty):
        q.get_nowait()


def test_a_full_queue_makes_the_producer_wait() -> None:
    q: OpQueue[int] = OpQueue(2)
    producer = Background(lambda: q.put_many([1, 2, 3, 4], Lane(gated=False)))
    wait_until(lambda: q.qsize() == 2)
    sleep(0.05)
    assert q.qsize() == 2  # still blocked on the third
    assert [q.get() for _ in range(4)] == [1, 2, 3, 4]
    assert producer.join()


def test_pause_holds_back_gated_lanes_only() -> None:
    q: OpQueue[str] = OpQueue(10)
    q.pause()
    tailing = Background(lambda: q.put_many(["tailed"], Lane(gated=True)))
    assert q.put_many(["direct read"], Lane(gated=False))
    assert q.get(timeout=1) == "direct read"
    with pytest.raises(queue.Empty):
        q.get(timeout=0.1)
    assert q.pause_count == 1
    q.resume()
    assert q.get(timeout=1) == "tailed"
    assert tailing.join()


def test_cancelling_a_lane_drops_its_queued_and_future_items() -> None:
    q: OpQueue[str] = OpQueue(10)
    old, new = Lane(gated=True), Lane(gated=True)
    q.put_many(["old 1", "old 2"], old)
    q.cancel_lane(old)
    assert not q.put_many(["old 3"], old)
    q.put_many(["new 1"], new)
    assert q.get() == "new 1"
    assert q.empty()


def test_closing_wakes_producers_and_lets_consumers_drain() -> None:
    q: OpQueue[int] = OpQueue(1)
    q.put_many([1], Lane(gated=False))
    blocked = Background(lambda: q.put_many([2], Lane(gated=False)))
    sleep(0.05)
    q.close()
    with pytest.raises(QueueClosed):
        blocked.join()
    assert q.get() == 1
    with pytest.raises(gtom.StoppedError):
        q.get()


def test_closing_with_an_error_raises_it_after_the_drain() -> None:
    q: OpQueue[int] = OpQueue(3)
    q.put_many([1], Lane(gated=False))
    q.close(gtom.HistoryLostError("lost"))
    assert q.get() == 1
    with pytest.raises(gtom.HistoryLostError, match="lost"):
        q.get(timeout=1)


def test_offer_never_waits_and_drops_the_oldest_when_full() -> None:
    q: OpQueue[int] = OpQueue(2)
    for i in range(5):
        q.offer(i)
    assert [q.get_nowait(), q.get_nowait()] == [3, 4]


def test_get_many_takes_every_waiting_item_across_batches_in_order() -> None:
    q: OpQueue[int] = OpQueue(100)
    lane = Lane(gated=False)
    assert q.put_many([1, 2, 3], lane)
    assert q.put_many([4, 5], lane)
    assert q.get() == 1  # part of a batch taken: the rest stays in order
    assert q.get_many(max_items=3) == [2, 3, 4]
    assert q.qsize() == 1
    assert q.put_many([6], lane)
    assert q.get_many() == [5, 6]
    assert q.empty()
    with pytest.raises(queue.Empty):
        q.get_many(timeout=0.05)
    with pytest.raises(ValueError, match="max_items"):
        q.get_many(max_items=0)


def test_get_many_waits_for_a_batch_and_ends_like_get() -> None:
    q: OpQueue[int] = OpQueue(10)
    taker = Background(lambda: q.get_many())
    sleep(0.05)
    assert q.put_many([7, 8], Lane(gated=False))
    assert taker.join() == [7, 8]
    assert q.put_many([9], Lane(gated=False))
    q.close(gtom.HistoryLostError("gone"))
    assert q.get_many() == [9]  # what waits is drained first
    with pytest.raises(gtom.HistoryLostError):
        q.get_many()


def test_a_batch_bigger_than_the_room_goes_in_as_room_frees() -> None:
    q: OpQueue[int] = OpQueue(3)
    producer = Background(lambda: q.put_many(list(range(10)), Lane(gated=False)))
    taken: list[int] = []
    while len(taken) < 10:
        taken += q.get_many(timeout=5)
        assert q.qsize() <= 3
    assert taken == list(range(10))
    assert producer.join()


def test_cancelling_a_lane_drops_its_part_taken_batch_and_keeps_the_others() -> None:
    q: OpQueue[str] = OpQueue(10)
    old, other = Lane(gated=False), Lane(gated=False)
    assert q.put_many(["o1", "o2", "o3"], old)
    assert q.put_many(["x1"], other)
    assert q.get() == "o1"
    q.cancel_lane(old)
    assert q.qsize() == 1
    assert q.get_many() == ["x1"]
