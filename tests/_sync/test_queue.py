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
