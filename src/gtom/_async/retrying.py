"""Retrying one operation while it fails transiently: the loop copies and fetches share.

(Tailers and change stream followers re-open whole cursors and keep their own loops.)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pymongo.errors import PyMongoError

from gtom._async._compat import Signal, sleep_until_set
from gtom._async.queue import OpQueue, QueueClosed
from gtom._backoff import Backoff
from gtom._retry import describe, is_transient, translate

__all__ = ["retrying"]

T = TypeVar("T")


async def retrying(
    what: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    err_c: OpQueue[Exception],
    log: logging.Logger,
    halt: Signal,
) -> T:
    """``await attempt()``, retried after a capped, jittered backoff while it fails transiently.

    Each retried error is logged and offered to ``err_c``; a lasting one is raised as the
    `GtomError` for doing ``what``; `QueueClosed` once ``halt`` is set while waiting.
    """
    backoff = Backoff()
    while True:
        try:
            return await attempt()
        except PyMongoError as e:
            if not is_transient(e):
                raise translate(e, what) from e
            delay = backoff.next_delay()
            err_c.offer(e)
            log.warning(
                "gtom: %s failed (%s); retry %d in %.2fs",
                what,
                describe(e),
                backoff.attempts,
                delay,
            )
            await sleep_until_set(delay, halt)
            if halt.is_set():
                raise QueueClosed from e
