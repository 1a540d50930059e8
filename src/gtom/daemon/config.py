"""The daemon's settings read: a TOML file, ``GTOM_*`` environment variables and flags, validated.

Every setting lives in a section of the file (``[source]``, ``[sink]``, ``[delivery]``,
``[checkpoint]``, ``[cluster]``, ``[metrics]``, ``[log]``; the models are in
`gtom.daemon.settings`) and is also the flag ``--<section>-<key>`` and the
environment variable ``GTOM_<SECTION>_<KEY>`` (dashes for underscores in flags). A flag beats
the environment, which beats the file, which beats the default. Lists are repeated flags or
comma-separated environment values; ``sink.headers`` entries are ``NAME=VALUE``.

Everything is validated before anything connects, MongoDB connection strings with pymongo's own
parser. Each mistake is a `ConfigError` whose message names the key, the bad value (cut to a
sane length), where it came from, and what is allowed; its ``exit_code`` tells the kinds apart
(`gtom.daemon.exits`). The values of `SECRET_KEYS` are never echoed: the message says what is
wrong with them instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gtom._redact import shown, uri_error
from gtom.daemon import exits
from gtom.daemon.errors import ConfigError
from gtom.daemon.settings import (
    ALIASES,
    SECRET_KEYS,
    SECTIONS,
    SINK_TYPES,
    Config,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "ALIASES",
    "SECRET_KEYS",
    "SECTIONS",
    "SINK_TYPES",
    "Config",
    "ConfigError",
    "load",
    "secrets_of",
    "setting_kind",
    "uri_problem",
]


def setting_kind(section: str, key: str) -> str:
    """``"list"``, ``"dict"``, ``"bool"`` or ``"scalar"``: how strings become the value."""
    annotation = str(SECTIONS[section].model_fields[key].annotation)
    if annotation.startswith("list"):
        return "list"
    if annotation.startswith("dict"):
        return "dict"
    return "bool" if annotation == "<class 'bool'>" else "scalar"


def _split_pairs(values: Sequence[str], what: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, eq, text = value.partition("=")
        if not eq or not name.strip():
            raise ConfigError(  # the entry is not shown: a header may hold a secret
                f"sink.headers entries are NAME=VALUE (from {what}): an entry has "
                f"{'no name' if eq else 'no ='} (its value is not shown: it may hold a secret)",
                exits.BAD_VALUE,
            )
        pairs[name.strip()] = text
    return pairs


def _from_strings(section: str, key: str, values: Sequence[str], what: str) -> Any:
    kind = setting_kind(section, key)
    if kind == "list":
        return [item.strip() for value in values for item in value.split(",") if item.strip()]
    if kind == "dict":
        return _split_pairs(values, what)
    return values[-1]


def _read_file(path: str) -> dict[str, Any]:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        message = f"cannot read the config file {shown(path)}: {e.strerror or e}"
        raise ConfigError(message, exits.USAGE) from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{shown(path)} is not valid TOML: it is not UTF-8 text (byte {e.start})",
            exits.MALFORMED_CONFIG,
        ) from e
    try:
        document: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        message = f"{shown(path)} is not valid TOML: {shown(str(e), 200)[1:-1]}"
        raise ConfigError(message, exits.MALFORMED_CONFIG) from e
    except RecursionError as e:
        raise ConfigError(
            f"{shown(path)} is not valid TOML for gtom: arrays or tables nested too deep",
            exits.MALFORMED_CONFIG,
        ) from e
    return document


def load(
    path: str | None,
    flags: Mapping[tuple[str, str], Sequence[str]] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """The settings from the file at ``path`` (if any), the environment and ``flags``.

    ``flags`` maps ``(section, key)`` to the strings given on the command line.
    """
    document = _read_file(path) if path else {}
    origin: dict[tuple[str, str], str] = {}
    where = path or "the config"
    merged: dict[str, dict[str, Any]] = {}
    for section, values in document.items():
        if section not in SECTIONS:
            known = ", ".join(f"[{s}]" for s in SECTIONS)
            raise ConfigError(
                f"unknown section {shown(section)} in {where} (known: {known})",
                exits.UNKNOWN_KEY,
            )
        if not isinstance(values, dict):
            raise ConfigError(
                f"{section} in {where} must be a [{section}] table, not a {type(values).__name__}",
                exits.MALFORMED_CONFIG,
            )
        merged[section] = dict(values)
        for key in values:
            origin[(section, key)] = where
    environ = os.environ if environ is None else environ
    for section, model in SECTIONS.items():
        for key in model.model_fields:
            name = f"GTOM_{section}_{key}".upper()
            if name in environ:
                value = _from_strings(section, key, [environ[name]], f"${name}")
                merged.setdefault(section, {})[key] = value
                origin[(section, key)] = f"${name}"
    if "GTOM_URI" in environ and ("source", "uri") not in origin:
        merged.setdefault("source", {})["uri"] = environ["GTOM_URI"]
        origin[("source", "uri")] = "$GTOM_URI"
    for (section, key), values in (flags or {}).items():
        flag = f"--{section}-{key}".replace("_", "-")
        merged.setdefault(section, {})[key] = _from_strings(section, key, values, flag)
        origin[(section, key)] = flag
    return _validate(merged, origin, where)


def _validate(
    merged: dict[str, dict[str, Any]], origin: dict[tuple[str, str], str], where: str
) -> Config:
    sink_type = merged.get("sink", {}).get("type", "stdout")
    if sink_type not in SINK_TYPES:
        came = origin.get(("sink", "type"), where)
        raise ConfigError(
            f"unknown sink {shown(sink_type)} (sink.type, from {came}): choose one of "
            f"{', '.join(SINK_TYPES)}",
            exits.UNKNOWN_SINK,
        )
    try:
        config = Config.model_validate(merged)
    except ValidationError as e:
        raise _explain(e, merged, origin, where) from None
    except RecursionError as e:  # a value nested too deep to check
        raise ConfigError(f"a value in {where} is nested too deep", exits.BAD_VALUE) from e
    _check_uris(config, origin, where)
    if config.cluster.name is not None and config.checkpoint.store != "mongodb":
        came = origin.get(("cluster", "name"), where)
        raise ConfigError(
            f'cluster.name (from {came}) needs checkpoint.store = "mongodb": the processes of a '
            f"cluster share their checkpoint and lease through MongoDB",
            exits.CLUSTER_NEEDS_MONGODB,
        )
    return config


def _check_uris(config: Config, origin: Mapping[tuple[str, str], str], where: str) -> None:
    """Parse every MongoDB connection string with pymongo's own parser (without connecting)."""
    for section, key in (("source", "uri"), ("source", "shards_from"), ("checkpoint", "uri")):
        uri = getattr(getattr(config, section), key)
        if not uri:  # not set ("" in a file means the same)
            continue
        problem = uri_problem(uri)
        if problem is not None:
            came = origin.get((section, key), where)
            raise ConfigError(
                f"invalid MongoDB URI in {section}.{key} (from {came}): {problem}", exits.BAD_URI
            )


def uri_problem(uri: str) -> str | None:
    """What is wrong with a MongoDB connection string (None: pymongo can use it).

    The message never holds the password: where the connection string has one (an ``@``),
    pymongo's own words, which may quote part of it, are replaced by a hint.
    """
    from pymongo.errors import ConfigurationError as PyMongoConfigurationError
    from pymongo.errors import InvalidURI

    try:
        _parse_uri(uri)
    except (InvalidURI, PyMongoConfigurationError, ValueError, TypeError) as e:
        return uri_error(uri, e)
    return None


def _parse_uri(uri: str) -> None:
    """Parse ``uri`` as pymongo does, without looking up ``mongodb+srv`` hosts in DNS."""
    try:
        from pymongo.uri_parser_shared import _validate_uri
    except ImportError:  # pragma: no cover - another pymongo version: its public parser
        from pymongo.uri_parser import parse_uri

        parse_uri(uri)
        return
    _validate_uri(uri)


def _explain(
    error: ValidationError,
    merged: dict[str, dict[str, Any]],
    origin: dict[tuple[str, str], str],
    where: str,
) -> ConfigError:
    """One line for the first problem pydantic found."""
    problem = error.errors(include_url=False)[0]
    loc = [str(part) for part in problem["loc"]]
    section = loc[0] if loc else ""
    key = loc[1] if len(loc) > 1 else ""
    if problem["type"] == "extra_forbidden":
        model = SECTIONS.get(section)
        if model is None or not key:
            return ConfigError(
                f"unknown setting {shown('.'.join(loc))} in {where}", exits.UNKNOWN_KEY
            )
        known = ", ".join(model.model_fields)
        came = origin.get((section, key), where)
        return ConfigError(
            f"unknown key {section}.{shown(key)[1:-1]} (from {came}); [{section}] has: {known}",
            exits.UNKNOWN_KEY,
        )
    message = shown(str(problem["msg"]).removeprefix("Value error, "), 300)[1:-1]
    if not key:  # a check across keys of a section
        return ConfigError(message, exits.BAD_VALUE)
    field = SECTIONS[section].model_fields.get(key)
    allowed = f" (allowed: {field.description})" if field is not None and field.description else ""
    came = origin.get((section, key), where)
    if (section, key) in SECRET_KEYS:
        kind = type(merged.get(section, {}).get(key)).__name__
        return ConfigError(  # the value is not shown: it may hold a secret
            f"bad value for {section}.{key} (a {kind}, from {came}; not shown, as it may "
            f"hold a secret): {message}{allowed}",
            exits.BAD_VALUE,
        )
    value = merged.get(section, {}).get(key, problem.get("input"))
    return ConfigError(
        f"bad value for {section}.{key}: {shown(value)} (from {came}): {message}{allowed}",
        exits.BAD_VALUE,
    )


def secrets_of(config: Config) -> list[str]:
    """The secret values of ``config``: header values, the HMAC key, URL passwords.

    Anything the daemon prints is scrubbed of them.
    """
    from urllib.parse import unquote, urlsplit

    found = [value for value in config.sink.headers.values() if value]
    if config.sink.secret:
        found.append(config.sink.secret)
    uris = (config.source.uri, config.source.shards_from, config.checkpoint.uri, config.sink.url)
    for uri in uris:
        if uri and "@" in uri:
            userinfo = uri.partition("://")[2].rpartition("@")[0]
            found += [userinfo, unquote(userinfo)]
            with contextlib.suppress(ValueError):
                password = urlsplit(uri).password
                if password:
                    found += [password, unquote(password)]
    return found
