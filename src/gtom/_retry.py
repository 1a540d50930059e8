"""Which server and network errors are worth retrying, and what to tell the user otherwise.

Pure classification of pymongo's exceptions; the engine retries the transient ones with
`gtom._backoff.Backoff` and stops with a translated `GtomError` on the rest.
"""

from __future__ import annotations

import re

from pymongo.errors import (
    AutoReconnect,
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from gtom._errors import (
    AuthenticationFailedError,
    GtomError,
    NotAuthorizedError,
    ServerUnavailableError,
)

__all__ = ["CAPPED_POSITION_LOST", "describe", "is_transient", "translate"]

CAPPED_POSITION_LOST = 136
#: Errors a healthy server returns while it (or the network, or the cluster) changes state.
_TRANSIENT_CODES = frozenset(
    {
        6,  # HostUnreachable
        7,  # HostNotFound
        43,  # CursorNotFound: the server forgot our cursor (restart, idle timeout): re-open it
        50,  # MaxTimeMSExpired
        63,  # StaleShardVersion
        89,  # NetworkTimeout
        91,  # ShutdownInProgress
        133,  # FailedToSatisfyReadPreference
        134,  # ReadConcernMajorityNotAvailableYet
        CAPPED_POSITION_LOST,  # re-opening checks whether history was really lost
        150,  # StaleEpoch
        175,  # QueryPlanKilled
        189,  # PrimarySteppedDown
        234,  # RetryChangeStream
        237,  # CursorKilled
        262,  # ExceededTimeLimit
        9001,  # SocketException
        10058,  # LegacyNotPrimary
        10107,  # NotWritablePrimary
        11600,  # InterruptedAtShutdown
        11601,  # Interrupted
        11602,  # InterruptedDueToReplStateChange
        13388,  # StaleConfig
        13435,  # NotPrimaryNoSecondaryOk
        13436,  # NotPrimaryOrSecondary
        462,  # IngressRequestRateLimitExceeded (8.x overload protection)
    }
)
_TRANSIENT_LABELS = (
    "RetryableWriteError",
    "ResumableChangeStreamError",
    "RetryableError",
    "SystemOverloadedError",
)
_AUTHENTICATION_FAILED = 18
_UNAUTHORIZED_CODES = frozenset({13, 8000})  # Unauthorized, Atlas's "user is not allowed"


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the operation later may succeed (network, restarts, elections, ...)."""
    if isinstance(exc, ConnectionFailure):
        return True  # AutoReconnect, NotPrimaryError, server selection and pool timeouts
    if isinstance(exc, OperationFailure):
        if exc.code in _TRANSIENT_CODES:
            return True
        return any(exc.has_error_label(label) for label in _TRANSIENT_LABELS)
    return False


def describe(exc: BaseException) -> str:
    """One line saying what went wrong, for logs and error messages."""
    details = getattr(exc, "details", None)
    if isinstance(details, dict) and "errmsg" in details:
        code, name = details.get("code"), details.get("codeName")
        return f"{details['errmsg']} (error {code}{' ' + name if name else ''})"
    if isinstance(exc, OperationFailure):
        return f"{str(exc).split(', full error:')[0]} (error {exc.code})"
    text = str(exc)
    waited = re.search(r"Timeout: ([0-9.]+)s", text)
    # pymongo appends its timeouts and the whole topology: keep the first part.
    text = re.split(r", Timeout:| \(configured timeouts", text)[0]
    if isinstance(exc, ServerSelectionTimeoutError):
        return f"{text} (gave up after {waited.group(1)}s)" if waited else text
    return f"{type(exc).__name__}: {text}"


def translate(exc: PyMongoError, what: str) -> GtomError:
    """The `GtomError` to raise for a non-transient pymongo error while doing ``what``."""
    if isinstance(exc, ServerSelectionTimeoutError):
        return ServerUnavailableError(f"cannot reach MongoDB while {what}: {describe(exc)}")
    if isinstance(exc, AutoReconnect):
        return ServerUnavailableError(
            f"lost the connection to MongoDB while {what}: {describe(exc)}"
        )
    if isinstance(exc, OperationFailure) and exc.code == _AUTHENTICATION_FAILED:
        return AuthenticationFailedError(
            f"authentication failed while {what}: check the user name, password and authSource "
            f"of the connection string ({describe(exc)})"
        )
    if isinstance(exc, OperationFailure) and exc.code in _UNAUTHORIZED_CODES:
        return NotAuthorizedError(
            f"the user is not authorized for {what}: {describe(exc)}; grant it the read role on "
            f"that database (for the oplog: the 'local' database)"
        )
    return GtomError(f"MongoDB refused {what}: {describe(exc)}")
