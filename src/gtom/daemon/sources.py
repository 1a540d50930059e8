"""How the daemon's ``[source]`` settings become library inputs, and how a copy is shown."""

from __future__ import annotations

from bson import Timestamp

import gtom
from gtom._namespaces import parse_position, tail_filter
from gtom.daemon import exits
from gtom.daemon.config import ConfigError

__all__ = ["parse_after", "progress_line", "tail_filter"]  # tail_filter: gtom._namespaces


def parse_after(text: str) -> Timestamp | None:
    """``source.after``: ``now`` (None), ``oldest`` (Timestamp(0, 0)) or ``SECONDS[.INCREMENT]``."""
    try:
        return parse_position(text)
    except ValueError as e:
        raise ConfigError(f"bad value for source.after: {e}", exits.BAD_VALUE) from None


def progress_line(progress: dict[str, gtom.DirectReadProgress]) -> str:
    parts = []
    for ns, p in progress.items():
        if p.estimated_total:
            share = min(1.0, p.read / max(1, p.estimated_total))
            bar = "#" * int(share * 20)
            parts.append(f"{ns} [{bar:<20}] {p.read:,}/~{p.estimated_total:,}")
        else:
            parts.append(f"{ns} {p.read:,}")
    return "copying " + ", ".join(parts)
