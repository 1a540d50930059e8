"""Positions in an ordered source, as one value type, with their arithmetic (pure).

Oplog timestamps are not unique everywhere: SecantusDB gives every entry of a transaction the
same ``ts``, and the writes unrolled from one ``applyOps`` share its ``ts``. So a position is a
`Position`, ``(ts, seen)``: a timestamp and how many entries (or ops) at it were passed, or `ALL`
of them. The engine's tailers, the daemon's checkpoints, its event numbering and what a restart
skips all use it:

* a read from a position starts *at* its ``ts`` (``$gte``) and its `ReRead` drops the ``seen``
  entries passed already, so an entry sharing a timestamp is never lost and never repeated;
* `Position.passed` is where a source is after the next entries, `Position.tail_after` the
  timestamp to tail strictly after to see every entry not passed yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bson import Timestamp

from gtom._errors import ConfigurationError

__all__ = [
    "ALL",
    "Position",
    "ReRead",
    "check_timestamp",
    "format_ts",
    "next_timestamp",
    "previous_timestamp",
]

ALL = -1
"""``seen`` meaning every entry at ``ts`` was passed: the position is strictly after ``ts``."""
_ZERO = Timestamp(0, 0)


@dataclass(frozen=True, slots=True)
class Position:
    """A place in an ordered source: ``seen`` entries at ``ts`` were passed (`ALL`: every one)."""

    ts: Timestamp
    seen: int = ALL

    def passed(self, ts: Timestamp, count: int = 1) -> Position:
        """The position after ``count`` more entries, at ``ts``, the next ones in order."""
        if ts == self.ts:
            return self if self.seen == ALL else Position(ts, self.seen + count)
        return Position(ts, count)

    def re_read(self) -> ReRead:
        """A filter for a read that starts at ``ts`` and drops what was passed."""
        return ReRead(self.ts, self.seen)

    def tail_after(self) -> Timestamp:
        """The timestamp to tail strictly after to see every entry not passed yet.

        With every entry at ``ts`` passed, ``ts`` itself; otherwise the one just before, so
        ``ts`` is read again and its `ReRead` (or the daemon's skip) drops what was passed.
        """
        if self.seen == ALL or self.ts == _ZERO:
            return self.ts
        return previous_timestamp(self.ts)

    def to_document(self) -> dict[str, Any]:
        """As a BSON-able document (``{"ts": ..., "count": seen}``)."""
        return {"ts": self.ts, "count": self.seen}

    @classmethod
    def from_document(cls, document: Any) -> Position:
        """Read back `to_document`'s output (ValueError if it is not one)."""
        if not isinstance(document, Mapping) or not isinstance(document.get("ts"), Timestamp):
            raise ValueError(f"not a position: {document!r}")
        return cls(document["ts"], int(document.get("count", 0)))


class ReRead:
    """Admits the entries of one read (started at ``ts``, in order) not passed yet."""

    __slots__ = ("_skip", "_ts")

    def __init__(self, ts: Timestamp, seen: int) -> None:
        """Start a read after ``seen`` entries at ``ts`` were passed (`ALL` for all)."""
        self._ts: Timestamp | None = ts
        self._skip = seen

    @property
    def passed(self) -> bool:
        """Whether the read is past what was passed before: every entry from here on is new."""
        return self._ts is None

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
        self._ts = None  # past the passed prefix: everything from here on is new
        return True


def next_timestamp(ts: Timestamp) -> Timestamp:
    """The smallest timestamp greater than ``ts``: nothing can lie between the two."""
    if ts.inc >= 0xFFFFFFFF:
        return Timestamp(ts.time + 1, 0)
    return Timestamp(ts.time, ts.inc + 1)


def previous_timestamp(ts: Timestamp) -> Timestamp:
    """The greatest timestamp smaller than ``ts`` (nothing lies between them)."""
    if ts.inc > 0:
        return Timestamp(ts.time, ts.inc - 1)
    return Timestamp(max(0, ts.time - 1), 0xFFFFFFFF)


def format_ts(ts: Timestamp) -> str:
    """A timestamp for people: ``Timestamp(1700000000, 3) (2023-11-14T22:13:20Z)``."""
    when = ts.as_datetime().strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"Timestamp({ts.time}, {ts.inc}) ({when})"


def check_timestamp(value: Any, what: str) -> Timestamp:
    """``value`` if it is a `bson.Timestamp`, else a `ConfigurationError` naming ``what``."""
    if not isinstance(value, Timestamp):
        raise ConfigurationError(f"{what} must be a bson.Timestamp, got {value!r}")
    return value
