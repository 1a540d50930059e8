"""The queue ops flow through: bounded, pausable per lane, cancellable per lane, closable."""

from __future__ import annotations

import queue

import pytest

import gtom
from gtom._async.queue import Lane, OpQueue, QueueClosed
from tests._async._tcompat import Background, sleep
from tests._async.helpers import wait_until


async def test_items_come_out_in_order_and_get_times_out_when_empty() -> None:
    q: OpQueue[int] = OpQueue(5)
    assert await q.put_many([1, 2, 3], Lane(gated=False))
    assert [await q.get(), await q.get(), q.get_nowait()] == [1, 2, 3]
    with pytest.raises(queue.Empty):
        await q.get(timeout=0.05)
    with pytest.raises(queue.Empty):
        q.get_nowait()


async def test_a_full_queue_makes_the_producer_wait() -> None:
    q: OpQueue[int] = OpQueue(2)
    producer = Background(lambda: q.put_many([1, 2, 3, 4], Lane(gated=False)))
    await wait_until(lambda: q.qsize() == 2)
    await sleep(0.05)
    assert q.qsize() == 2  # still blocked on the third
    assert [await q.get() for _ in range(4)] == [1, 2, 3, 4]
    assert await producer.join()


async def test_pause_holds_back_gated_lanes_only() -> None:
    q: OpQueue[str] = OpQueue(10)
    q.pause()
    tailing = Background(lambda: q.put_many(["tailed"], Lane(gated=True)))
    assert await q.put_many(["direct read"], Lane(gated=False))
    assert await q.get(timeout=1) == "direct read"
    with pytest.raises(queue.Empty):
        await q.get(timeout=0.1)
    assert q.pause_count == 1
    q.resume()
    assert await q.get(timeout=1) == "tailed"
    assert await tailing.join()


async def test_cancelling_a_lane_drops_its_queued_and_future_items() -> None:
    q: OpQueue[str] = OpQueue(10)
    old, new = Lane(gated=True), Lane(gated=True)
    await q.put_many(["old 1", "old 2"], old)
    q.cancel_lane(old)
    assert not await q.put_many(["old 3"], old)
    await q.put_many(["new 1"], new)
    assert await q.get() == "new 1"
    assert q.empty()


async def test_closing_wakes_producers_and_lets_consumers_drain() -> None:
    q: OpQueue[int] = OpQueue(1)
    await q.put_many([1], Lane(gated=False))
    blocked = Background(lambda: q.put_many([2], Lane(gated=False)))
    await sleep(0.05)
    q.close()
    with pytest.raises(QueueClosed):
        await blocked.join()
    assert await q.get() == 1
    with pytest.raises(gtom.StoppedError):
        await q.get()


async def test_closing_with_an_error_raises_it_after_the_drain() -> None:
    q: OpQueue[int] = OpQueue(3)
    await q.put_many([1], Lane(gated=False))
    q.close(gtom.HistoryLostError("lost"))
    assert await q.get() == 1
    with pytest.raises(gtom.HistoryLostError, match="lost"):
        await q.get(timeout=1)


async def test_offer_never_waits_and_drops_the_oldest_when_full() -> None:
    q: OpQueue[int] = OpQueue(2)
    for i in range(5):
        q.offer(i)
    assert [q.get_nowait(), q.get_nowait()] == [3, 4]
