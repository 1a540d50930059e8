"""`ShardInfo`: ``config.shards`` host strings into connection strings (pure)."""

from __future__ import annotations

from typing import Any

import pytest

import gtom
from gtom._shards import shards_from_documents


@pytest.mark.parametrize(
    ("host", "url", "replica_set", "hosts"),
    [
        (
            "rs0/h1:27017,h2:27018,h3:27019",
            "mongodb://h1:27017,h2:27018,h3:27019/?replicaSet=rs0",
            "rs0",
            ["h1:27017", "h2:27018", "h3:27019"],
        ),
        ("shardA/10.0.0.5:27018", "mongodb://10.0.0.5:27018/?replicaSet=shardA", "shardA", None),
        ("h1:27017", "mongodb://h1:27017/", None, ["h1:27017"]),
        (
            "rs1/[::1]:27017, [::1]:27018",
            "mongodb://[::1]:27017,[::1]:27018/?replicaSet=rs1",
            "rs1",
            None,
        ),
    ],
)
def test_get_url_names_every_host_and_the_replica_set(
    host: str, url: str, replica_set: str | None, hosts: list[str] | None
) -> None:
    info = gtom.ShardInfo.from_document({"_id": "s", "host": host})
    assert info.get_url() == url
    assert info.replica_set == replica_set
    if hosts is not None:
        assert info.hosts == hosts


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"_id": "s1"}, "'s1' has no usable 'host'"),
        ({"_id": "s1", "host": 7}, "'s1' has no usable 'host'"),
        ({"_id": "s1", "host": "/h:1"}, "'s1' has a malformed 'host'"),
        ({"_id": "s1", "host": "rs/"}, "'s1' has a malformed 'host'"),
    ],
)
def test_a_malformed_shard_document_names_the_shard(document: Any, message: str) -> None:
    with pytest.raises(gtom.ConfigurationError, match=message):
        shards_from_documents([document])


@pytest.mark.parametrize(
    ("like", "url"),
    [
        (
            "mongodb://u:p%40w@cfg:27019/admin?replicaSet=cfg&authSource=admin&connectTimeoutMS=900",
            "mongodb://u:p%40w@h1:1,h2:2/admin?authSource=admin&connectTimeoutMS=900&replicaSet=rs0",
        ),
        ("mongodb+srv://u:p@c.example.net/", "mongodb://u:p@h1:1,h2:2/?tls=true&replicaSet=rs0"),
        ("mongodb://cfg:1/?directConnection=true", "mongodb://h1:1,h2:2/?replicaSet=rs0"),
    ],
)
def test_get_url_like_another_keeps_its_credentials_and_options(like: str, url: str) -> None:
    assert gtom.ShardInfo("rs0/h1:1,h2:2").get_url(like=like) == url
