"""The daemon's settings, as validated models: one per section of the config file.

`gtom.daemon.config` reads them from a TOML file, ``GTOM_*`` environment variables and flags;
each model checks its own values (and `Config` those that span sections), so a mistake is
found before anything connects.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from gtom._redact import shown
from gtom.daemon.sinks.names import KAFKA_TOPIC, kafka_part, nats_part, nats_subject_problem

__all__ = [
    "ALIASES",
    "MAX_SECONDS",
    "SECRET_KEYS",
    "SECTIONS",
    "SINK_TYPES",
    "CheckpointSettings",
    "ClusterSettings",
    "Config",
    "DeliverySettings",
    "LogSettings",
    "MetricsSettings",
    "SinkSettings",
    "SourceSettings",
]

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
