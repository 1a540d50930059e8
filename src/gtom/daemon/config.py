"""The daemon's settings: a TOML file, ``GTOM_*`` environment variables and flags, validated.

Every setting lives in a section of the file (``[source]``, ``[sink]``, ``[delivery]``,
``[checkpoint]``, ``[metrics]``, ``[log]``) and is also the flag ``--<section>-<key>`` and the
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
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gtom._redact import shown, uri_error
from gtom.daemon import exits
from gtom.daemon.errors import ConfigError
from gtom.daemon.sinks.names import KAFKA_TOPIC, kafka_part, nats_part, nats_subject_problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["SECRET_KEYS", "SECTIONS", "SINK_TYPES", "Config", "ConfigError", "load", "secrets_of"]

#: Sinks `gtom run` knows; the broker sinks come with their extras.
SINK_TYPES = ("stdout", "file", "webhook", "nats", "redis", "kafka")
#: Where each broker sink sends a namespace's events by default ({namespace}, {db}, {coll}).
DEFAULT_TARGETS = {
    "nats": "gtom.{namespace}",
    "redis": "gtom:{namespace}",
    "kafka": "gtom.{namespace}",
}


#: How each broker escapes the parts of a namespace it cannot take as they are.
_ESCAPES = {"nats": nats_part, "kafka": kafka_part}
#: Settings whose values may hold secrets (passwords in URLs, tokens, keys): never echoed.
SECRET_KEYS = frozenset(
    {
        ("source", "uri"),
        ("source", "shards_from"),
        ("checkpoint", "uri"),
        ("sink", "url"),
        ("sink", "secret"),
        ("sink", "headers"),
    }
)
#: The longest a number of seconds may be (a day): longer is surely a mistake.
MAX_SECONDS = 86_400.0


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SourceSettings(_Section):
    """What to follow."""

    uri: str = Field("mongodb://localhost:27017/", description="connection string")
    change_streams: bool = Field(
        False, description="follow change streams (one per namespace) instead of the oplog"
    )
    namespaces: list[str] = Field(
        default_factory=list,
        description="databases or db.collections to follow (default: everything)",
    )
    direct_read: list[str] = Field(
        default_factory=list, description="collections or views to copy whole first"
    )
    no_tail: bool = Field(False, description="copy the direct_read collections, then exit")
    after: str = Field("now", description="first run only: now, oldest, or SECONDS[.INCREMENT]")
    shards_from: str | None = Field(
        None, description="tail every shard listed by this config server instead of uri"
    )
    shard: str | None = Field(
        None, description="with shards_from: follow this shard only (its config.shards _id)"
    )
    worker: str | None = Field(None, description="this worker's name (with workers_file)")
    workers_file: str | None = Field(None, description='TOML file: Workers = ["a", "b"]')
    full_document: Literal["updateLookup", "default", "whenAvailable", "required"] = Field(
        "updateLookup", description="change streams: what updates carry"
    )
    update_data_as_delta: bool = Field(
        False, description="oplog updates carry their change instead of the fetched document"
    )
    include_internal: bool = Field(
        False,
        description="also deliver the oplog changes of internal namespaces (the local and "
        "config databases, system.* collections)",
    )
    timeout: float = Field(10.0, gt=0, le=MAX_SECONDS, description="seconds to look for the server")

    @field_validator("shard", mode="before")
    @classmethod
    def _unset(cls, value: Any) -> Any:
        return None if value == "" else value  # "" in a file: not set

    @model_validator(mode="after")
    def _consistent(self) -> SourceSettings:
        if (self.worker is None) != (self.workers_file is None):
            raise ValueError("source.worker and source.workers_file go together")
        if self.no_tail and not self.direct_read:
            raise ValueError("source.no_tail needs source.direct_read (nothing else to do)")
        if self.shard is not None and not self.shards_from:
            raise ValueError("source.shard picks one shard of source.shards_from: set both")
        if self.shards_from and self.change_streams:
            raise ValueError(
                "source.shards_from tails each shard's oplog; change streams follow a sharded "
                "cluster through mongos: set source.uri to the mongos instead"
            )
        for ns in [*self.namespaces, *self.direct_read]:
            if not ns or ns.startswith(".") or ns.endswith("."):
                raise ValueError(f"namespaces are 'db' or 'db.collection', got {shown(ns)}")
        for ns in self.direct_read:
            if "." not in ns:
                raise ValueError(f"source.direct_read entries are 'db.collection', got {shown(ns)}")
        return self


class SinkSettings(_Section):
    """Where events go."""

    type: str = Field("stdout", description=f"one of {', '.join(SINK_TYPES)}")
    path: str | None = Field(None, description="file: the JSON Lines file")
    max_bytes: int = Field(0, ge=0, le=2**50, description="file: rotate past this size (0: never)")
    backups: int = Field(5, ge=0, le=10_000, description="file: rotated files kept")
    fsync: bool = Field(False, description="file: fsync every batch")
    url: str | None = Field(
        None,
        description="webhook: where to POST batches; nats: nats://HOST:PORT[,...]; redis: "
        "redis://HOST:PORT[/DB]; kafka: HOST:PORT[,...] (the bootstrap servers)",
    )
    target: str | None = Field(
        None,
        description="brokers: the subject (nats), stream key (redis) or topic (kafka) of a "
        "namespace's events, from {namespace}, {db} and {coll} (default: gtom.{namespace}, "
        "gtom:{namespace} for redis)",
    )
    stream: str = Field("GTOM", description="nats: the JetStream stream (created if missing)")
    maxlen: int = Field(
        0, ge=0, le=2**53, description="redis: trim each stream to about this (0: never)"
    )
    secret: str | None = Field(None, description="webhook: HMAC-SHA256 key (X-Gtom-Signature)")
    timeout: float = Field(10.0, gt=0, le=MAX_SECONDS, description="webhook: seconds per request")
    headers: dict[str, str] = Field(
        default_factory=dict, description="webhook: extra headers (NAME=VALUE)"
    )

    @model_validator(mode="after")
    def _needs(self) -> SinkSettings:
        if self.type == "file" and not self.path:
            raise ValueError("sink.type = 'file' needs sink.path")
        if self.type in ("webhook", "nats", "redis", "kafka") and not self.url:
            raise ValueError(f"sink.type = {self.type!r} needs sink.url")
        schemes = {
            "webhook": ("http://", "https://"),
            "nats": ("nats://", "tls://"),
            "redis": ("redis://", "rediss://", "unix://"),
        }.get(self.type)
        if self.url is not None and schemes and not self.url.startswith(schemes):
            scheme = self.url.partition("://")[0] if "://" in self.url else "no scheme"
            raise ValueError(  # the URL itself is not shown: it may hold a password
                f"sink.url for {self.type} must start with {' or '.join(schemes)}, "
                f"got {shown(scheme, 20)}"
            )
        if self.target is not None:
            try:
                sample = self.target.format(namespace="d.c", db="d", coll="c")
            except (KeyError, IndexError, ValueError) as e:
                raise ValueError(
                    f"sink.target may use {{namespace}}, {{db}} and {{coll}}, got "
                    f"{shown(self.target)} ({shown(e)})"
                ) from e
            problem = None
            if self.type == "nats":
                problem = nats_subject_problem(sample)
            elif self.type == "kafka" and not KAFKA_TOPIC.fullmatch(sample):
                problem = "a Kafka topic allows only A-Z a-z 0-9 . _ - (249 at most)"
            if problem is not None:
                raise ValueError(f"sink.target {shown(self.target)} gives no valid name: {problem}")
        return self

    def target_for(self, namespace: str) -> str:
        """The subject, stream key or topic of ``namespace``'s events.

        The namespace's parts are escaped for the broker (`gtom.daemon.sinks.names`).
        """
        template = self.target or DEFAULT_TARGETS.get(self.type, "gtom.{namespace}")
        db, _, coll = namespace.partition(".")
        escape = _ESCAPES.get(self.type)
        if escape is not None:
            db, coll = escape(db), escape(coll)
        return template.format(namespace=f"{db}.{coll}", db=db, coll=coll)


class DeliverySettings(_Section):
    """How events are batched and delivered."""

    batch_size: int = Field(500, ge=1, le=100_000, description="events per batch")
    batch_wait: float = Field(0.2, gt=0, le=3600, description="seconds a partial batch may wait")
    retry_max_wait: float = Field(
        30.0, gt=0, le=MAX_SECONDS, description="cap of the retry backoff (seconds)"
    )
    format: Literal["relaxed", "canonical"] = Field("relaxed", description="Extended JSON mode")
    on_history_lost: Literal["fail", "resnapshot"] = Field(
        "fail", description="fail, or copy the namespaces again and tail from now"
    )


class CheckpointSettings(_Section):
    """Where delivery progress is kept."""

    store: Literal["file", "mongodb"] = Field("file", description="file or mongodb")
    path: str = Field("gtom-checkpoint.json", description="file: the checkpoint file")
    uri: str | None = Field(None, description="mongodb: connection string (default source.uri)")
    collection: str = Field("gtom.checkpoints", description="mongodb: db.collection")
    name: str = Field("default", description="mongodb: this daemon's document _id")


class ClusterSettings(_Section):
    """Daemons that share one lease: one of them delivers, the others stand by (hot)."""

    name: str | None = Field(
        None, description="the cluster; every gtom run with this name shares one lease"
    )
    lease_ttl: float = Field(
        10.0, ge=1.0, le=3600.0, description="seconds a lease lasts without renewal"
    )
    collection: str = Field(
        "gtom.leases", description="db.collection of the leases (in the checkpoint store)"
    )

    @field_validator("name", mode="before")
    @classmethod
    def _unset(cls, value: Any) -> Any:
        return None if value == "" else value  # "" in a file: no cluster

    @model_validator(mode="after")
    def _named(self) -> ClusterSettings:
        if self.name is not None and (not self.name.strip() or "/" in self.name):
            raise ValueError(
                f"cluster.name must be a non-empty name without '/', got {shown(self.name)}"
            )
        database, _, collection = self.collection.partition(".")
        if not database or not collection:
            raise ValueError(
                f"cluster.collection must be 'db.collection', got {shown(self.collection)}"
            )
        return self


class MetricsSettings(_Section):
    """The HTTP endpoint for /metrics, /healthz and /readyz."""

    listen: str = Field("127.0.0.1:9187", description="HOST:PORT, or off")

    @model_validator(mode="after")
    def _address(self) -> MetricsSettings:
        if self.listen != "off":
            host, _, port = self.listen.rpartition(":")
            if not host or not port.isdigit() or not 0 <= int(port) < 65536:
                raise ValueError(
                    f"metrics.listen must be HOST:PORT or off, got {shown(self.listen)}"
                )
        return self


class LogSettings(_Section):
    """Logging."""

    format: Literal["text", "json"] = Field("text", description="text or json lines")
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="threshold")


class Config(_Section):
    """Every setting of `gtom run`."""

    source: SourceSettings = SourceSettings()
    sink: SinkSettings = SinkSettings()
    delivery: DeliverySettings = DeliverySettings()
    checkpoint: CheckpointSettings = CheckpointSettings()
    cluster: ClusterSettings = ClusterSettings()
    metrics: MetricsSettings = MetricsSettings()
    log: LogSettings = LogSettings()

    @model_validator(mode="after")
    def _across(self) -> Config:
        if self.source.shards_from and self.delivery.on_history_lost == "resnapshot":
            raise ValueError(
                "delivery.on_history_lost = 'resnapshot' is not available with "
                "source.shards_from: copy the collections through mongos instead"
            )
        return self


SECTIONS: dict[str, type[_Section]] = {
    name: field.annotation  # type: ignore[misc]
    for name, field in Config.model_fields.items()
}
#: Short names for the settings used most: flag alias -> (section, key).
ALIASES = {"uri": ("source", "uri"), "ns": ("source", "namespaces"), "sink": ("sink", "type")}


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
