"""``gtom run`` following shards, and a sink that refuses events for good."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from bson import json_util

from tests.conftest import Cluster, TestServer
from tests.test_daemon import Daemon, assert_fails
from tests.webhook_server import WebhookServer


def test_a_sink_that_refuses_for_good_stops_with_exit_18_and_keeps_the_checkpoint(
    tmp_path: Path, server: TestServer, client: Any, db_name: str, webhook: WebhookServer
) -> None:
    webhook.status, webhook.reply = 400, b'{"error": "schema mismatch"}'
    d = Daemon(tmp_path, server, db_name, "--sink", "webhook", "--sink-url", webhook.url)
    d.start()
    before = json_util.loads(d.checkpoint.read_text())["oplog"]
    client[db_name].c.insert_one({"_id": 1})
    d.finish(timeout=20)
    assert d.proc is not None
    result = subprocess.CompletedProcess(d.args, d.proc.returncode, "", d.stderr[-1])
    assert_fails(result, 18, "schema mismatch")
    assert json_util.loads(d.checkpoint.read_text())["oplog"] == before


def test_following_shards_checkpoints_each_shard(
    tmp_path: Path, cluster: Cluster, db_name: str
) -> None:
    config = cluster.config.client()
    try:
        config.config.shards.delete_many({})
        shards = cluster.shards[1:]
        config.config.shards.insert_many(
            [{"_id": f"s{k}", "host": cluster.host(s)} for k, s in enumerate(shards, 1)]
        )
        args = ("--source-shards-from", cluster.config.uri)
        d = Daemon(tmp_path, cluster.shards[0], db_name, *args).start()
        for k, shard in enumerate(shards, 1):
            shard.admin[db_name].c.insert_many([{"_id": k * 100 + i} for i in range(3)])
        delivered = d.wait_for(lambda events: len(events) >= 6)
        assert d.terminate() == 0
        saved = json_util.loads(d.checkpoint.read_text())
        assert set(saved["shards"]) == {"s1", "s2"}
        for name in ("s1", "s2"):  # at or past each shard's last delivered event
            last = max(e["timestamp"] for e in delivered if e["id"] // 100 == int(name[1]))
            assert saved["shards"][name]["ts"] >= last

        shards[0].admin[db_name].c.insert_one({"_id": 103})
        again = Daemon(tmp_path, cluster.shards[0], db_name, *args).start()
        again.wait_for(lambda events: len(events) >= 7)
        time.sleep(0.3)
        ids = sorted(e["id"] for e in again.events())
        assert ids == [100, 101, 102, 103, 200, 201, 202]  # none twice, none lost
        assert again.terminate() == 0
    finally:
        config.close()


def test_copying_through_shards_reads_every_shard_s_part(
    tmp_path: Path, cluster: Cluster, db_name: str
) -> None:
    config = cluster.config.client()
    try:
        config.config.shards.delete_many({})
        shards = cluster.shards[1:]
        config.config.shards.insert_many(
            [{"_id": f"s{k}", "host": cluster.host(s)} for k, s in enumerate(shards, 1)]
        )
        for k, shard in enumerate(shards, 1):
            shard.admin[db_name].c.insert_many([{"_id": k * 100 + i} for i in range(5)])
        args = (
            *("--source-shards-from", cluster.config.uri, "--source-direct-read", f"{db_name}.c"),
            *("--source-no-tail", "--metrics-listen", "off"),
        )
        d = Daemon(tmp_path, cluster.shards[0], db_name, *args)
        result = d.run_to_end()
        assert result.returncode == 0, result.stderr
        assert sorted(e["id"] for e in d.events()) == [*range(100, 105), *range(200, 205)]
    finally:
        config.close()
