"""``gtom tail --shards-from`` and ``--worker``: the command over several real servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster, TestServer
from tests.test_cli import Tail, assert_one_line_error, run


@pytest.fixture
def config(cluster: Cluster) -> Iterator[Any]:
    client = cluster.config.client()
    client.config.shards.delete_many({})
    yield client
    client.close()


def test_shards_from_tails_every_shard_and_one_added_later(
    cluster: Cluster, config: Any, db_name: str
) -> None:
    first, later = cluster.shards[1:], cluster.shards[0]
    config.config.shards.insert_many(
        [{"_id": f"s{i}", "host": cluster.host(s)} for i, s in enumerate(first, 1)]
    )
    tail = Tail("--shards-from", cluster.config.uri, "--ns", db_name)
    try:
        for k, shard in enumerate(first, 1):
            shard.admin[db_name].c.insert_one({"_id": k})
        lines = tail.lines(2)
        assert sorted(line["id"] for line in lines) == [1, 2]

        config.config.shards.insert_one({"_id": "s-later", "host": cluster.host(later)})
        later.admin[db_name].c.insert_one({"_id": 3})
        assert [line["id"] for line in tail.lines(1)] == [3]
        assert tail.stop() == 0
    finally:
        tail.close()


def test_workers_split_the_changes_between_them(
    server: TestServer, client: Any, db_name: str, tmp_path: Path
) -> None:
    workers = tmp_path / "workers.toml"
    workers.write_text('Workers = ["Tom", "Dick"]\n')
    tom = Tail(
        "--uri", server.uri, "--ns", db_name, "--worker", "Tom", "--workers-file", str(workers)
    )
    dick = Tail(
        "--uri", server.uri, "--ns", db_name, "--worker", "Dick", "--workers-file", str(workers)
    )
    try:
        client[db_name].c.insert_many([{"_id": i} for i in range(40)])
        client[db_name].c.drop()
        tom_lines = tom.lines_until(lambda line: line["operation"] == "c")
        dick_lines = dick.lines_until(lambda line: line["operation"] == "c")
    finally:
        tom.close()
        dick.close()
    tom_ids = {line["id"] for line in tom_lines if line["operation"] == "i"}
    dick_ids = {line["id"] for line in dick_lines if line["operation"] == "i"}
    assert tom_ids.isdisjoint(dick_ids) and tom_ids | dick_ids == set(range(40))
    assert tom_ids and dick_ids
    assert tom_lines[-1]["operation"] == dick_lines[-1]["operation"] == "c"  # both see the drop


def test_worker_errors_are_one_line_and_exit_2(server: TestServer, tmp_path: Path) -> None:
    workers = tmp_path / "workers.toml"
    workers.write_text('Workers = ["Tom", "Dick"]\n')
    broken = tmp_path / "broken.toml"
    broken.write_text("Workers = [\n")
    uri = ["--uri", server.uri]
    assert_one_line_error(run("tail", *uri, "--worker", "Tom"), "go together")
    assert_one_line_error(
        run("tail", *uri, "--worker", "Sally", "--workers-file", str(workers)),
        "worker 'Sally' is not one of the workers ['Tom', 'Dick']",
    )
    assert_one_line_error(
        run("tail", *uri, "--worker", "Tom", "--workers-file", str(broken)), "is not valid TOML"
    )


def test_shards_from_errors_are_one_line_and_exit_2(
    cluster: Cluster, config: Any, free_port: int
) -> None:
    assert_one_line_error(
        run("tail", "--shards-from", cluster.config.uri, "--change-streams"), "through mongos"
    )
    assert_one_line_error(run("tail", "--shards-from", cluster.config.uri), "lists no shard")
    config.config.shards.insert_one({"_id": "gone", "host": f"rs9/127.0.0.1:{free_port}"})
    assert_one_line_error(
        run("tail", "--shards-from", cluster.config.uri, "--timeout", "0.5"),
        f"shard 1 of 1 (127.0.0.1:{free_port}): cannot reach MongoDB",
    )
