"""The oplog decoder on fixtures of real mongod entries (tests/fixtures/oplog), and fuzzed."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import bson
import pytest
from bson import Timestamp, json_util
from bson.raw_bson import RawBSONDocument
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gtom import DecodeError, Op, Source
from gtom._decode_oplog import OplogDecoder
from gtom._errors import IncompleteChainError
from gtom._update_diff import diff_to_update_description

FIXTURES = Path(__file__).parent / "fixtures" / "oplog"


def load_cases() -> list[Any]:
    return [
        pytest.param(case, id=f"{path.stem}:{case['name']}")
        for path in sorted(FIXTURES.glob("*.json"))
        for case in json_util.loads(path.read_text())["cases"]
    ]


CASES = load_cases()


def as_expected(op: Op) -> dict[str, Any]:
    txn = None
    if op.txn is not None:
        txn = {"lsid": op.txn.lsid, "txn_number": op.txn.txn_number, "index": op.txn.index}
    return {
        "operation": op.operation,
        "namespace": op.namespace,
        "id": op.id,
        "data": op.data,
        "update_description": op.update_description,
        "txn": txn,
        "timestamp": op.timestamp,
    }


def decode_all(entries: list[Any], *, raw: bool) -> list[Op]:
    decoder = OplogDecoder()
    ops: list[Op] = []
    for entry in entries:
        ops += decoder.decode(RawBSONDocument(bson.encode(entry)) if raw else entry)
    return ops


@pytest.mark.parametrize("raw", [False, True], ids=["dict", "raw-bson"])
@pytest.mark.parametrize("case", CASES)
def test_fixture_decodes_to_the_expected_ops(case: dict[str, Any], raw: bool) -> None:
    if "expect_error" in case:
        with pytest.raises(DecodeError):
            decode_all(case["entries"], raw=raw)
        return
    ops = decode_all(case["entries"], raw=raw)
    assert [as_expected(op) for op in ops] == case["expected_ops"], case["source"]
    assert all(op.source is Source.OPLOG for op in ops)


def test_every_fixture_says_where_its_shape_comes_from() -> None:
    for param in CASES:
        (case,) = param.values
        assert case["source"].strip(), case["name"]


def _chain_cases() -> list[Any]:
    chosen = []
    for param in CASES:
        (case,) = param.values
        links = [e for e in case["entries"] if _prev_ts(e) is not None]
        if case.get("expected_ops") and links:
            chosen.append(param)
    return chosen


def _prev_ts(entry: dict[str, Any]) -> Any:
    prev = entry.get("prevOpTime")
    if not isinstance(prev, dict) or prev.get("ts") in (None, bson.Timestamp(0, 0)):
        return None
    return prev["ts"]


@pytest.mark.parametrize("case", _chain_cases())
def test_a_commit_seen_without_its_chain_asks_for_each_missing_entry(case: dict[str, Any]) -> None:
    """Tailing that starts between a transaction's first entry and its commit still delivers it."""
    entries = case["entries"]
    by_ts = {e["ts"]: e for e in entries}
    expected = case["expected_ops"]
    decoder = OplogDecoder()
    ops: list[Op] = []
    fetched = 0
    # Skip every entry the commit links back to, as if tailing started right before the commit.
    linked = {_prev_ts(e) for e in entries} - {None}
    for entry in entries:
        if entry["ts"] in linked:
            continue
        while True:
            try:
                ops += decoder.decode(entry)
                break
            except IncompleteChainError as missing:
                decoder.remember(by_ts[missing.ts])
                fetched += 1
    txn_ops = [op for op in ops if op.txn is not None]
    assert [as_expected(op) for op in txn_ops] == [e for e in expected if e["txn"] is not None]
    assert decoder.held_entries == 0


def test_partial_transaction_entries_are_held_until_their_commit() -> None:
    (case,) = [
        p.values[0] for p in CASES if p.values[0]["name"] == "txn_multi_entry_chain_unprepared_v60"
    ]
    decoder = OplogDecoder()
    *partials, commit = case["entries"]
    for entry in partials:
        assert decoder.decode(entry) == []
    assert decoder.held_entries == len(partials)
    assert len(decoder.decode(commit)) == len(case["expected_ops"])
    assert decoder.held_entries == 0


def test_namespace_filter_runs_before_the_document_is_decoded() -> None:
    seen: list[tuple[str, str, Any]] = []

    def keep(op: Op) -> bool:
        seen.append((op.operation, op.namespace, op.data))
        return op.namespace == "db.keep"

    decoder = OplogDecoder(namespace_filter=keep)
    ts = bson.Timestamp(1, 1)
    ops = decoder.decode({"op": "i", "ns": "db.skip", "o": {"_id": 1}, "ts": ts})
    ops += decoder.decode({"op": "i", "ns": "db.keep", "o": {"_id": 2}, "ts": ts})
    assert [op.id for op in ops] == [2]
    assert seen == [("i", "db.skip", None), ("i", "db.keep", None)]


def test_change_event_shaped_diff_passes_through() -> None:
    diff = {"updatedFields": {"a": 1}, "removedFields": ["b"], "truncatedArrays": []}
    assert diff_to_update_description(diff) == {
        "updatedFields": {"a": 1},
        "removedFields": ["b"],
        "truncatedArrays": [],
    }


# -- fuzzing: any document gives ops or a DecodeError, never another exception -----------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.sampled_from([bson.Timestamp(1, 1), bson.Timestamp(0, 0), bson.ObjectId()]),
)
_keys = st.one_of(
    st.sampled_from(
        [
            "op",
            "ns",
            "o",
            "o2",
            "ts",
            "u",
            "i",
            "d",
            "a",
            "l",
            "u0",
            "s0",
            "sa",
            "diff",
            "$v",
            "$set",
            "$unset",
            "applyOps",
            "partialTxn",
            "prepare",
            "commitTransaction",
            "abortTransaction",
            "prevOpTime",
            "lsid",
            "txnNumber",
            "drop",
            "create",
            "_id",
            "renameCollection",
            "to",
            "dropDatabase",
            "updatedFields",
            "removedFields",
        ]
    ),
    st.text(max_size=6),
)
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(_keys, children, max_size=5)
    ),
    max_leaves=25,
)
_entries = st.fixed_dictionaries(
    {},
    optional={
        "op": st.one_of(st.sampled_from(["i", "u", "d", "c", "n", "x"]), _scalars),
        "ns": st.one_of(st.sampled_from(["db.c", "db.$cmd", "admin.$cmd", ""]), _scalars),
        "ts": st.one_of(st.just(bson.Timestamp(5, 1)), _scalars),
        "o": _values,
        "o2": _values,
        "prevOpTime": _values,
        "lsid": _values,
        "txnNumber": _values,
    },
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_entries, min_size=1, max_size=4))
def test_fuzzed_entries_give_ops_or_a_decode_error(entries: list[dict[str, Any]]) -> None:
    decoder = OplogDecoder()
    for entry in entries:
        try:
            ops = decoder.decode(entry)
        except DecodeError:
            continue
        except IncompleteChainError:
            continue  # a request for an earlier entry, which the tailer fetches
        assert all(isinstance(op, Op) for op in ops)


@settings(max_examples=200, deadline=None)
@given(_entries)
def test_fuzzed_raw_bson_entries_give_ops_or_a_decode_error(entry: dict[str, Any]) -> None:
    try:
        raw = RawBSONDocument(bson.encode(entry))
    except (bson.InvalidDocument, OverflowError):
        return
    with contextlib.suppress(DecodeError, IncompleteChainError):
        OplogDecoder().decode(raw)


@pytest.mark.parametrize("letter", ["xi", "xd", "ci", "cu"])
def test_internal_entries_of_newer_servers_give_no_op(letter: str) -> None:
    # Global-index key and container writes (internal bookkeeping, no user document).
    entry = {"op": letter, "ns": "db.c", "o": {"k": 1}, "ts": bson.Timestamp(3, 1)}
    assert OplogDecoder().decode(entry) == []


def test_a_replacement_without_id_is_a_decode_error() -> None:
    entry = {"op": "u", "ns": "db.c", "o": {"a": 1}, "o2": {"_id": 1}, "ts": bson.Timestamp(3, 1)}
    with pytest.raises(DecodeError, match="neither operators nor a replacement"):
        OplogDecoder().decode(entry)


def test_the_decoder_builds_ops_with_the_fields_in_the_order_it_passes_them() -> None:
    # OplogDecoder._write builds Op positionally (a third of the keyword call's cost).
    import dataclasses

    names = [f.name for f in dataclasses.fields(Op)][:12]
    assert names == [
        "operation", "namespace", "id", "data", "timestamp", "source", "update_description",
        "doc", "txn", "resume_token", "stream_id", "wall",
    ]  # fmt: skip


def test_a_namespace_is_checked_even_after_many_others_were_remembered() -> None:
    decoder = OplogDecoder()
    for i in range(10_010):
        assert decoder.decode({"op": "i", "ns": f"db.c{i}", "o": {"_id": i}, "ts": Timestamp(1, i)})
    assert (
        decoder.decode({"op": "i", "ns": "local.x", "o": {"_id": 1}, "ts": Timestamp(2, 1)}) == []
    )
    with pytest.raises(DecodeError, match="no valid namespace"):
        decoder.decode({"op": "i", "ns": "nodot", "o": {"_id": 1}, "ts": Timestamp(2, 2)})
    with pytest.raises(DecodeError):
        decoder.decode({"op": "i", "ns": {"a": 1}, "o": {"_id": 1}, "ts": Timestamp(2, 3)})
