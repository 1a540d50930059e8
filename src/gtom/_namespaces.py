"""Namespaces (pure): which are the server's own; start positions and tail filters.

The command line and the daemon share the start positions and tail filters.

**Internal namespaces** hold the server's bookkeeping, not user data. Change streams never show
them, so by default gtom skips them in the oplog too, before decoding anything
(``Options(include_internal=True)`` delivers them). The exact rule, `is_internal`:

* every namespace of the ``local`` database (the oplog itself, ``local.system.replset``, ...);
* every namespace of the ``config`` database (``config.system.sessions``,
  ``config.transactions``, ``config.cache.*``, ``config.image_collection``,
  ``config.system.preimages``, a config server's ``config.chunks``, ...);
* every ``system.*`` collection of any database: ``admin.system.*`` (users, roles, version,
  keys), ``<db>.system.buckets.*`` (time-series buckets), ``<db>.system.views``,
  ``<db>.system.profile``, ``<db>.system.js``, ``<db>.system.resharding.*``.

DDL on user collections is not internal, including commands logged on ``<db>.$cmd`` (create,
drop, renameCollection, createIndexes, dropDatabase, ...): a command's namespace is the
collection it acts on. Index builds logged by servers before 3.4 as inserts into
``<db>.system.indexes`` are decoded as the ``createIndexes`` command they are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bson import Timestamp

from gtom._op import Op, Source

__all__ = ["INTERNAL_DATABASES", "is_internal", "parse_position", "tail_filter"]

INTERNAL_DATABASES = frozenset({"local", "config"})
"""Databases whose every namespace is internal."""
_SYSTEM = "system."
#: Answers so far: a tailer sees few distinct namespaces, and this runs once per oplog entry.
_answers: dict[str, bool] = {}
_ANSWERS_KEPT = 4096


def is_internal(namespace: str) -> bool:
    """Whether ``namespace`` (``"db.coll"``) is the server's own, not user data (see above)."""
    known = _answers.get(namespace)
    if known is None:
        database, _, collection = namespace.partition(".")
        known = database in INTERNAL_DATABASES or collection.startswith(_SYSTEM)
        if len(_answers) >= _ANSWERS_KEPT:
            _answers.clear()
        _answers[namespace] = known
    return known


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


#: Namespaces whose answer a tail filter remembers (then it starts over: memory stays bounded).
_ANSWERS_KEPT = 10_000


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

    answers: dict[str, bool] = {}  # per namespace: a handful, asked once per op

    def keep(op: Op) -> bool:
        if op.source is Source.DIRECT_READ:
            return True
        namespace = op.namespace
        answer = answers.get(namespace)
        if answer is None:
            if len(answers) >= _ANSWERS_KEPT:
                answers.clear()
            answer = namespace in exact or namespace.partition(".")[0] in databases
            answers[namespace] = answer
        return answer

    return keep
