"""Every exception gtom raises, in one place.

The tree::

    GtomError                    base of everything gtom raises
    ├── ConfigurationError       an option has a bad value (also a ValueError)
    ├── CallbackError            a function passed in Options raised (it is the __cause__)
    ├── DecodeError              an oplog entry or change event gtom cannot understand
    ├── IncompleteChainError     OplogDecoder: a commit needs an earlier entry it has not seen
    ├── ServerError              the server cannot be used as a source
    │   ├── ServerUnavailableError   no server answered within the selection timeout
    │   ├── NotReplicaSetError       the server keeps no oplog (standalone or mongos)
    │   └── NotAuthorizedError       the user may not read what gtom needs
    │       └── AuthenticationFailedError   the server refused the credentials
    ├── HistoryLostError         the position to resume from is no longer in the oplog
    └── StoppedError             the context was stopped (after its queue drained)

Errors from pymongo are translated at the boundary with ``raise ... from`` so the original is
always available as ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bson import Timestamp

__all__ = [
    "AuthenticationFailedError",
    "CallbackError",
    "ConfigurationError",
    "DecodeError",
    "GtomError",
    "HistoryLostError",
    "IncompleteChainError",
    "NotAuthorizedError",
    "NotReplicaSetError",
    "ServerError",
    "ServerUnavailableError",
    "StoppedError",
    "call_user",
]


class GtomError(Exception):
    """Base class of every error gtom raises."""


class ConfigurationError(GtomError, ValueError):
    """An option or argument has a value gtom cannot use; the message names it."""


class CallbackError(GtomError):
    """A function passed in `Options` (a filter, ``unmarshal``, ``after``, ...) raised.

    ``callback`` names the option; the exception it raised is ``__cause__``.
    """

    def __init__(self, callback: str, error: BaseException) -> None:
        """Wrap ``error``, raised by the function given as option ``callback``."""
        super().__init__(f"the {callback} function raised {type(error).__name__}: {error}")
        self.callback = callback


class DecodeError(GtomError):
    """An oplog entry or change event does not have a shape gtom understands.

    ``document`` is the offending entry, so it can be logged or reported.
    """

    def __init__(self, message: str, document: Any = None) -> None:
        """Create the error with a message and the document that could not be decoded."""
        super().__init__(message)
        self.document = document


class IncompleteChainError(GtomError):
    """A transaction's commit needs an earlier oplog entry, at ``ts``, the decoder has not seen.

    Fetch it, give it to `OplogDecoder.remember`, and decode the commit again.
    """

    def __init__(self, ts: Timestamp) -> None:
        """Name the missing entry by its timestamp."""
        super().__init__(f"the transaction chain entry at {ts} is needed")
        self.ts = ts


class ServerError(GtomError):
    """The server cannot be used as a source of changes."""


class ServerUnavailableError(ServerError):
    """No server could be reached (bad host, server down, or wrong replica set name)."""


class NotReplicaSetError(ServerError):
    """The server keeps no oplog: it is a standalone server or a mongos router."""


class NotAuthorizedError(ServerError):
    """The connected user is not allowed to read what gtom needs (e.g. ``local.oplog.rs``)."""


class AuthenticationFailedError(NotAuthorizedError):
    """The server refused the credentials (user name, password, mechanism or ``authSource``)."""


class HistoryLostError(GtomError):
    """The position to resume from has fallen off the oplog: changes after it may be lost.

    gtom never skips such a gap silently. ``position`` is the oplog timestamp it needed to resume
    from, ``oldest`` the oldest position the server still has (or None when unknown); for a
    change stream, ``stream_id`` is its ``change_stream_ns`` entry and ``resume_token`` the token
    it could not resume from.
    """

    def __init__(
        self,
        message: str,
        *,
        position: Timestamp | None = None,
        oldest: Timestamp | None = None,
        stream_id: str | None = None,
        resume_token: Any = None,
    ) -> None:
        """Create the error; see the class docstring for the attributes."""
        super().__init__(message)
        self.position = position
        self.oldest = oldest
        self.stream_id = stream_id
        self.resume_token = resume_token


class StoppedError(GtomError):
    """The context was stopped: its queue is drained and no more ops will come."""


def call_user(option: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Call a function the user passed as ``option``; its exception becomes a `CallbackError`."""
    try:
        return fn(*args)
    except Exception as e:
        raise CallbackError(option, e) from e
