"""``gtom run`` following shards, and a sink that refuses events for good."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
from bson import json_util

from tests.conftest import Cluster, TestServer
from tests.test_daemon import Daemon, assert_fails


class Refusing(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{"error": "schema mismatch"}'
        self.send_response(400)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_OPTIONS(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def refusing_hook() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    thread = Thread(target=httpd.serve_forever)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_a_sink_that_refuses_for_good_stops_with_exit_18_and_keeps_the_checkpoint(
    tmp_path: Path, server: TestServer, client: Any, db_name: str, refusing_hook: str
) -> None:
    d = Daemon(tmp_path, server, db_name, "--sink", "webhook", "--sink-url", refusing_hook)
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
        d.wait_for(lambda events: len(events) >= 6)
        assert d.terminate() == 0
        saved = json_util.loads(d.checkpoint.read_text())
        assert set(saved["shards"]) == {"s1", "s2"}
        assert all(mark["count"] >= 1 for mark in saved["shards"].values())

        shards[0].admin[db_name].c.insert_one({"_id": 103})
        again = Daemon(tmp_path, cluster.shards[0], db_name, *args).start()
        again.wait_for(lambda events: len(events) >= 7)
        time.sleep(0.3)
        ids = sorted(e["id"] for e in again.events())
        assert ids == [100, 101, 102, 103, 200, 201, 202]  # none twice, none lost
        assert again.terminate() == 0
    finally:
        config.close()
