"""How a namespace becomes a NATS subject, a Redis stream key or a Kafka topic (pure).

MongoDB allows almost any character in a collection name — spaces, tabs, line breaks, ``*``,
``>``, ``%``, dots anywhere (leading, trailing, doubled) — and a NATS subject or a Kafka topic
cannot hold many of them. So each broker sink puts the parts of a namespace into its
``sink.target`` template (``{db}``, ``{coll}``, and ``{namespace}`` = ``{db}.{coll}``) escaped for
that broker. Each escaping keeps ordinary names as they are, and is injective: two namespaces
never get the same subject, key or topic (the escaped text can be decoded back).

* **NATS** (`nats_part`): percent-encoding, ``%XX`` per UTF-8 byte (uppercase hex), of ``%``
  itself, whitespace and control characters, ``*`` and ``>``, and of every ``.`` that would
  leave an empty token: the first character, the last, or one right after another ``.``. Other
  dots stay: they split the subject into tokens, so ``gtom.shop.>`` still subscribes to a
  database. ``a b`` → ``a%20b``; ``a..b`` → ``a.%2Eb``; ``x.`` → ``x%2E``.
* **Kafka** (`kafka_part`; topics allow ``A-Z a-z 0-9 . _ -``, at most 249 characters): ``-`` is
  the escape character. A ``-`` becomes ``--``, and every other character Kafka does not allow
  becomes ``-XX`` per UTF-8 byte (uppercase hex). ``shop.$cmd`` → ``shop.-24cmd``; ``a b`` →
  ``a-20b``; ``order-items`` → ``order--items``. Kafka itself refuses two topics that differ only
  in ``.`` versus ``_`` (say, the collections ``a.b`` and ``a_b`` of one database), and a name
  longer than 249 characters: such a namespace stops the daemon with a clear error (exit 18).
* **Redis** stream keys are binary-safe: the namespace goes in as it is.
"""

from __future__ import annotations

import re

__all__ = ["KAFKA_TOPIC", "kafka_part", "nats_part", "nats_subject_problem"]

#: Characters NATS does not take in a subject token: whitespace (ASCII and Unicode), control
#: characters, the wildcards; and % itself, the escape character.
_NATS_UNSAFE = re.compile(
    r"[%*>\x00-\x20\x7f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
)
_NATS_EMPTY_TOKEN = re.compile(r"^\.|\.$|(?<=\.)\.")
_KAFKA_UNSAFE = re.compile(r"[^A-Za-z0-9._]")
#: What Kafka accepts as a topic name.
KAFKA_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


def _percent(match: re.Match[str]) -> str:
    return "".join(f"%{byte:02X}" for byte in match.group().encode())


def nats_part(text: str) -> str:
    """``text`` escaped for a NATS subject (see the module)."""
    escaped = _NATS_UNSAFE.sub(_percent, text)
    return _NATS_EMPTY_TOKEN.sub("%2E", escaped)


def _dash(match: re.Match[str]) -> str:
    char = match.group()
    if char == "-":
        return "--"
    return "".join(f"-{byte:02X}" for byte in char.encode())


def kafka_part(text: str) -> str:
    """``text`` escaped for a Kafka topic (see the module)."""
    return _KAFKA_UNSAFE.sub(_dash, text)


def nats_subject_problem(subject: str) -> str | None:
    """Why NATS would refuse to publish to ``subject`` (None: it would not)."""
    if not subject:
        return "it is empty"
    if _NATS_UNSAFE.search(subject.replace("%", "")):
        return "it holds whitespace, a control character, '*' or '>'"
    if _NATS_EMPTY_TOKEN.search(subject):
        return "it has an empty token (a leading, trailing or doubled '.')"
    return None
