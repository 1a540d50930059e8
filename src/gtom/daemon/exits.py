"""The exit codes of ``gtom run``: one per kind of mistake, so scripts can tell them apart.

Every failure prints one line (``gtom: error: ...``) and exits with one of these; none prints a
traceback. `code_for` maps an exception to its code.
"""

from __future__ import annotations

from gtom._errors import (
    AuthenticationFailedError,
    ConfigurationError,
    HistoryLostError,
    NotAuthorizedError,
    NotReplicaSetError,
    ServerUnavailableError,
)
from gtom.daemon.errors import ConfigError, UnknownNamespaceError
from gtom.daemon.sinks.base import SinkRejectedError, SinkUnavailableError

__all__ = ["TABLE", "code_for"]

OK = 0
ERROR = 1  # anything not listed below
USAGE = 2  # a bad flag, or no config file where one was named
MALFORMED_CONFIG = 3
UNKNOWN_KEY = 4
BAD_VALUE = 5
UNKNOWN_SINK = 6
BAD_URI = 10
UNREACHABLE = 11
NOT_REPLICA_SET = 12
AUTH_FAILED = 13
NOT_AUTHORIZED = 14
UNKNOWN_NAMESPACE = 15
SINK_UNREACHABLE = 16
HISTORY_LOST = 17
SINK_REJECTED = 18
CLUSTER_NEEDS_MONGODB = 19  # [cluster] with the file checkpoint store
FENCED = 20  # a cluster leader woke up after its lease could have been taken: it stops at once
INTERRUPTED = 130  # a second SIGINT/SIGTERM: exit at once

#: Code -> what it means (the README's table is written from this).
TABLE = {
    OK: "stopped cleanly (SIGTERM/SIGINT, or a copy-only run finished)",
    ERROR: "an unexpected error",
    USAGE: "a bad command line, or the config file cannot be read",
    MALFORMED_CONFIG: "the config file is not valid TOML",
    UNKNOWN_KEY: "an unknown section or key in the config",
    BAD_VALUE: "a setting has a value that is not allowed",
    UNKNOWN_SINK: "sink.type names no sink gtom has",
    BAD_URI: "a connection string gtom cannot parse",
    UNREACHABLE: "the MongoDB server cannot be reached",
    NOT_REPLICA_SET: "the server keeps no oplog (standalone or mongos without change streams)",
    AUTH_FAILED: "authentication failed",
    NOT_AUTHORIZED: "the user may not read what gtom needs (the oplog, a collection)",
    UNKNOWN_NAMESPACE: "a direct_read collection does not exist",
    SINK_UNREACHABLE: "the sink cannot be reached at start",
    HISTORY_LOST: "the checkpoint's position has fallen off the oplog (see on_history_lost)",
    SINK_REJECTED: "the sink refused events for good (e.g. HTTP 400)",
    CLUSTER_NEEDS_MONGODB: "cluster.name is set but the checkpoint is a file (clusters share it "
    "through MongoDB)",
    FENCED: "a cluster leader woke up (SIGCONT) after its lease could have been taken: it stopped "
    "at once, sending nothing more",
    INTERRUPTED: "a second signal: stopped at once, without the final checkpoint",
}


def code_for(error: BaseException) -> int:
    """The exit code for an error that ended `gtom run`."""
    if isinstance(error, ConfigError):
        return error.exit_code
    kinds: tuple[tuple[type[BaseException], int], ...] = (
        (AuthenticationFailedError, AUTH_FAILED),
        (NotAuthorizedError, NOT_AUTHORIZED),
        (NotReplicaSetError, NOT_REPLICA_SET),
        (ServerUnavailableError, UNREACHABLE),
        (HistoryLostError, HISTORY_LOST),
        (UnknownNamespaceError, UNKNOWN_NAMESPACE),
        (SinkUnavailableError, SINK_UNREACHABLE),
        (SinkRejectedError, SINK_REJECTED),
        (ConfigurationError, BAD_VALUE),
    )
    for kind, code in kinds:
        if isinstance(error, kind):
            return code
    return ERROR
