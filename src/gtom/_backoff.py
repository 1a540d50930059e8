"""Capped exponential backoff with jitter, as pure state (the caller sleeps)."""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Delays for retrying a failing operation: exponential, capped, with full jitter.

    ``next_delay()`` gives the next wait (seconds); ``reset()`` after a success. ``attempts`` counts
    the failures since the last success. The random source is injectable for tests.
    """

    __slots__ = ("_rand", "attempts", "base", "cap")

    def __init__(
        self, base: float = 0.05, cap: float = 5.0, rand: Callable[[], float] = random.random
    ) -> None:
        """Delays start near ``base`` seconds and never exceed ``cap``."""
        self.base = base
        self.cap = cap
        self.attempts = 0
        self._rand = rand

    def next_delay(self) -> float:
        """Count a failure and return how long to wait before the next attempt."""
        ceiling = min(self.cap, self.base * float(1 << min(self.attempts, 30)))
        self.attempts += 1
        # "Equal jitter": at least half the ceiling, so retries never hammer the server.
        return ceiling / 2 + self._rand() * ceiling / 2

    def reset(self) -> None:
        """Record a success: the next failure starts from ``base`` again."""
        self.attempts = 0
