"""The Kafka test broker's own set-up: every cluster id formats, including one read as an option."""

from __future__ import annotations

from pathlib import Path

from tests.kafka_broker import KafkaBroker, cluster_id, ensure_jars


def test_a_cluster_id_starting_with_a_dash_formats_the_storage(tmp_path: Path) -> None:
    # 0xF8 as the first byte makes URL-safe base64 start with "-" (about 1 random id in 64 does).
    dashed = cluster_id(bytes([0xF8]) + bytes(range(15)))
    assert dashed.startswith("-")
    broker = KafkaBroker(ensure_jars(), tmp_path)
    broker.format(dashed)
    meta = next((tmp_path / "data").glob("**/meta.properties")).read_text()
    assert f"cluster.id={dashed}" in meta
