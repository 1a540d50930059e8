"""Prometheus metrics, and ``/healthz`` / ``/readyz``, over a small asyncio HTTP server.

Served at ``metrics.listen`` (``127.0.0.1:9187`` by default: not on other interfaces unless you
say so). The exposition is written by ``prometheus_client`` from a collector that reads the
plain counters the pipeline keeps (so counting an event stays an integer increment). The
metrics (all prefixed ``gtom_``):

* ``events_in_total{namespace,operation}``: events read from MongoDB;
* ``events_out_total{namespace,operation}``: events the sink confirmed;
* ``lag_seconds``: now minus the server time of the newest confirmed event (0 while idle);
* ``queue_depth``: events read but not yet confirmed;
* ``retries_total``: batches sent again after a sink or server error;
* ``checkpoint_age_seconds``: since the checkpoint was last saved;
* ``sink_healthy``: 1 while the last delivery attempt worked;
* ``ready``: 1 once following and delivering;
* ``delivery_lag_seconds`` (histogram): from a change on the server to the sink's confirmation
  of its event;
* ``batch_send_seconds`` (histogram): how long the sink took to confirm a batch;
* ``copy_documents{namespace}``, ``copy_estimated_documents{namespace}``,
  ``copy_done{namespace}``: the progress of each copy (``direct_read``) of this run;
* ``cluster_leader`` (only with a cluster), ``cluster_term``, ``cluster_failovers_total``.

``/healthz`` is 200 while the daemon runs (503 once the sink has failed for `UNHEALTHY_AFTER`
seconds in a row, a constant), with a small JSON body naming the cluster role
(``{"status": "ok", "role": "standby"}``; ``null`` without a cluster); ``/readyz`` is 200 once it
follows the deployment and its sink works, else 503 (a standby sets itself ready).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import time
import weakref
from collections import defaultdict
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

import gtom

__all__ = ["Histogram", "Metrics", "current_metrics", "serve"]

#: The sink may fail this long before /healthz reports it.
UNHEALTHY_AFTER = 30.0
#: Buckets (seconds) of the write→delivery lag: from a few milliseconds to an hour behind.
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
#: Buckets (seconds) of a batch's send time.
SEND_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

#: The text exposition's content type (format 0.0.4, which `generate_latest` writes).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_latest: weakref.ReferenceType[Metrics] | None = None


class Histogram:
    """Observations counted into fixed buckets; cheap enough to observe every event.

    ``prometheus_client``'s own histogram takes a lock per observation; the pipeline runs on one
    event loop, so a list of counts and `bisect` do (about 0.2 µs).
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        """Empty, with upper bounds ``bounds`` (ascending; +Inf is added)."""
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # per bucket, not cumulative; last: +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        """How many observations."""
        return sum(self.counts)

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        """The histogram as a metric family (cumulative buckets, as Prometheus wants them)."""
        buckets: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.sum)


class Metrics:
    """The daemon's counters and gauges, and its health."""

    def __init__(self) -> None:
        """All zero; not ready; no cluster role."""
        global _latest
        self.events_in: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.events_out: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.retries = 0
        self.queue_depth = 0
        self.newest_out: float | None = None  # server time (epoch seconds) of the newest event
        self.checkpoint_saved: float | None = None  # monotonic
        self.ready = False
        self.failing_since: float | None = None  # monotonic: the sink's first failure in a row
        self.role: str | None = None
        """``"leader"``, ``"standby"``, or None when no cluster is configured."""
        self.term = 0
        """The cluster's current term (0 without a cluster)."""
        self.failovers = 0
        """How many times this daemon took over as leader."""
        self.copies: dict[str, gtom.DirectReadProgress] = {}
        """The progress of this run's copies, by namespace (set by `gtom.daemon.progress`)."""
        self.delivery_lag = Histogram(LAG_BUCKETS)
        self.send_time = Histogram(SEND_BUCKETS)
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Collector(self))
        _latest = weakref.ref(self)

    def delivered(self, namespace: str, operation: str, server_time: float | None) -> None:
        """Count an event the sink confirmed (``server_time``: when the server made it)."""
        self.events_out[(namespace, operation)] += 1
        if server_time is not None:
            self.newest_out = server_time
            self.delivery_lag.observe(max(0.0, time.time() - server_time))

    def sink_ok(self, seconds: float | None = None) -> None:
        """A delivery worked (``seconds``: how long the sink took to confirm the batch)."""
        self.failing_since = None
        if seconds is not None:
            self.send_time.observe(seconds)

    def sink_failed(self) -> None:
        """A delivery failed (it will be retried)."""
        self.retries += 1
        if self.failing_since is None:
            self.failing_since = time.monotonic()

    @property
    def healthy(self) -> bool:
        """False once the sink has failed for `UNHEALTHY_AFTER` seconds in a row."""
        since = self.failing_since
        return since is None or time.monotonic() - since < UNHEALTHY_AFTER

    @property
    def lag(self) -> float:
        """Now minus the server time of the newest confirmed event; 0 when nothing waits."""
        if self.newest_out is None or not self.queue_depth:
            return 0.0
        return max(0.0, time.time() - self.newest_out)

    def render(self) -> str:
        """The Prometheus text exposition (format 0.0.4)."""
        return generate_latest(self._registry).decode()

    def health(self) -> tuple[int, str]:
        """``/healthz``: its status code and JSON body."""
        ok = self.healthy
        body = json.dumps({"status": "ok" if ok else "sink failing", "role": self.role})
        return (200 if ok else 503), body + "\n"


def current_metrics() -> Metrics | None:
    """The `Metrics` made last in this process (the daemon's: a process runs one), if any."""
    return None if _latest is None else _latest()


class _Collector:
    """Reads a `Metrics` into metric families at each scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._metrics
        for name, counts, what in (
            ("gtom_events_in", m.events_in, "Events read from MongoDB."),
            ("gtom_events_out", m.events_out, "Events the sink confirmed."),
        ):
            family = CounterMetricFamily(name, what, labels=("namespace", "operation"))
            for (namespace, operation), value in sorted(counts.items()):
                family.add_metric((namespace, operation), value)
            yield family
        age = 0.0 if m.checkpoint_saved is None else time.monotonic() - m.checkpoint_saved
        yield GaugeMetricFamily(
            "gtom_lag_seconds", "Now minus the server time of the newest event out.", m.lag
        )
        yield GaugeMetricFamily(
            "gtom_queue_depth", "Events read, not yet confirmed.", m.queue_depth
        )
        yield CounterMetricFamily("gtom_retries", "Deliveries attempted again.", m.retries)
        yield GaugeMetricFamily(
            "gtom_checkpoint_age_seconds", "Seconds since the last checkpoint.", age
        )
        yield GaugeMetricFamily(
            "gtom_sink_healthy", "1 if the sink works.", int(m.failing_since is None)
        )
        yield GaugeMetricFamily("gtom_ready", "1 once following and delivering.", int(m.ready))
        yield m.delivery_lag.family(
            "gtom_delivery_lag_seconds",
            "Seconds from a change on the server to the sink's confirmation of its event.",
        )
        yield m.send_time.family(
            "gtom_batch_send_seconds", "Seconds the sink took to confirm a batch."
        )
        yield from self._copies()
        yield from self._cluster()

    def _copies(self) -> Iterator[Metric]:
        copies = sorted(self._metrics.copies.items())
        if not copies:
            return
        read = GaugeMetricFamily(
            "gtom_copy_documents", "Documents a copy has read so far.", labels=("namespace",)
        )
        estimated = GaugeMetricFamily(
            "gtom_copy_estimated_documents",
            "The server's estimate of a copied collection's documents.",
            labels=("namespace",),
        )
        done = GaugeMetricFamily(
            "gtom_copy_done", "1 once a copy has read every document.", labels=("namespace",)
        )
        for namespace, progress in copies:
            read.add_metric((namespace,), progress.read)
            if progress.estimated_total is not None:
                estimated.add_metric((namespace,), progress.estimated_total)
            done.add_metric((namespace,), int(progress.done))
        yield from (read, estimated, done)

    def _cluster(self) -> Iterator[Metric]:
        m = self._metrics
        if m.role is not None:
            yield GaugeMetricFamily(
                "gtom_cluster_leader",
                "1 if this daemon leads its cluster.",
                int(m.role == "leader"),
            )
        yield GaugeMetricFamily("gtom_cluster_term", "The cluster's current term.", m.term)
        yield CounterMetricFamily(
            "gtom_cluster_failovers", "Times this daemon took over as leader.", m.failovers
        )


async def serve(metrics: Metrics, host: str, port: int) -> asyncio.Server:
    """Start serving ``/metrics``, ``/healthz`` and ``/readyz`` (raises OSError if it cannot)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass  # headers: not needed
            parts = request.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
                status, body, kind = 405, "only GET\n", "text/plain"
            elif path == "/metrics":
                status, body, kind = 200, metrics.render(), CONTENT_TYPE
            elif path == "/healthz":
                status, body = metrics.health()
                kind = "application/json"
            elif path == "/readyz":
                ok = metrics.ready and metrics.failing_since is None
                status, body, kind = (
                    (200 if ok else 503),
                    ("ready\n" if ok else "not ready\n"),
                    "text/plain",
                )
            else:
                status, body, kind = 404, "not found\n", "text/plain"
            data = body.encode()
            reason = {
                200: "OK",
                404: "Not Found",
                405: "Method Not Allowed",
                503: "Service Unavailable",
            }[status]
            head = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
            ).encode()
            writer.write(head if parts and parts[0] == "HEAD" else head + data)
            await writer.drain()
        except (OSError, asyncio.TimeoutError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port)
