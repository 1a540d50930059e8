"""Test-side concurrency helpers of the sync face (twin: ``tests/_async/_tcompat.py``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class Background:
    """Run a job concurrently with the test (a thread here, a task in the async twin)."""

    def __init__(self, target: Callable[[], Any]) -> None:
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(target,), daemon=True)
        self._thread.start()

    def _run(self, target: Callable[[], Any]) -> None:
        try:
            self._result = target()
        except BaseException as e:
            self._error = e

    def join(self, timeout: float = 30) -> Any:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("background job did not finish")
        if self._error is not None:
            raise self._error
        return self._result


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def gtom_workers() -> list[str]:
    """Names of the gtom jobs still running (threads here, tasks in the async twin)."""
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("gtom"))


def in_thread(fn: Callable[[], Any]) -> Any:
    """Run a blocking call (off the event loop in the async twin)."""
    return fn()
