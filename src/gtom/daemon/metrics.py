"""Prometheus metrics, and ``/healthz`` / ``/readyz``, over a small asyncio HTTP server.

Served at ``metrics.listen`` (``127.0.0.1:9187`` by default: not on other interfaces unless you
say so). The metrics (all prefixed ``gtom_``):

* ``events_in_total{namespace,operation}``: events read from MongoDB;
* ``events_out_total{namespace,operation}``: events the sink confirmed;
* ``lag_seconds``: now minus the server time of the newest confirmed event (0 while idle);
* ``queue_depth``: events read but not yet confirmed;
* ``retries_total``: batches sent again after a sink or server error;
* ``checkpoint_age_seconds``: since the checkpoint was last saved;
* ``sink_healthy``: 1 while the last delivery attempt worked.

``/healthz`` is 200 while the daemon runs (503 once the sink has failed for `UNHEALTHY_AFTER`
seconds in a row, a constant); ``/readyz`` is 200 once it follows the deployment and its sink
works, else 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict

__all__ = ["Metrics", "serve"]

#: The sink may fail this long before /healthz reports it.
UNHEALTHY_AFTER = 30.0


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """The daemon's counters and gauges, and its health."""

    def __init__(self) -> None:
        """All zero; not ready."""
        self.events_in: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.events_out: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.retries = 0
        self.queue_depth = 0
        self.newest_out: float | None = None  # server time (epoch seconds) of the newest event
        self.checkpoint_saved: float | None = None  # monotonic
        self.ready = False
        self.failing_since: float | None = None  # monotonic: the sink's first failure in a row

    def delivered(self, namespace: str, operation: str, server_time: float | None) -> None:
        """Count an event the sink confirmed."""
        self.events_out[(namespace, operation)] += 1
        if server_time is not None:
            self.newest_out = server_time

    def sink_ok(self) -> None:
        """A delivery worked."""
        self.failing_since = None

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

    def render(self) -> str:
        """The Prometheus text exposition (format 0.0.4)."""
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            lines.append(f"# HELP gtom_{name} {help_text}")
            lines.append(f"# TYPE gtom_{name} {kind}")

        for name, counts, what in (
            ("events_in_total", self.events_in, "Events read from MongoDB."),
            ("events_out_total", self.events_out, "Events the sink confirmed."),
        ):
            family(name, "counter", what)
            for (namespace, operation), value in sorted(counts.items()):
                labels = f'namespace="{_label(namespace)}",operation="{_label(operation)}"'
                lines.append(f"gtom_{name}{{{labels}}} {value}")
        lag = 0.0
        if self.newest_out is not None and self.queue_depth:
            lag = max(0.0, time.time() - self.newest_out)
        age = 0.0 if self.checkpoint_saved is None else time.monotonic() - self.checkpoint_saved
        gauges: tuple[tuple[str, str, float, str], ...] = (
            ("lag_seconds", "gauge", lag, "Now minus the server time of the newest event out."),
            ("queue_depth", "gauge", self.queue_depth, "Events read, not yet confirmed."),
            ("retries_total", "counter", self.retries, "Deliveries attempted again."),
            ("checkpoint_age_seconds", "gauge", age, "Seconds since the last checkpoint."),
            ("sink_healthy", "gauge", int(self.failing_since is None), "1 if the sink works."),
            ("ready", "gauge", int(self.ready), "1 once following and delivering."),
        )
        for name, kind, amount, what in gauges:
            family(name, kind, what)
            lines.append(
                f"gtom_{name} {amount:g}" if isinstance(amount, float) else f"gtom_{name} {amount}"
            )
        return "\n".join(lines) + "\n"


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
                status, body = 200, metrics.render()
                kind = "text/plain; version=0.0.4; charset=utf-8"
            elif path == "/healthz":
                ok = metrics.healthy
                status, body, kind = (
                    (200 if ok else 503),
                    ("ok\n" if ok else "sink failing\n"),
                    "text/plain",
                )
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
