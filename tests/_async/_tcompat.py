"""Test-side concurrency helpers of the asyncio face (twin: ``tests/_sync/_tcompat.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


class Background:
    """Run a job concurrently with the test (a task here, a thread in the sync twin)."""

    def __init__(self, target: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        self._task = asyncio.get_running_loop().create_task(target())

    async def join(self, timeout: float = 30) -> Any:
        return await asyncio.wait_for(self._task, timeout)


async def sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


def gtom_workers() -> list[str]:
    """Names of the gtom jobs still running (tasks here, threads in the sync twin)."""
    return sorted(
        t.get_name()
        for t in asyncio.all_tasks()
        if t.get_name().startswith("gtom") and not t.done()
    )


async def in_thread(fn: Callable[[], Any]) -> Any:
    """Run a blocking call without blocking the event loop (a plain call in the sync twin)."""
    return await asyncio.to_thread(fn)
