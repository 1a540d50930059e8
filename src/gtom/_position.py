"""Where a tailer is in the oplog, as a value, and how it re-reads without repeating itself.

Oplog timestamps are not unique everywhere: SecantusDB gives every entry of a transaction the same
``ts``. So a position is ``(ts, seen)``: the newest delivered timestamp and how many entries with
that timestamp were delivered. A re-read always starts *at* ``ts`` (``$gte``) and skips the
``seen`` entries it already delivered, so an entry sharing a timestamp is never lost and never
repeated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bson import Timestamp

from gtom._errors import ConfigurationError

__all__ = ["ALL", "OplogPosition", "ReRead", "check_timestamp", "format_ts", "next_timestamp"]

ALL = -1
"""``seen`` value meaning every entry at ``ts`` was delivered (strictly after ``ts``)."""


@dataclass(slots=True)
class OplogPosition:
    """The newest oplog timestamp delivered and how many entries at it were delivered."""

    ts: Timestamp
    seen: int = ALL

    def advance(self, ts: Timestamp) -> None:
        """Record that the entry at ``ts`` (the next one in oplog order) was delivered."""
        if ts == self.ts:
            if self.seen != ALL:
                self.seen += 1
        else:
            self.ts = ts
            self.seen = 1

    def re_read(self) -> ReRead:
        """A filter for one read that starts at ``ts`` and drops what was delivered."""
        return ReRead(self.ts, self.seen)

    def copy(self) -> OplogPosition:
        """An independent copy."""
        return OplogPosition(self.ts, self.seen)


class ReRead:
    """Admits the entries of one read (started at ``ts``, in oplog order) not yet delivered."""

    __slots__ = ("_skip", "_ts")

    def __init__(self, ts: Timestamp, seen: int) -> None:
        """Start a read after a delivery of ``seen`` entries at ``ts`` (`ALL` for all)."""
        self._ts: Timestamp | None = ts
        self._skip = seen

    def admit(self, ts: Timestamp) -> bool:
        """Whether the next entry of the read, at ``ts``, is new."""
        if self._ts is None:
            return True
        if ts < self._ts:
            return False
        if ts == self._ts and self._skip != 0:
            if self._skip > 0:
                self._skip -= 1
            return False
        self._ts = None  # past the delivered prefix: everything from here on is new
        return True


def next_timestamp(ts: Timestamp) -> Timestamp:
    """The smallest timestamp greater than ``ts``: nothing can lie between the two."""
    if ts.inc >= 0xFFFFFFFF:
        return Timestamp(ts.time + 1, 0)
    return Timestamp(ts.time, ts.inc + 1)


def format_ts(ts: Timestamp) -> str:
    """A timestamp for people: ``Timestamp(1700000000, 3) (2023-11-14T22:13:20Z)``."""
    when = ts.as_datetime().strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"Timestamp({ts.time}, {ts.inc}) ({when})"


def check_timestamp(value: Any, what: str) -> Timestamp:
    """``value`` if it is a `bson.Timestamp`, else a `ConfigurationError` naming ``what``."""
    if not isinstance(value, Timestamp):
        raise ConfigurationError(f"{what} must be a bson.Timestamp, got {value!r}")
    return value
