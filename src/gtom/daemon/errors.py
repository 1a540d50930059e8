"""The daemon's own errors, beside the library's (`gtom.GtomError`) and the sinks' (`SinkError`).

`gtom.daemon.exits` maps each to its exit code.
"""

from __future__ import annotations

from gtom._errors import ConfigurationError, GtomError

__all__ = ["ConfigError", "UnknownNamespaceError"]


class ConfigError(ConfigurationError):
    """A setting gtom cannot use; ``exit_code`` says which kind of mistake it is."""

    def __init__(self, message: str, exit_code: int) -> None:
        """Create the error with the exit code `gtom run` ends with."""
        super().__init__(message)
        self.exit_code = exit_code


class UnknownNamespaceError(GtomError):
    """A collection named in the config does not exist."""
