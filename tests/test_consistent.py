"""Consistent-hash workers: shares, stability, movement when a worker joins, and bad input."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from bson import Int64, ObjectId, Timestamp

import gtom
from gtom.consistent import (
    ConsistentHashRing,
    consistent_hash_filter,
    consistent_hash_filter_from_document,
    consistent_hash_filter_from_file,
)

WORKERS = ["Tom", "Dick", "Harry"]


def ops(ids: list[Any], operation: str = "u") -> list[gtom.Op]:
    return [
        gtom.Op(id=i, operation=operation, namespace="db.c", timestamp=Timestamp(1, 1)) for i in ids
    ]


def object_ids(n: int) -> list[ObjectId]:
    # Deterministic, shaped like real ones: a timestamp prefix, then a counter.
    return [ObjectId(f"{1_700_000_000 + i // 100:08x}{0xABCDEF:010x}{i:06x}") for i in range(n)]


@pytest.mark.parametrize(
    "ids",
    [object_ids(10_000), list(range(10_000)), [f"user-{i}" for i in range(10_000)]],
    ids=["ObjectId", "int", "str"],
)
def test_three_workers_share_10000_ops_disjointly_completely_and_evenly(ids: list[Any]) -> None:
    filters = {name: consistent_hash_filter(name, WORKERS) for name in WORKERS}
    takers: collections.Counter[str] = collections.Counter()
    for op in ops(ids):
        owners = [name for name, keep in filters.items() if keep(op)]
        assert len(owners) == 1, f"{op.id!r} went to {owners}"
        takers[owners[0]] += 1
    for name in WORKERS:
        assert abs(takers[name] - len(ids) / 3) <= 0.15 * len(ids) / 3, takers


def test_a_fourth_worker_moves_at_most_35_percent_of_the_keys_and_only_to_itself() -> None:
    three = ConsistentHashRing(WORKERS)
    four = ConsistentHashRing([*WORKERS, "Sally"])
    ids = object_ids(10_000)
    moved = [i for i in ids if three.owner_of(i) != four.owner_of(i)]
    assert len(moved) <= 0.35 * len(ids)
    assert {four.owner_of(i) for i in moved} == {"Sally"}


def test_ops_without_an_id_go_to_every_worker() -> None:
    drop = gtom.Op(id=None, operation="c", namespace="db.$cmd", data={"drop": "c"})
    assert all(consistent_hash_filter(name, WORKERS)(drop) for name in WORKERS)


def test_every_change_of_a_document_goes_to_the_same_worker() -> None:
    keep = consistent_hash_filter("Dick", WORKERS)
    for i in object_ids(200):
        decisions = {keep(op) for op in ops([i], "i") + ops([i], "u") + ops([i], "d")}
        assert len(decisions) == 1


GOLDEN = [  # owners fixed forever: workers of different versions must agree during an upgrade
    (1, "Tom"),
    (Int64(1), "Dick"),  # a BSON int64 is another _id than an int32 1 (so it may hash apart)
    ("a", "Tom"),
    (ObjectId("5f0000000000000000000001"), "Dick"),
    (uuid.UUID(int=7), "Harry"),
    ({"a": 1}, "Dick"),
    (2.5, "Dick"),
]


def test_owners_are_fixed_values_not_python_s_per_process_hash() -> None:
    ring = ConsistentHashRing(WORKERS)
    assert [(key, ring.owner_of(key)) for key, _ in GOLDEN] == GOLDEN


def test_owners_are_the_same_in_another_process_with_another_hash_seed() -> None:
    ids = [f"k{i}" for i in range(300)]
    ring = ConsistentHashRing(WORKERS)
    script = (
        "from gtom.consistent import ConsistentHashRing\n"
        f"r = ConsistentHashRing({WORKERS!r})\n"
        f"print(','.join(r.owner_of(k) for k in {ids!r}))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().split(",") == [ring.owner_of(k) for k in ids]


def test_from_file_reads_the_workers_list(tmp_path: Path) -> None:
    path = tmp_path / "workers.toml"
    path.write_text('Workers = [ "Tom", "Dick", "Harry" ]\n')
    keep = consistent_hash_filter_from_file("Harry", path)
    same = consistent_hash_filter("Harry", WORKERS)
    assert [keep(op) for op in ops(object_ids(100))] == [same(op) for op in ops(object_ids(100))]


def test_from_document_accepts_a_document_read_back_from_mongodb() -> None:
    keep = consistent_hash_filter_from_document(
        "Tom", {"_id": ObjectId(), "Workers": WORKERS, "updated": "yesterday"}
    )
    assert sum(keep(op) for op in ops(list(range(300)))) > 0


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({}, 'has no "Workers" list'),
        ({"workers": WORKERS}, "its keys: 'workers'"),
        ({"Workers": []}, "Workers is empty"),
        ({"Workers": "Tom"}, "must be a list of worker names"),
        ({"Workers": ["Tom", 3]}, "non-empty strings"),
        ({"Workers": ["Tom", " "]}, "non-empty strings"),
        ({"Workers": ["Tom", "Tom"]}, "names worker 'Tom' twice"),
        (["Tom"], "must be a mapping"),
    ],
)
def test_a_malformed_list_is_a_clear_error(document: Any, message: str) -> None:
    with pytest.raises(gtom.ConfigurationError, match=message):
        consistent_hash_filter_from_document("Tom", document)


def test_an_unknown_worker_name_is_a_clear_error() -> None:
    with pytest.raises(gtom.ConfigurationError, match=r"worker 'Sally' is not one of the workers"):
        consistent_hash_filter("Sally", WORKERS)


def test_malformed_toml_and_a_missing_file_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("Workers = [ 'Tom', \n")
    with pytest.raises(gtom.ConfigurationError, match=r"bad.toml' is not valid TOML"):
        consistent_hash_filter_from_file("Tom", bad)
    with pytest.raises(gtom.ConfigurationError, match="cannot read the workers file"):
        consistent_hash_filter_from_file("Tom", tmp_path / "missing.toml")
    empty = tmp_path / "empty.toml"
    empty.write_text("Workers = []\n")
    with pytest.raises(gtom.ConfigurationError, match=r"empty.toml': Workers is empty"):
        consistent_hash_filter_from_file("Tom", empty)
