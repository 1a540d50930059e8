"""How the daemon's ``[source]`` settings become library inputs, and how a copy is shown."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bson import Timestamp

import gtom
from gtom._op import Op, Source
from gtom.daemon import exits
from gtom.daemon.config import ConfigError

__all__ = ["parse_after", "progress_line", "tail_filter"]


def parse_after(text: str) -> Timestamp | None:
    """``now`` (None), ``oldest`` (Timestamp(0, 0)) or ``SECONDS[.INCREMENT]``."""
    if text == "now":
        return None
    if text == "oldest":
        return Timestamp(0, 0)
    seconds, _, increment = text.partition(".")
    if not seconds.isdigit() or (increment and not increment.isdigit()):
        raise ConfigError(
            f"bad value for source.after: {text!r}: use now, oldest or SECONDS[.INCREMENT]",
            exits.BAD_VALUE,
        )
    return Timestamp(int(seconds), int(increment or 0))


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


def tail_filter(namespaces: Sequence[str]) -> Callable[[Op], bool] | None:
    """Keep the ops of ``namespaces`` (databases or collections); copies always pass."""
    if not namespaces:
        return None
    exact = {ns for ns in namespaces if "." in ns}
    databases = {ns for ns in namespaces if "." not in ns}

    def keep(op: Op) -> bool:
        return (
            op.source is Source.DIRECT_READ
            or op.namespace in exact
            or op.namespace.partition(".")[0] in databases
        )

    return keep
