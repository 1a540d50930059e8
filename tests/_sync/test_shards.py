# Generated from tests/_async/test_shards.py by tools/synchro.py. Edit that one.
"""Following a sharded cluster shard by shard: real servers as shards and as the config server."""

from __future__ import annotations

from typing import Any

import pytest
from bson import Timestamp
from pymongo import MongoClient

import gtom
from tests._sync._tcompat import gtom_workers
from tests._sync.helpers import assert_quiet, collect, in_db, wait_until
from tests.conftest import PYMONGO_ASYNC_SOCKET_LEAK, Cluster


def by_shard(ops: list[gtom.Op]) -> dict[int, list[int]]:
    """The ids of ``ops`` grouped by the shard that wrote them (ids are shard * 100 + n)."""
    groups: dict[int, list[int]] = {}
    for op in ops:
        groups.setdefault(op.id // 100, []).append(op.id)
    return groups


class Clients:
    """Clients of the cluster's shards, closed together at the end of a test."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.opened: list[Any] = []

    def shard(self, i: int) -> Any:
        return self.open(self.cluster.shards[i].uri)

    def open(self, uri: str, **kwargs: Any) -> Any:
        client = MongoClient(uri, **self.cluster.shards[0].client_kwargs(**kwargs))
        self.opened.append(client)
        return client

    def close(self) -> None:
        for client in self.opened:
            client.close()


@pytest.fixture
def clients(cluster: Cluster) -> Any:
    c = Clients(cluster)
    yield c
    c.close()


@pytest.fixture
def config(cluster: Cluster) -> Any:
    """A client of the config server, its ``config.shards`` emptied for this test."""
    client = cluster.config.client()
    client.config.shards.delete_many({})
    yield client
    client.close()


def test_get_shards_lists_config_shards_with_urls_naming_every_host(
    cluster: Cluster, config: Any, clients: Clients
) -> None:
    hosts = [cluster.host(shard) for shard in cluster.shards[1:]]
    config.config.shards.insert_many(
        [{"_id": f"shard{i}", "host": host, "state": 1} for i, host in enumerate(hosts)]
    )

    shards = gtom.get_shards(config)

    assert [(s.id, s.host) for s in shards] == [("shard0", hosts[0]), ("shard1", hosts[1])]
    for info in shards:
        set_name, _, member = info.host.partition("/")
        assert info.get_url() == f"mongodb://{member}/?replicaSet={set_name}"
        client = clients.open(info.get_url())  # discovers the set and finds its primary
        assert (client.admin.command("ping"))["ok"] == 1


def test_get_shards_of_a_malformed_document_says_which(config: Any) -> None:
    config.config.shards.insert_one({"_id": "broken", "state": 1})
    with pytest.raises(gtom.ConfigurationError, match="'broken' has no usable 'host'"):
        gtom.get_shards(config)


def test_every_shard_s_events_arrive_in_one_stream_in_each_shard_s_order(
    clients: Clients, db_name: str
) -> None:
    shard_clients = [clients.shard(i) for i in range(3)]
    ctx = gtom.start_multi(shard_clients, gtom.Options(namespace_filter=in_db(db_name)))
    with ctx:
        assert isinstance(ctx, gtom.OpCtx)
        for n in range(5):
            for k, client in enumerate(shard_clients):
                client[db_name].items.insert_one({"_id": k * 100 + n, "shard": k})
        ops = collect(ctx, 15)
        assert_quiet(ctx, 0.3)

    assert by_shard(ops) == {k: [k * 100 + n for n in range(5)] for k in range(3)}
    assert all(
        op.is_insert() and op.data is not None and op.data["shard"] == op.id // 100 for op in ops
    )
    assert all(op.shard == str(op.id // 100) for op in ops)  # list index, as a string


def test_pause_resume_and_since_act_on_every_shard(clients: Clients, db_name: str) -> None:
    shard_clients = [clients.shard(i) for i in range(3)]
    ctx = gtom.start_multi(shard_clients, gtom.Options(namespace_filter=in_db(db_name)))
    with ctx:
        ctx.pause()
        for k, client in enumerate(shard_clients):
            client[db_name].items.insert_one({"_id": k * 100})
        assert_quiet(ctx, 0.5)
        ctx.resume()
        first = collect(ctx, 3)
        assert sorted(op.id for op in first) == [0, 100, 200]

        earliest = min(op.timestamp for op in first if op.timestamp is not None)
        ctx.since(Timestamp(earliest.time, earliest.inc - 1))  # each shard: back before its write
        again = collect(ctx, 3)
        assert sorted(op.id for op in again) == [0, 100, 200]
    assert gtom_workers() == []


def test_a_shard_added_later_is_tailed_from_the_moment_it_was_added(
    cluster: Cluster, config: Any, clients: Clients, db_name: str
) -> None:
    first_two = [clients.shard(0), clients.shard(1)]
    added: list[gtom.ShardInfo] = []

    def handler(info: gtom.ShardInfo) -> Any:
        added.append(info)
        return clients.open(info.get_url())

    ctx = gtom.start_multi(first_two, gtom.Options(namespace_filter=in_db(db_name)))
    with ctx:
        ctx.add_shard_listener(config, None, handler)
        new_shard = clients.shard(2)  # the test's own client of the shard being added
        config.config.shards.insert_one(
            {"_id": "shard-new", "host": cluster.host(cluster.shards[2])}
        )
        # Written at once, before the listener can have seen the new shard: not lost.
        new_shard[db_name].items.insert_one({"_id": 200})
        first_two[0][db_name].items.insert_one({"_id": 0})
        ops = collect(ctx, 2)
        wait_until(lambda: len(added) == 1)
        new_shard[db_name].items.insert_one({"_id": 201})
        ops += collect(ctx, 1)
        assert_quiet(ctx, 0.3)

    assert [info.id for info in added] == ["shard-new"]
    assert by_shard(ops) == {0: [0], 2: [200, 201]}
    assert [op.shard for op in ops if op.id >= 200] == ["shard-new", "shard-new"]
    assert gtom_workers() == []


def test_a_failing_shard_handler_reports_on_err_c_and_the_rest_keeps_running(
    cluster: Cluster, config: Any, clients: Clients, db_name: str
) -> None:
    def handler(info: gtom.ShardInfo) -> Any:
        if info.id == "refused":
            raise RuntimeError("no credentials for this shard")
        return clients.open(info.get_url())

    ctx = gtom.start_multi([clients.shard(0)], gtom.Options(namespace_filter=in_db(db_name)))
    with ctx:
        ctx.add_shard_listener(config, None, handler)
        config.config.shards.insert_one({"_id": "refused", "host": cluster.host(cluster.shards[1])})
        error = ctx.err_c.get(timeout=10)
        assert isinstance(error, gtom.CallbackError)
        assert "no credentials for this shard" in str(error)

        config.config.shards.insert_one(
            {"_id": "accepted", "host": cluster.host(cluster.shards[2])}
        )
        new_shard = clients.shard(2)
        new_shard[db_name].items.insert_one({"_id": 200})
        clients.shard(0)[db_name].items.insert_one({"_id": 1})
        ops = collect(ctx, 2)
    assert by_shard(ops) == {0: [1], 2: [200]}


def test_copy_only_multi_context_ends_once_every_shard_is_copied(
    clients: Clients, db_name: str
) -> None:
    shard_clients = [clients.shard(i) for i in range(3)]
    for k, client in enumerate(shard_clients):
        client[db_name].items.insert_many([{"_id": k * 100 + n} for n in range(4)])
    ctx = gtom.start_multi(
        shard_clients, gtom.Options(oplog_disabled=True, direct_read_ns=[f"{db_name}.items"])
    )
    with ctx:
        ops = [op for op in ctx]  # ends by itself
        assert ctx.wait_for_direct_reads(5)
        progress = ctx.direct_read_progress()[f"{db_name}.items"]
    assert by_shard(ops) == {k: [k * 100 + n for n in range(4)] for k in range(3)}
    assert progress.read == 12 and progress.done


@PYMONGO_ASYNC_SOCKET_LEAK
def test_an_unreachable_shard_is_a_clear_error_and_nothing_keeps_running(
    clients: Clients, free_port: int
) -> None:
    unreachable = clients.open(f"mongodb://127.0.0.1:{free_port}/", serverSelectionTimeoutMS=300)
    with pytest.raises(gtom.ServerUnavailableError) as info:
        gtom.start_multi([clients.shard(0), unreachable])
    assert str(info.value).startswith(f"shard 2 of 2 (127.0.0.1:{free_port}): cannot reach")
    assert gtom_workers() == []


def test_change_streams_are_refused_with_the_way_to_follow_them(clients: Clients) -> None:
    with pytest.raises(gtom.ConfigurationError, match="through mongos"):
        gtom.start_multi([clients.shard(0)], gtom.Options(change_stream_ns=["a.b"]))
    with pytest.raises(gtom.ConfigurationError, match="a list of"):
        gtom.start_multi(clients.shard(0))


def test_ops_queued_before_stop_can_still_be_iterated(clients: Clients, db_name: str) -> None:
    shard = clients.shard(0)
    ctx = gtom.start_multi([shard], gtom.Options(namespace_filter=in_db(db_name)))
    shard[db_name].items.insert_many([{"_id": i} for i in range(3)])
    wait_until(lambda: ctx.op_c.qsize() >= 3)
    ctx.stop()
    assert [op.id for op in ctx] == [0, 1, 2]


def test_a_shard_added_before_the_listener_started_is_not_missed(
    cluster: Cluster, config: Any, clients: Clients, db_name: str
) -> None:
    before = gtom.last_op_timestamp(config)  # read before get_shards, as the docs say
    config.config.shards.insert_one({"_id": "early", "host": cluster.host(cluster.shards[2])})
    config.config.shards.insert_one({"_id": "0", "host": cluster.host(cluster.shards[0])})
    added: list[Any] = []

    def handler(info: gtom.ShardInfo) -> Any:
        added.append(info.id)
        return clients.open(info.get_url())

    ctx = gtom.start_multi({"0": clients.shard(0)}, gtom.Options(namespace_filter=in_db(db_name)))
    with ctx:
        ctx.add_shard_listener(config, None, handler, after=before)
        wait_until(lambda: added == ["early"])  # "0" is followed already
        clients.shard(2)[db_name].items.insert_one({"_id": 200})
        (op,) = collect(ctx, 1)
    assert (op.id, op.shard) == (200, "early")


def test_misuse_is_a_clear_error(clients: Clients, config: Any, db_name: str) -> None:
    with pytest.raises(gtom.ConfigurationError, match="at least one shard"):
        gtom.start_multi([])
    clients.shard(0)[db_name].items.insert_one({"_id": 1})
    copy_only = gtom.Options(oplog_disabled=True, direct_read_ns=[f"{db_name}.items"])
    ctx = gtom.start_multi([clients.shard(0)], copy_only)
    with ctx:
        with pytest.raises(gtom.ConfigurationError, match="needs a context that tails"):
            ctx.add_shard_listener(config, None, lambda info: clients.open(info.get_url()))
    assert gtom_workers() == []
