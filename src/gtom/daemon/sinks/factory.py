"""The sink ``sink.type`` names, built from the settings (broker clients imported on use)."""

from __future__ import annotations

from gtom.daemon import exits
from gtom.daemon.config import Config
from gtom.daemon.errors import ConfigError
from gtom.daemon.sinks.base import Sink

__all__ = ["make_sink"]


def make_sink(config: Config) -> Sink:
    """The sink ``config.sink`` describes."""
    settings = config.sink
    if settings.type == "file":
        from gtom.daemon.sinks.file import FileSink

        assert settings.path is not None
        return FileSink(
            settings.path,
            max_bytes=settings.max_bytes,
            backups=settings.backups,
            fsync=settings.fsync,
        )
    if settings.type == "webhook":
        from gtom.daemon.sinks.webhook import WebhookSink

        assert settings.url is not None
        return WebhookSink(
            settings.url,
            secret=settings.secret,
            timeout=settings.timeout,
            headers=settings.headers,
        )
    if settings.type in ("nats", "redis", "kafka"):
        return _broker_sink(config)
    from gtom.daemon.sinks.stdout import StdoutSink

    return StdoutSink()


def _broker_sink(config: Config) -> Sink:
    settings = config.sink
    assert settings.url is not None
    try:
        if settings.type == "nats":
            from gtom.daemon.sinks.nats import NatsSink

            return NatsSink(
                settings.url,
                subject_for=settings.target_for,
                template=settings.target or "gtom.{namespace}",
                stream=settings.stream,
            )
        if settings.type == "redis":
            from gtom.daemon.sinks.redis import RedisSink

            return RedisSink(settings.url, key_for=settings.target_for, maxlen=settings.maxlen)
        from gtom.daemon.sinks.kafka import KafkaSink

        return KafkaSink(settings.url.removeprefix("kafka://"), topic_for=settings.target_for)
    except ImportError as e:
        raise ConfigError(str(e), exits.UNKNOWN_SINK) from e
