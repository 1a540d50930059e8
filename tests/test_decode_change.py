"""The change-event decoder on fixtures of real change events (tests/fixtures/change_events).

Each case is a stream: its events are decoded in order by one `ChangeDecoder` (the transaction
index is stream state), as plain dicts and as `RawBSONDocument` (what gtom reads off the wire).
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import bson
import pytest
from bson import json_util
from bson.raw_bson import RawBSONDocument
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gtom import CallbackError, DecodeError, Op, Source
from gtom._decode_change import ChangeDecoder, is_invalidate

FIXTURES = Path(__file__).parent / "fixtures" / "change_events"


def load_cases() -> list[Any]:
    return [
        pytest.param(case, id=f"{path.stem}:{case['name']}")
        for path in sorted(FIXTURES.glob("*.json"))
        for case in json_util.loads(path.read_text())["cases"]
    ]


def _case(param: Any) -> dict[str, Any]:
    return cast("dict[str, Any]", param.values[0])


CASES = load_cases()
VALID = [p for p in CASES if "expect_error" not in _case(p)]
MALFORMED = [p for p in CASES if "expect_error" in _case(p)]
RAW = pytest.mark.parametrize("raw", [False, True], ids=["dict", "raw-bson"])


def find_case(name: str) -> dict[str, Any]:
    (case,) = [_case(p) for p in CASES if _case(p)["name"] == name]
    return case


def as_input(event: Any, *, raw: bool) -> Any:
    """The event as a dict, or encoded as the `RawBSONDocument` a raw-BSON cursor yields."""
    if raw and isinstance(event, dict):
        return RawBSONDocument(bson.encode(event))
    return event


def _token(token: Mapping[str, Any] | None) -> Any:
    # The resume token is an opaque Mapping handed back to the server as is: a raw one is fine.
    if isinstance(token, RawBSONDocument):
        return bson.decode(token.raw)
    return token


def as_expected(op: Op) -> dict[str, Any]:
    txn = None
    if op.txn is not None:
        txn = {"lsid": op.txn.lsid, "txn_number": op.txn.txn_number, "index": op.txn.index}
    return {
        "operation": op.operation,
        "namespace": op.namespace,
        "id": op.id,
        "data": op.data,
        "before": op.before,
        "update_description": op.update_description,
        "txn": txn,
        "timestamp": op.timestamp,
        "resume_token": _token(op.resume_token),
        "wall": op.wall,
    }


def decode_all(decoder: ChangeDecoder, events: list[Any], *, raw: bool) -> list[Op]:
    ops = []
    for event in events:
        op = decoder.decode(as_input(event, raw=raw))
        if op is not None:
            ops.append(op)
    return ops


@RAW
@pytest.mark.parametrize("case", VALID)
def test_fixture_decodes_to_the_expected_ops(case: dict[str, Any], raw: bool) -> None:
    stream_id = case["stream_id"]
    ops = decode_all(ChangeDecoder(stream_id), case["events"], raw=raw)
    assert [as_expected(op) for op in ops] == case["expected_ops"], case["name"]
    assert all(op.source is Source.CHANGE_STREAM for op in ops)
    assert all(op.stream_id == stream_id for op in ops)


@RAW
@pytest.mark.parametrize("case", VALID)
def test_only_the_invalidate_event_ends_the_stream(case: dict[str, Any], raw: bool) -> None:
    events = [as_input(event, raw=raw) for event in case["events"]]
    *rest, last = events
    assert is_invalidate(last) is bool(case.get("invalidates")), case["name"]
    assert not any(is_invalidate(event) for event in rest)
    if case.get("invalidates"):
        decoder = ChangeDecoder(case["stream_id"])
        for event in rest:
            decoder.decode(event)
        assert decoder.decode(last) is None


@RAW
@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_event_is_a_decode_error(case: dict[str, Any], raw: bool) -> None:
    with pytest.raises(DecodeError):
        decode_all(ChangeDecoder(case["stream_id"]), case["events"], raw=raw)


def test_every_fixture_says_where_its_shape_comes_from() -> None:
    assert CASES
    for param in CASES:
        case = _case(param)
        assert case["source"].strip(), case["name"]
        assert case["mongodb_version"].strip(), case["name"]
        assert isinstance(case["stream_id"], str), case["name"]
        assert ("expected_ops" in case) != ("expect_error" in case), case["name"]
        assert case["events"], case["name"]


@RAW
def test_namespace_filter_sees_the_op_before_its_documents_and_can_drop_it(raw: bool) -> None:
    seen: list[tuple[Any, ...]] = []

    def keep(op: Op) -> bool:
        seen.append((op.operation, op.namespace, op.data, op.before, op.update_description))
        assert op.timestamp is not None
        assert op.resume_token is not None
        return op.namespace != "shop.customers"

    case = find_case("database_stream_two_collections_v70")
    decoder = ChangeDecoder("shop", namespace_filter=keep)
    ops = decode_all(decoder, case["events"], raw=raw)
    kept = [(op.operation, op.namespace) for op in ops]
    assert kept == [("i", "shop.orders"), ("u", "shop.orders")]
    assert ops[0].data is not None
    assert ops[1].update_description is not None
    assert seen == [
        ("i", "shop.orders", None, None, None),
        ("i", "shop.customers", None, None, None),
        ("u", "shop.orders", None, None, None),
    ]

    seen.clear()
    case = find_case("drop_database_invalidates_database_stream_v70")
    ops = decode_all(ChangeDecoder("shop", namespace_filter=keep), case["events"], raw=raw)
    assert [op.namespace for op in ops] == ["shop.orders", "shop.$cmd"]
    assert [op.data for op in ops] == [{"drop": "orders"}, {"dropDatabase": 1}]
    assert seen == [
        ("c", "shop.orders", None, None, None),
        ("c", "shop.customers", None, None, None),
        ("c", "shop.$cmd", None, None, None),
    ]


@RAW
def test_unmarshal_gets_the_namespace_and_the_raw_full_document(raw: bool) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def unmarshal(namespace: str, document: RawBSONDocument) -> tuple[str, dict[str, Any]]:
        assert isinstance(document, RawBSONDocument)
        calls.append((namespace, bson.decode(document.raw)))
        return ("model", bson.decode(document.raw))

    case = find_case("pre_and_post_images_update_replace_delete_v60")
    ns = "lookup_pit_pre_and_post_image.test"
    decoder = ChangeDecoder(case["stream_id"], unmarshal=unmarshal)
    ops = decode_all(decoder, case["events"], raw=raw)
    assert [op.operation for op in ops] == ["i", "u", "u", "d"]
    # Called for each event with a fullDocument (insert, update post-image, replace) only.
    assert calls == [(ns, {"_id": 1, "x": 1}), (ns, {"_id": 1, "x": 5}), (ns, {"_id": 1, "z": 1})]
    assert [op.doc for op in ops] == [("model", doc) for _, doc in calls] + [None]

    calls.clear()
    case = find_case("update_lookup_document_deleted_since_is_null_v60")
    ops = decode_all(ChangeDecoder("shop.orders", unmarshal=unmarshal), case["events"], raw=raw)
    assert calls == []  # fullDocument null: nothing to unmarshal
    assert [op.doc for op in ops] == [None, None]


def _raises(error: Exception) -> Any:
    def callback(*args: Any) -> Any:
        raise error

    return callback


@RAW
@pytest.mark.parametrize("option", ["namespace_filter", "unmarshal"])
def test_a_failing_callback_is_a_callback_error(option: str, raw: bool) -> None:
    error = RuntimeError("user code failed")
    decoder = ChangeDecoder("shop.orders", **{option: _raises(error)})
    (event,) = find_case("insert_v60_with_wall_time")["events"]
    with pytest.raises(CallbackError) as info:
        decoder.decode(as_input(event, raw=raw))
    assert info.value.callback == option
    assert info.value.__cause__ is error


def test_a_failing_namespace_filter_on_a_command_is_a_callback_error() -> None:
    decoder = ChangeDecoder("shop", namespace_filter=_raises(KeyError("ns")))
    (event,) = find_case("rename_expanded_v70")["events"]
    with pytest.raises(CallbackError, match="namespace_filter"):
        decoder.decode(event)


# -- fuzzing: mutated real events give an Op, None or a DecodeError, never another exception ---

_EVENTS = [event for p in VALID for event in _case(p)["events"]]
_FIELDS = sorted({key for event in _EVENTS for key in event} | {"_data", "db", "coll", "_id"})
# Only what BSON can hold: a server never sends a NUL in a key or a lone surrogate.
_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    _text,
    st.binary(max_size=16),
    st.sampled_from(
        [
            bson.Timestamp(1, 1),
            bson.Timestamp(0, 0),
            bson.ObjectId("64b9fb38a1b2c3d4e5f60720"),
            bson.Int64(7),
            dt.datetime(2024, 1, 2, 3, 4, 5),
            bson.Binary(b"\x01" * 16, 4),
        ]
    ),
)
_keys = st.one_of(st.sampled_from(_FIELDS), _text)
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(_keys, children, max_size=5)
    ),
    max_leaves=20,
)


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    """A real event with fields removed, replaced or added, at the top or one level down."""
    event: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(_EVENTS)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        target = event
        nested = [k for k, v in event.items() if isinstance(v, dict)]
        deeper = draw(st.booleans())
        if nested and deeper:
            target = event[draw(st.sampled_from(nested))]
        action = draw(st.sampled_from(["remove", "replace", "add"]))
        if action != "add" and target:
            key = draw(st.sampled_from(sorted(target)))
            if action == "remove":
                del target[key]
            else:
                target[key] = draw(_values)
        else:
            target[draw(_keys)] = draw(_values)
    return event


def _decode_fuzzed(decoder: ChangeDecoder, event: Any) -> None:
    try:
        op = decoder.decode(event)
    except DecodeError:
        return
    assert op is None or isinstance(op, Op)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated_events(), min_size=1, max_size=4), st.sampled_from(["", "shop", "a.b"]))
def test_fuzzed_events_give_ops_or_a_decode_error(events: list[Any], stream_id: str) -> None:
    plain = ChangeDecoder(stream_id)
    with_callbacks = ChangeDecoder(
        stream_id, namespace_filter=lambda op: True, unmarshal=lambda ns, doc: doc
    )
    for event in events:
        raw = RawBSONDocument(bson.encode(event))
        for decoder in (plain, with_callbacks):
            _decode_fuzzed(decoder, event)
            _decode_fuzzed(decoder, raw)


@settings(max_examples=200, deadline=None)
@given(_values)
def test_fuzzed_non_events_give_a_decode_error_or_nothing(value: Any) -> None:
    _decode_fuzzed(ChangeDecoder("shop.orders"), value)
    if isinstance(value, dict):
        _decode_fuzzed(ChangeDecoder("shop.orders"), RawBSONDocument(bson.encode(value)))
