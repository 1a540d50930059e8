"""docs/sharding.md's example runs: every shard, a shard added later, one worker's filter."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import pymongo
import pytest

import gtom  # noqa: F401 - imported before the example patches pymongo.MongoClient
from tests.conftest import Cluster

DOC = (Path(__file__).parent.parent / "docs" / "sharding.md").read_text()
EXAMPLE_CONFIG_URI = "mongodb://cfg1.example.net:27019/?replicaSet=cfg"


class Enough(Exception):  # noqa: N818 - a signal, not an error
    """Raised by the example's print once the expected lines came: it leaves the with block."""


def test_the_sharding_example_follows_every_shard_and_one_added_later(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = re.findall(r"```python\n(.*?)```", DOC, flags=re.S)[0]
    assert EXAMPLE_CONFIG_URI in example
    code = example.replace(EXAMPLE_CONFIG_URI, cluster.config.uri)
    monkeypatch.chdir(tmp_path)
    opened: list[Any] = []

    real_client = pymongo.MongoClient

    def recorded_client(*args: Any, **kwargs: Any) -> Any:
        opened.append(real_client(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(pymongo, "MongoClient", recorded_client)  # to close what the example opens
    Path("workers.toml").write_text('Workers = ["Tom"]\n')  # a lone worker: it owns everything
    admin = cluster.config.admin
    admin.config.shards.delete_many({})
    first, later = cluster.shards[1], cluster.shards[2]
    admin.config.shards.insert_one({"_id": "one", "host": cluster.host(first)})
    db = f"docs_sharding_{time.monotonic_ns()}"

    lines: list[str] = []

    def fake_print(*args: Any) -> None:
        line = " ".join(map(str, args))
        if line.endswith((".c 1 one", ".c 2 two")):
            lines.append(line)
        if len(lines) == 2:
            raise Enough

    failure: list[BaseException] = []

    def run() -> None:
        try:
            exec(compile(code, "docs/sharding.md", "exec"), {"print": fake_print})
        except Enough:
            pass
        except BaseException as e:  # reported by the test below
            failure.append(e)

    runner = threading.Thread(target=run)
    runner.start()
    deadline = time.monotonic() + 20
    while not any(t.name.startswith("gtom-shard-listener") for t in threading.enumerate()):
        assert not failure and time.monotonic() < deadline, failure
        time.sleep(0.02)
    first.admin[db].c.insert_one({"_id": 1})
    admin.config.shards.insert_one({"_id": "two", "host": cluster.host(later)})
    later.admin[db].c.insert_one({"_id": 2})
    runner.join(30)
    for client in opened:
        client.close()
    assert not runner.is_alive() and not failure, failure
    assert sorted(lines) == [f"i {db}.c 1 one", f"i {db}.c 2 two"]
