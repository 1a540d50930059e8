"""The daemon's ``/metrics``, ``/healthz`` and ``/readyz``, served by `gtom.daemon.metrics`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

import gtom
from gtom.daemon.metrics import UNHEALTHY_AFTER, Metrics, current_metrics, serve


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, parsed by prometheus_client: (name, labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render())
        for s in family.samples
    }


def test_the_exposition_keeps_every_name_type_and_label() -> None:
    m = Metrics()
    m.events_in[("shop.orders", "i")] += 5
    m.events_in[("shop.orders", "u")] += 2
    m.delivered("shop.orders", "i", None)
    m.retries = 3
    m.queue_depth = 6
    m.ready = True
    text = m.render()
    for name, kind in (
        ("events_in_total", "counter"),
        ("events_out_total", "counter"),
        ("lag_seconds", "gauge"),
        ("queue_depth", "gauge"),
        ("retries_total", "counter"),
        ("checkpoint_age_seconds", "gauge"),
        ("sink_healthy", "gauge"),
        ("ready", "gauge"),
        ("delivery_lag_seconds", "histogram"),
        ("batch_send_seconds", "histogram"),
        ("cluster_term", "gauge"),
        ("cluster_failovers_total", "counter"),
    ):
        assert f"# TYPE gtom_{name} {kind}\n" in text
    got = samples(m)
    ns = ("namespace", "shop.orders")
    assert got[("gtom_events_in_total", (ns, ("operation", "i")))] == 5
    assert got[("gtom_events_in_total", (ns, ("operation", "u")))] == 2
    assert got[("gtom_events_out_total", (ns, ("operation", "i")))] == 1
    assert got[("gtom_retries_total", ())] == 3
    assert got[("gtom_queue_depth", ())] == 6
    assert got[("gtom_ready", ())] == 1
    assert got[("gtom_sink_healthy", ())] == 1
    assert "_created" not in text


def test_any_namespace_survives_the_exposition() -> None:
    m = Metrics()
    odd = 'a\\b."quoted"\nnext line.50%'
    m.events_in[(odd, "i")] += 1
    assert samples(m)[("gtom_events_in_total", (("namespace", odd), ("operation", "i")))] == 1


def test_delivery_lag_and_send_time_are_histograms() -> None:
    m = Metrics()
    m.delivered("db.c", "i", time.time() - 0.3)  # written 0.3 s before the sink confirmed it
    m.delivered("db.c", "i", time.time() - 120)
    m.delivered("db.c", "i", None)  # a copied document: no server time, not observed
    m.sink_ok(0.02)
    m.sink_ok()  # no time given: not observed
    got = samples(m)
    lag = "gtom_delivery_lag_seconds"
    assert got[(f"{lag}_bucket", (("le", "0.25"),))] == 0
    assert got[(f"{lag}_bucket", (("le", "0.5"),))] == 1
    assert got[(f"{lag}_bucket", (("le", "300.0"),))] == 2
    assert got[(f"{lag}_bucket", (("le", "+Inf"),))] == got[(f"{lag}_count", ())] == 2
    assert got[(f"{lag}_sum", ())] == pytest.approx(120.3, abs=1)
    send = "gtom_batch_send_seconds"
    assert got[(f"{send}_bucket", (("le", "0.01"),))] == 0
    assert got[(f"{send}_bucket", (("le", "0.025"),))] == 1
    assert got[(f"{send}_count", ())] == 1 and got[(f"{send}_sum", ())] == 0.02


def test_cluster_metrics_follow_the_role() -> None:
    m = Metrics()
    assert ("gtom_cluster_leader", ()) not in samples(m)  # no cluster configured
    assert samples(m)[("gtom_cluster_term", ())] == 0
    m.role, m.term = "standby", 4
    assert samples(m)[("gtom_cluster_leader", ())] == 0
    m.role, m.failovers = "leader", 1
    got = samples(m)
    assert got[("gtom_cluster_leader", ())] == 1
    assert got[("gtom_cluster_term", ())] == 4
    assert got[("gtom_cluster_failovers_total", ())] == 1


def test_copy_progress_is_exported_per_namespace() -> None:
    m = Metrics()
    assert "gtom_copy_documents" not in m.render()  # no copy: no family
    m.copies = {
        "db.a": gtom.DirectReadProgress("db.a", 250, 1000, 4, 1, False),
        "db.v": gtom.DirectReadProgress("db.v", 7, None, 1, 1, True),
    }
    got = samples(m)
    assert got[("gtom_copy_documents", (("namespace", "db.a"),))] == 250
    assert got[("gtom_copy_estimated_documents", (("namespace", "db.a"),))] == 1000
    assert got[("gtom_copy_done", (("namespace", "db.a"),))] == 0
    assert got[("gtom_copy_documents", (("namespace", "db.v"),))] == 7
    assert ("gtom_copy_estimated_documents", (("namespace", "db.v"),)) not in got  # a view
    assert got[("gtom_copy_done", (("namespace", "db.v"),))] == 1


def test_the_process_metrics_are_the_last_made() -> None:
    m = Metrics()
    assert current_metrics() is m


# -- over HTTP ------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def served() -> AsyncIterator[tuple[Metrics, int]]:
    m = Metrics()
    server = await serve(m, "127.0.0.1", 0)
    yield m, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def get(port: int, path: str) -> tuple[int, str, str]:
    """Status, content type and body of ``GET path``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = raw.decode().partition("\r\n\r\n")
    lines = head.split("\r\n")
    kind = next(v for k, _, v in (h.partition(": ") for h in lines[1:]) if k == "Content-Type")
    return int(lines[0].split()[1]), kind, body


async def test_metrics_are_served_as_prometheus_text(served: tuple[Metrics, int]) -> None:
    m, port = served
    m.events_out[("db.c", "d")] += 9
    status, kind, body = await get(port, "/metrics")
    assert (status, kind) == (200, "text/plain; version=0.0.4; charset=utf-8")
    assert 'gtom_events_out_total{namespace="db.c",operation="d"} 9' in body


async def test_healthz_names_the_role_and_keeps_its_status_codes(
    served: tuple[Metrics, int],
) -> None:
    m, port = served
    status, kind, body = await get(port, "/healthz")
    assert (status, kind, json.loads(body)) == (
        200,
        "application/json",
        {"status": "ok", "role": None},
    )
    m.role = "standby"
    status, _, body = await get(port, "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok", "role": "standby"})
    m.role = "leader"
    m.sink_failed()
    assert (await get(port, "/healthz"))[0] == 200  # failing, but not for long yet
    m.failing_since = time.monotonic() - UNHEALTHY_AFTER - 1
    status, _, body = await get(port, "/healthz")
    assert (status, json.loads(body)) == (503, {"status": "sink failing", "role": "leader"})


async def test_readyz_is_ready_for_a_healthy_standby_too(served: tuple[Metrics, int]) -> None:
    m, port = served
    assert (await get(port, "/readyz"))[0] == 503  # not following yet
    m.role, m.ready = "standby", True
    assert (await get(port, "/readyz"))[::2] == (200, "ready\n")
    m.sink_failed()
    assert (await get(port, "/readyz"))[::2] == (503, "not ready\n")
    m.sink_ok()
    m.role = "leader"
    assert (await get(port, "/readyz"))[0] == 200
    assert (await get(port, "/nope"))[0] == 404
