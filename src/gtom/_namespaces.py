"""Settings the command line and the daemon share (pure): start positions and tail filters."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bson import Timestamp

from gtom._op import Op, Source

__all__ = ["parse_position", "tail_filter"]


def parse_position(text: str) -> Timestamp | None:
    """``now`` (None), ``oldest`` (``Timestamp(0, 0)``) or ``SECONDS[.INCREMENT]``.

    Raises ValueError, saying what is allowed, for anything else.
    """
    if text == "now":
        return None
    if text == "oldest":
        return Timestamp(0, 0)
    seconds, _, increment = text.partition(".")
    if not seconds.isdigit() or (increment and not increment.isdigit()):
        raise ValueError(f"must be 'now', 'oldest' or SECONDS[.INCREMENT], got {text!r}")
    return Timestamp(int(seconds), int(increment or 0))


def tail_filter(namespaces: Sequence[str]) -> Callable[[Op], bool] | None:
    """A filter keeping the tailed ops of ``namespaces`` (databases or ``db.collection``s).

    Copied documents always pass (copies are what was asked for already); None keeps
    everything. Raises ValueError for an entry that is neither a database nor a collection.
    """
    if not namespaces:
        return None
    for ns in namespaces:
        if not ns or ns.startswith(".") or ns.endswith("."):
            raise ValueError(f"namespaces are 'db' or 'db.collection', got {ns!r}")
    exact = {ns for ns in namespaces if "." in ns}
    databases = {ns for ns in namespaces if "." not in ns}

    def keep(op: Op) -> bool:
        return (
            op.source is Source.DIRECT_READ
            or op.namespace in exact
            or op.namespace.partition(".")[0] in databases
        )

    return keep
