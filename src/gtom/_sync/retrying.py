# Generated from src/gtom/_async/retrying.py by tools/synchro.py. Edit that one.
"""Retrying one operation while it fails transiently: the loop copies and fetches share.

(Tailers and change stream followers re-open whole cursors and keep their own loops.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from pymongo.errors import PyMongoError

from gtom._backoff import Backoff
from gtom._retry import describe, is_transient, translate
from gtom._sync._compat import Signal, sleep_until_set
from gtom._sync.queue import OpQueue, QueueClosed

__all__ = ["retrying"]

T = TypeVar("T")


def retrying(
    what: str,
    attempt: Callable[[], T],
    *,
    err_c: OpQueue[Exception],
    log: logging.Logger,
    halt: Signal,
) -> T:
    """``attempt()``, retried after a capped, jittered backoff while it fails transiently.

    Each retried error is logged and offered to ``err_c``; a lasting one is raised as the
    `GtomError` for doing ``what``; `QueueClosed` once ``halt`` is set while waiting.
    """
    backoff = Backoff()
    while True:
        try:
            return attempt()
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
            sleep_until_set(delay, halt)
            if halt.is_set():
                raise QueueClosed from e
