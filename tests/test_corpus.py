"""The decoders on a corpus of real mongod output (tests/fixtures/corpus), and mutation-fuzzed.

Every entry there was written by a real MongoDB server (2.6 to 8.0), or is asserted by mongod's
own tests, and says where it comes from. Each must decode as MongoDB means (checked against
what the source itself asserts, and against the rules below), or raise `gtom.DecodeError`:
never another exception. Then each entry is mutated (fields dropped, given the wrong type,
nested) and must still give ops or a `DecodeError`, nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bson
import pytest
from bson import Int64, Timestamp, json_util
from bson.raw_bson import RawBSONDocument
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gtom
from gtom._namespaces import is_internal
from gtom._update_diff import diff_to_update_description

CORPUS = Path(__file__).parent / "fixtures" / "corpus"
#: The wrapper fields this test puts around entries the sources give only in part (mongod's
#: unit tests build entries from op/o/o2 alone): not server output, only what the decoder needs.
SYNTHETIC_TS = Timestamp(1700000000, 1)


def load(kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, json_util.loads(path.read_text()))
        for path in sorted((CORPUS / kind).glob("*.json"))
    ]


OPLOG = load("oplog")
EVENTS = load("change_events")
ALL = OPLOG + EVENTS


def by_kind(entry_kind: str | None) -> list[Any]:
    return [
        pytest.param(data, id=name) for name, data in OPLOG if data.get("entry_kind") == entry_kind
    ]


def expected(data: dict[str, Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    for item in data.get("expected") or []:
        yield int(item["index"]), item


def three_keys(description: dict[str, Any]) -> dict[str, Any]:
    """An update description as gtom gives it: all three keys, and disambiguatedPaths if any."""
    out = {
        "updatedFields": description.get("updatedFields", {}),
        "removedFields": description.get("removedFields", []),
        "truncatedArrays": description.get("truncatedArrays", []),
    }
    if "disambiguatedPaths" in description:
        out["disambiguatedPaths"] = description["disambiguatedPaths"]
    return out


# -- the corpus itself -----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "data"), ALL, ids=[name for name, _ in ALL])
def test_every_corpus_file_says_where_it_comes_from(name: str, data: dict[str, Any]) -> None:
    provenance = data["provenance"]
    assert provenance.get("url") or (provenance.get("repository") and provenance.get("path"))
    assert provenance.get("kind") and provenance.get("mongodb_version") and provenance.get("notes")
    assert data["entries"], name


def test_the_corpus_is_broad() -> None:
    sources = {data["provenance"].get("repository") or data["provenance"]["url"] for _, data in ALL}
    assert sum(len(data["entries"]) for _, data in ALL) >= 200
    assert len(ALL) >= 25 and len(sources) >= 7


# -- whole oplog entries ---------------------------------------------------------------------


def decode_file(entries: list[Any], **options: Any) -> list[list[gtom.Op] | gtom.DecodeError]:
    """Each entry's ops (or its DecodeError), decoding the file in order with one decoder."""
    decoder = gtom.OplogDecoder(**options)
    out: list[list[gtom.Op] | gtom.DecodeError] = []
    for entry in entries:
        try:
            out.append(decoder.decode(entry))
        except gtom.DecodeError as e:
            out.append(e)
    return out


def document_id(entry: dict[str, Any]) -> Any:
    if entry["op"] == "u":
        return entry["o2"]["_id"]
    return entry["o"]["_id"] if "_id" in entry["o"] else entry["o2"]["_id"]


def expected_writes(entry: dict[str, Any], include_internal: bool) -> list[tuple[str, str, Any]]:
    """(operation, namespace, id) of the ops a CRUD entry or an applyOps of them means."""
    writes = entry["o"]["applyOps"] if entry["op"] == "c" else [entry]
    return [
        (w["op"], w["ns"], document_id(w))
        for w in writes
        if w["op"] in ("i", "u", "d") and (include_internal or not is_internal(w["ns"]))
    ]


@pytest.mark.parametrize("include_internal", [False, True], ids=["default", "include_internal"])
@pytest.mark.parametrize("data", by_kind(None))
def test_real_oplog_entries_decode_as_mongodb_means(
    data: dict[str, Any], include_internal: bool
) -> None:
    entries = data["entries"]
    results = decode_file(entries, include_internal=include_internal)
    for entry, result in zip(entries, results, strict=True):
        assert not isinstance(result, gtom.DecodeError), (entry, result)
        kind, body = entry["op"], entry["o"]
        if kind == "n":
            assert result == []
        elif kind in ("i", "u", "d") or "applyOps" in body:
            got = [(op.operation, op.namespace, op.id) for op in result]
            assert got == expected_writes(entry, include_internal), entry
            for op in result:
                assert op.timestamp == entry["ts"] and op.source is gtom.Source.OPLOG
                assert op.txn is None  # retryable writes and vectored inserts: no transaction
        else:  # DDL: at most one op, naming the collection acted on, with the command as data
            assert len(result) <= 1
            for op in result:
                name = next(iter(body))
                assert op.is_command() and op.data == body
                assert op.namespace.startswith(entry["ns"].partition(".")[0] + ".")
                if isinstance(body[name], str) and name != "renameCollection":
                    assert op.namespace.endswith("." + body[name])
    for index, item in expected(data):
        if "documents_inserted" in item:
            result = results[index]
            assert isinstance(result, list)
            assert [op.id for op in result] == item["documents_inserted"]


def test_index_build_bookkeeping_gives_no_op_and_its_commit_one() -> None:
    data = dict(OPLOG)["mongo-tools-ddl-4.4.json"]
    results = decode_file(data["entries"])
    for entry, result in zip(data["entries"], results, strict=True):
        name = next(iter(entry["o"]), "")
        if name == "startIndexBuild":
            assert result == []
        if name == "commitIndexBuild":
            assert isinstance(result, list) and len(result) == 1


def test_internal_namespaces_are_skipped_unless_asked_for() -> None:
    entries = dict(OPLOG)["mongo-tools-oplog-partial-skips-4.2.json"]["entries"]
    default = [op for ops in decode_file(entries) if isinstance(ops, list) for op in ops]
    everything = [
        op
        for ops in decode_file(entries, include_internal=True)
        if isinstance(ops, list)
        for op in ops
    ]
    assert {op.namespace for op in default} == {"db3.c1"}
    assert {op.namespace for op in everything} >= {
        "config.cache.test",
        "config.system.sessions",
        "config.transactions.test",
        "db3.c1",
    }


# -- entries the sources give in part, and bare diffs ----------------------------------------


def whole(partial: dict[str, Any]) -> dict[str, Any]:
    return {"ns": "test.coll", "ts": SYNTHETIC_TS, "t": 1, "v": 2, **partial}


@pytest.mark.parametrize(
    "data", [p for p in by_kind("partial-oplog-entry") if str(p.id).startswith("mongod-")]
)
def test_mongod_change_stream_transform_cases_give_mongods_update_description(
    data: dict[str, Any],
) -> None:
    checked = 0
    cases = [(index, item) for index, item in expected(data) if "update_description" in item]
    for index, item in cases:
        description = item["update_description"]
        decoder = gtom.OplogDecoder(disambiguate="disambiguatedPaths" in description)
        entry = whole(data["entries"][index])
        if "_id" not in item["documentKey"]:
            # A legacy o2 without _id: mongod keys the event by the whole o2; gtom needs an _id
            # (to fetch the document and name the op), so it says it cannot decode the entry.
            with pytest.raises(gtom.DecodeError):
                decoder.decode(entry)
            continue
        (op,) = decoder.decode(entry)
        assert op.id == item["documentKey"]["_id"]
        assert op.update_description == three_keys(description), item["test"]
        checked += 1
    assert checked >= len(cases) - 1


def test_a_commit_without_its_prepared_entries_is_a_decode_error_not_a_crash() -> None:
    for entry in dict(OPLOG)["pbm-pr-633-distributed-commit.json"]["entries"]:
        with pytest.raises(gtom.DecodeError):
            gtom.OplogDecoder().decode({"op": "c", "ns": "admin.$cmd", **entry})


@pytest.mark.parametrize("data", by_kind("diff"))
def test_diffs_give_what_mongods_diff_parser_gives(data: dict[str, Any]) -> None:
    for index, entry in enumerate(data["entries"]):
        got = diff_to_update_description(entry["diff"], disambiguate=True)
        items = [item for i, item in expected(data) if i == index]
        for item in items:
            if "update_description" in item:
                want = three_keys(item["update_description"])
                if "updatedFields_pairs" in item:
                    # mongod's Document can hold "a.b" twice (a dotted field, and a.b nested);
                    # a dict holds the last: a limit of naming fields by dotted paths.
                    want["updatedFields"] = dict(item["updatedFields_pairs"])
                assert got == want, item.get("test")
        # A "b" (binary) section: each field's {o: offset, d: bytes} object is its new value.
        for field, value in entry["diff"].get("b", {}).items():
            assert got["updatedFields"][field] == value
        sdata = entry["diff"].get("sdata", {})
        for field, value in sdata.get("b", {}).items():
            assert got["updatedFields"][f"data.{field}"] == value


def test_a_compressed_bucket_update_is_reported_as_mongod_80_reports_it() -> None:
    # The change event a real 8.0 server sent for a compressed bucket update (jstest assertion)
    # and the diff mongod computes for one (unit test): the same shape of update description.
    events = dict(EVENTS)["mongo-jstests-timeseries-change-events.json"]
    (event_ud,) = [item["update_description"] for i, item in expected(events) if i == 14]
    (diff,) = dict(OPLOG)["mongod-timeseries-compressed-diff-tests.json"]["entries"]
    got = diff_to_update_description(diff["diff"])
    for description in (event_ud, got):
        columns = {k: v for k, v in description["updatedFields"].items() if k.startswith("data.")}
        assert columns and all(set(v) == {"o", "d"} for v in columns.values())
        assert "control.count" in description["updatedFields"]


# -- change events ---------------------------------------------------------------------------


def complete(event: dict[str, Any]) -> dict[str, Any]:
    """The jstests compare events without their resume token (and some without documentKey):
    put placeholders back, since a decoder needs both."""
    event = {"_id": {"_data": "00"}, **event}
    if event["operationType"] in ("insert", "update", "replace", "delete"):
        full = event.get("fullDocument") or {}
        event.setdefault("documentKey", {"_id": full.get("_id", "projected away")})
    return event


OPERATIONS = {"insert": "i", "update": "u", "replace": "u", "delete": "d"}


@pytest.mark.parametrize(("name", "data"), EVENTS, ids=[name for name, _ in EVENTS])
def test_real_change_events_decode_as_mongodb_means(name: str, data: dict[str, Any]) -> None:
    decoder = gtom.ChangeDecoder("stream")
    ops = [decoder.decode(complete(event)) for event in data["entries"]]
    for event, op in zip(data["entries"], ops, strict=True):
        kind = event["operationType"]
        if kind == "invalidate":
            assert op is None
            continue
        assert op is not None and op.stream_id == "stream"
        ns = event["ns"]
        assert op.namespace == f"{ns['db']}.{ns['coll']}" if ns.get("coll") else f"{ns['db']}.$cmd"
        if kind in OPERATIONS:
            assert op.operation == OPERATIONS[kind]
            if "fullDocument" in event and event["fullDocument"] is not None:
                assert op.data == event["fullDocument"]
        else:
            assert op.is_command()
        if kind == "update":
            assert op.update_description == three_keys(event["updateDescription"])
            assert set(op.update_description) >= {
                "updatedFields",
                "removedFields",
                "truncatedArrays",
            }
    for index, item in expected(data):
        if "update_description" in item:
            op = ops[index]
            assert op is not None and op.update_description == three_keys(
                item["update_description"]
            )
        if "documents_inserted" in item:
            inserted = [op.id for op in ops if op is not None and op.is_insert()]
            assert inserted == item["documents_inserted"]


def test_a_pre_5_0_update_event_gets_truncated_arrays() -> None:
    # 2017 (3.6 development) output, compared whole by its jstest: no truncatedArrays key.
    data = dict(EVENTS)["mongo-jstests-change-stream-3.6-dev.json"]
    (index, item), *_ = [(i, x) for i, x in expected(data) if "update_description" in x]
    assert "truncatedArrays" not in item["update_description"]
    op = gtom.ChangeDecoder("s").decode(complete(data["entries"][index]))
    assert op is not None and op.update_description is not None
    assert op.update_description["truncatedArrays"] == []
    assert op.update_description["updatedFields"] == item["update_description"]["updatedFields"]


# -- mutations -------------------------------------------------------------------------------

#: Values of the wrong type (for most fields), put where a field was.
WRONG: list[Any] = [
    None,
    0,
    -1,
    Int64(2**62),
    "x",
    "",
    [],
    {},
    True,
    1.5,
    math.nan,
    Timestamp(0, 0),
    b"\x00",
]


def paths(value: Any, depth: int = 5, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into ``value`` (dict keys and list indexes), up to ``depth`` deep."""
    if depth == 0 or not isinstance(value, (dict, list)):
        return
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in items:
        yield (*at, key)
        yield from paths(child, depth - 1, (*at, key))


def mutated(value: Any, path: tuple[Any, ...], change: Any) -> Any:
    """A copy of ``value`` with the element at ``path`` changed by ``change(old) -> new``
    (``change`` returning `DROP` removes it); only the containers along the path are copied."""
    head, rest = path[0], path[1:]
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    if rest:
        copy[head] = mutated(value[head], rest, change)
        return copy
    new = change(value[head])
    if new is DROP:
        del copy[head]
    else:
        copy[head] = new
    return copy


DROP = object()


def replaced_by(wrong: Any) -> Any:
    return lambda old: wrong


CHANGES = [lambda old: DROP, lambda old: {"x": old}, lambda old: [old]] + [
    replaced_by(wrong) for wrong in WRONG
]


def decode_one(entry: Any, *, event: bool) -> None:
    """Decode ``entry``; only a DecodeError (or, for a chain, IncompleteChainError) may escape."""
    try:
        if event:
            gtom.ChangeDecoder("s").decode(entry)
        else:
            gtom.OplogDecoder(include_internal=True, disambiguate=True).decode(entry)
    except (gtom.DecodeError, gtom.IncompleteChainError):
        pass


def fuzz_inputs() -> list[tuple[Any, bool]]:
    inputs: list[tuple[Any, bool]] = []
    for _, data in OPLOG:
        if data.get("entry_kind") == "diff":
            inputs += [
                (whole({"op": "u", "o": {"$v": 2, **e}, "o2": {"_id": 1}}), False)
                for e in data["entries"]
            ]
        elif data.get("entry_kind") == "partial-oplog-entry":
            inputs += [
                (whole({"op": "c", "ns": "admin.$cmd", **e}), False) for e in data["entries"]
            ]
        else:
            inputs += [(e, False) for e in data["entries"]]
    for _, data in EVENTS:
        inputs += [(complete(e), True) for e in data["entries"]]
    return inputs


FUZZ = fuzz_inputs()


def test_every_mutation_of_every_entry_decodes_or_raises_decode_error() -> None:
    tried = 0
    for entry, event in FUZZ:
        for path in paths(entry):
            for change in CHANGES:
                decode_one(mutated(entry, path, change), event=event)
                tried += 1
    assert tried > 50_000


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutations_as_raw_bson_decode_or_raise_decode_error(data: st.DataObject) -> None:
    entry, event = data.draw(st.sampled_from(FUZZ))
    for _ in range(data.draw(st.integers(1, 3))):
        choices = list(paths(entry))
        if not choices:
            break
        path = data.draw(st.sampled_from(choices))
        entry = mutated(entry, path, data.draw(st.sampled_from(CHANGES)))
    try:
        raw = RawBSONDocument(bson.encode(entry))
    except (bson.InvalidDocument, OverflowError, ValueError):
        return  # not encodable (e.g. a non-string key): no server could send it
    decode_one(raw, event=event)


# -- the documented example ------------------------------------------------------------------


def test_the_decoding_example_of_docs_oplog_runs_and_completes_a_chain_begun_earlier() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "oplog.md").read_text()
    section = doc.split("## Decoding without a server", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    cases = json_util.loads(
        (Path(__file__).parent / "fixtures/oplog/transactions.json").read_text()
    )
    (case,) = [c for c in cases["cases"] if c["name"] == "txn_multi_entry_chain_unprepared_v60"]
    chain, commit = case["entries"][:-1], case["entries"][-1]

    class Oplog:  # the example's oplog collection: where the missing chain entries are
        def find_one(self, query: dict[str, Any]) -> Any:
            return next(e for e in chain if e["ts"] == query["ts"])

    printed: list[str] = []
    namespace = {
        "entries": [commit],
        "oplog": Oplog(),
        "print": lambda *a: printed.append(" ".join(map(str, a))),
    }
    exec(compile(example, "docs/oplog.md", "exec"), namespace)
    assert len(printed) == len(case["expected_ops"]) == 4
