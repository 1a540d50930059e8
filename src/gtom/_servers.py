"""What gtom knows about particular MongoDB-compatible servers, decided once from ``buildInfo``.

mongod needs none of these workarounds; they cost extra queries, so they are switched on only for
the servers that need them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MONGOD", "ServerTraits"]


@dataclass(frozen=True, slots=True)
class ServerTraits:
    """Oplog behaviours of a server that the tailer must work around."""

    open_race: bool = False
    """A tailable cursor's later batches go on from a point taken after its first batch was read:
    it can miss the entries committed in between, and show again entries of its first batch. So
    every open is followed by a plain read from the position, and the first batch is not
    delivered (SecantusDB's Python server)."""
    silent_truncation: bool = False
    """The oplog can be trimmed under an open cursor without an error (mongod fails the cursor
    with CappedPositionLost), so a tailer that waited long on its consumer checks the oldest entry
    before reading on (SecantusDB)."""
    natural_sort: bool = True
    """A ``$natural: -1`` sort reads the oplog newest first. SecantusDB's Rust server returns
    oldest first whatever the direction, so there the newest entry is found by sorting on ``ts``
    (which costs nothing extra there: it scans the oplog for every query anyway)."""
    stale_tail: bool = False
    """A tailable cursor sees only the entries that existed when it opened, never later ones
    (SecantusDB's Rust server): the tailer polls with plain reads instead."""
    projection_scans: bool = False
    """A projection costs as much for every entry a query scans as for those it returns
    (SecantusDB's Rust server: a read from a position took 1.7 s instead of 0.7 s over 250,000
    entries), so a poll that expects few entries asks for whole entries there."""

    @classmethod
    def from_build_info(cls, build_info: Mapping[str, Any]) -> ServerTraits:
        """The traits of the server that answered ``buildInfo`` with ``build_info``."""
        if "secantusVersion" in build_info:
            environment = build_info.get("buildEnvironment")
            rust = isinstance(environment, Mapping) and environment.get("cc") == "rustc"
            return cls(
                open_race=True,
                silent_truncation=True,
                natural_sort=False,
                stale_tail=rust,
                projection_scans=rust,
            )
        return MONGOD


MONGOD = ServerTraits()
