"""Pure unit tests of `gtom._segments`: ``_id`` brackets, segment queries, plans and checkpoints.

No server and no I/O: every function here is pure, so each is checked against hand-computed
expectations, plus Hypothesis properties for how segments and boundaries cover the ``_id`` space.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
import uuid
from collections.abc import Sequence
from typing import Any, cast

import bson
import pytest
from bson import Decimal128, Int64, ObjectId, Regex, Timestamp, json_util
from bson.binary import Binary, UuidRepresentation
from bson.code import Code
from bson.codec_options import CodecOptions
from bson.datetime_ms import DatetimeMS
from bson.dbref import DBRef
from bson.max_key import MaxKey
from bson.min_key import MinKey
from bson.raw_bson import RawBSONDocument
from bson.son import SON
from hypothesis import given
from hypothesis import strategies as st

from gtom import ConfigurationError, _segments
from gtom._segments import (
    BRACKETS,
    ID_TYPES,
    Segment,
    boundaries_from_sample,
    id_type,
    is_nan,
    later_aliases,
    pick_boundaries,
    segments_for,
)

NS = "db.coll"
OID_1 = ObjectId("000000000000000000000001")
OID_2 = ObjectId("5f0000000000000000000000")
OID_3 = ObjectId("ffffffffffffffffffffffff")
#: Millisecond precision and naive: what BSON and relaxed Extended JSON give back.
WHEN = dt.datetime(2024, 5, 6, 7, 8, 9, 123000)
NUMBER_TYPE = {"$type": ["number"]}

# --- id_type ---------------------------------------------------------------------------------

ID_VALUES: list[tuple[Any, str]] = [
    (None, "null"),
    (True, "bool"),
    (False, "bool"),
    (0, "number"),
    (-(2**31), "number"),
    (2**40, "number"),  # encodes as int64
    (Int64(7), "number"),
    (Int64(2**62), "number"),
    (1.5, "number"),
    (math.inf, "number"),
    (math.nan, "number"),
    (Decimal128("1.25"), "number"),
    (Decimal128("NaN"), "number"),
    ("", "string"),
    ("héllo", "string"),
    (OID_2, "objectId"),
    (WHEN, "date"),
    (dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), "date"),
    (DatetimeMS(-1), "date"),
    (Timestamp(1, 2), "timestamp"),
    (b"", "binData"),
    (b"\x00\x01", "binData"),
    (Binary(b"xyz"), "binData"),
    (Binary(b"0123456789abcdef", 4), "binData"),
    (Binary(b"\x01", 0x80), "binData"),
    (Regex("^a", "i"), "regex"),
    (re.compile("^a"), "regex"),
    (Code("return 1"), "javascript"),
    (Code("return x", {"x": 1}), "javascriptWithScope"),
    (Code("return 1", {}), "javascriptWithScope"),
    (DBRef("other", 1), "object"),  # stored as an embedded document {$ref, $id}
    (DBRef("other", OID_1, "db2", extra=True), "object"),
    (MinKey(), "minKey"),
    (MaxKey(), "maxKey"),
    ({}, "object"),
    ({"a": 1, "b": [1, 2]}, "object"),
    (SON([("b", 1), ("a", 2)]), "object"),
    (RawBSONDocument(bson.encode({"a": 1})), "object"),
]


@pytest.mark.parametrize(("value", "expected"), ID_VALUES, ids=lambda v: repr(v)[:40])
def test_id_type(value: Any, expected: str) -> None:
    assert id_type(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        object(),
        {1, 2},
        complex(1, 2),
        [1, 2],  # an array cannot be an _id
        (1, 2),
        2**64,  # too large for any BSON integer
        -(2**63) - 1,
        "\ud800",  # a lone surrogate has no UTF-8 encoding
        uuid.UUID(int=1),  # the default codec options cannot encode a native UUID
        dt.date(2024, 1, 1),
    ],
    ids=lambda v: type(v).__name__,
)
def test_id_type_rejects_unsupported(value: Any) -> None:
    with pytest.raises(ConfigurationError):
        id_type(value)


def test_id_type_uses_the_codec_options() -> None:
    value = uuid.UUID(int=1)
    codec: CodecOptions[Any] = CodecOptions(uuid_representation=UuidRepresentation.STANDARD)
    assert id_type(value, codec) == "binData"
    with pytest.raises(ConfigurationError):
        id_type(value)


def test_id_types_cover_every_returned_bracket() -> None:
    returned = {id_type(value) for value, _ in ID_VALUES}
    assert returned <= set(ID_TYPES)
    assert set(_segments._TYPE_BYTES.values()) <= set(ID_TYPES)
    assert len(set(ID_TYPES)) == len(ID_TYPES)
    assert tuple(BRACKETS) == ID_TYPES


def test_bracket_aliases_are_distinct() -> None:
    aliases = [alias for group in BRACKETS.values() for alias in group]
    assert len(aliases) == len(set(aliases))
    assert all(name in group for name, group in BRACKETS.items())


def test_later_aliases() -> None:
    assert later_aliases("maxKey") == []
    assert later_aliases("javascriptWithScope") == ["maxKey"]
    assert later_aliases("minKey")[:3] == ["undefined", "null", "number"]
    assert "minKey" not in later_aliases("minKey")
    assert later_aliases("number") == [alias for name in ID_TYPES[3:] for alias in BRACKETS[name]]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (math.nan, True),
        (-math.nan, True),
        (Decimal128("NaN"), True),
        (Decimal128("-NaN"), True),
        (Decimal128("sNaN"), True),
        (1.0, False),
        (math.inf, False),
        (0, False),
        (Decimal128("1"), False),
        (Decimal128("Infinity"), False),
        ("NaN", False),
        (None, False),
    ],
    ids=repr,
)
def test_is_nan(value: Any, expected: bool) -> None:
    assert is_nan(value) is expected


# --- Segment.query ---------------------------------------------------------------------------


def test_query_without_bounds_selects_the_bracket() -> None:
    assert Segment(NS, "number").query() == {"_id": NUMBER_TYPE}
    assert Segment(NS, "string").query() == {"_id": {"$type": ["string", "symbol"]}}
    assert Segment(NS, "null").query() == {"_id": {"$type": ["undefined", "null"]}}


def test_query_lower_only() -> None:
    assert Segment(NS, "string", lower="m").query() == {
        "_id": {"$type": ["string", "symbol"], "$gte": "m"}
    }
    assert Segment(NS, "number", lower=10).query() == {"_id": {**NUMBER_TYPE, "$gte": 10}}


def test_query_upper_only() -> None:
    assert Segment(NS, "objectId", upper=OID_2).query() == {
        "_id": {"$type": ["objectId"], "$lt": OID_2}
    }


def test_query_first_number_segment_also_asks_for_nan() -> None:
    # NaN sorts first among numbers but matches no comparison: the first segment names it.
    query = Segment(NS, "number", upper=10).query()
    assert _is_nan_or_query(query, {**NUMBER_TYPE, "$lt": 10})
    assert not _is_nan_or_query(Segment(NS, "number").query(), NUMBER_TYPE)


@pytest.mark.parametrize(
    "upper",
    [0, 0.0, Int64(0), -5, Decimal128("0")],
    ids=["int-0", "float-0", "Int64-0", "int-minus-5", "Decimal128-0"],
)
def test_query_first_number_segment_asks_for_nan_whatever_its_upper(upper: Any) -> None:
    # A boundary of 0 is as much an upper bound as any other: NaN must not be lost.
    query = Segment(NS, "number", upper=upper).query()
    assert _is_nan_or_query(query, {**NUMBER_TYPE, "$lt": upper})


def test_query_later_number_segments_do_not_ask_for_nan() -> None:
    assert Segment(NS, "number", lower=10, upper=20).query() == {
        "_id": {**NUMBER_TYPE, "$gte": 10, "$lt": 20}
    }
    assert Segment(NS, "number", lower=10).query() == {"_id": {**NUMBER_TYPE, "$gte": 10}}


def test_query_both_bounds() -> None:
    assert Segment(NS, "date", lower=WHEN, upper=WHEN + dt.timedelta(days=1)).query() == {
        "_id": {"$type": ["date"], "$gte": WHEN, "$lt": WHEN + dt.timedelta(days=1)}
    }


def test_query_after_a_resume_gt_replaces_gte_and_keeps_lt() -> None:
    segment = Segment(NS, "number", lower=10, upper=20)
    segment.advance(15, 3, "number")
    assert segment.query() == {"_id": {**NUMBER_TYPE, "$gt": 15, "$lt": 20}}
    segment = Segment(NS, "string", lower="b")
    segment.advance("c", 1, "string")
    assert segment.query() == {"_id": {"$type": ["string", "symbol"], "$gt": "c"}}


def test_query_resumed_first_number_segment() -> None:
    segment = Segment(NS, "number", upper=10)
    segment.advance(3, 4, "number")
    assert segment.query() == {"_id": {**NUMBER_TYPE, "$gt": 3, "$lt": 10}}
    segment = Segment(NS, "number", upper=10)
    segment.advance(math.nan, 1, "number")  # past NaN: every number from -Infinity
    assert segment.query() == {"_id": {**NUMBER_TYPE, "$gte": -math.inf, "$lt": 10}}
    segment = Segment(NS, "number")
    segment.advance(Decimal128("NaN"), 1, "number")
    assert segment.query() == {"_id": {**NUMBER_TYPE, "$gte": -math.inf}}


@pytest.mark.parametrize(("kind", "last"), [("null", None), ("minKey", MinKey())])
def test_query_resumed_single_value_bracket_matches_nothing(kind: str, last: Any) -> None:
    segment = Segment(NS, kind)
    segment.advance(last, 1, kind)
    query = segment.query()
    assert query == {"_id": {"$in": []}}
    query["_id"] = "changed"
    assert segment.query() == {"_id": {"$in": []}}


def test_query_of_every_type_not_started_is_empty() -> None:
    assert Segment(NS, None).query() == {}


def test_query_of_every_type_resumed() -> None:
    segment = Segment(NS, None, paged=False)
    segment.advance("k", 5, "string")
    assert segment.query() == {
        "$or": [
            {"_id": {"$gt": "k", "$type": ["string", "symbol"]}},
            {"_id": {"$type": later_aliases("string")}},
        ]
    }
    segment.advance(MinKey(), 1, "minKey")
    assert segment.query() == {"_id": {"$type": later_aliases("minKey")}}
    segment.advance(None, 1, "null")
    assert segment.query() == {"_id": {"$type": later_aliases("null")}}
    segment.advance(Code("f", {}), 1, "javascriptWithScope")
    assert segment.query() == {
        "$or": [
            {"_id": {"$gt": Code("f", {}), "$type": ["javascriptWithScope"]}},
            {"_id": {"$type": ["maxKey"]}},
        ]
    }
    segment.advance(math.nan, 1, "number")
    assert segment.query() == {
        "$or": [
            {"_id": {"$gte": -math.inf, "$type": ["number"]}},
            {"_id": {"$type": later_aliases("number")}},
        ]
    }
    segment.advance(MaxKey(), 1, "maxKey")
    assert segment.query() == {"_id": {"$in": []}}


def _is_nan_or_query(query: dict[str, Any], condition: dict[str, Any]) -> bool:
    """Whether ``query`` is ``{$or: [{_id: condition}, {_id: NaN}]}`` (NaN != NaN, so by hand)."""
    if set(query) != {"$or"} or len(query["$or"]) != 2:
        return False
    first, second = query["$or"]
    return bool(first == {"_id": condition} and set(second) == {"_id"} and is_nan(second["_id"]))


# --- advance and checkpoints -----------------------------------------------------------------


def test_advance_accumulates_count() -> None:
    segment = Segment(NS, "number", lower=0, upper=100)
    assert (segment.started, segment.count, segment.after) == (False, 0, None)
    segment.advance(9, 10, "number")
    segment.advance(19, 10, "number")
    segment.advance(21, 2, "number")
    assert (segment.started, segment.count, segment.after) == (True, 22, 21)
    assert segment.after_type == "number"
    assert (segment.lower, segment.upper, segment.done) == (0, 100, False)
    segment.advance(22, 0, "number")
    assert (segment.count, segment.after) == (22, 22)


def _saved_segments() -> list[Segment]:
    fresh = Segment(NS, "number", lower=Int64(2**40), upper=2**50)
    resumed = Segment("db.other", "objectId", lower=OID_1, upper=OID_3, done=True)
    resumed.advance(OID_2, 12, "objectId")
    dates = Segment(NS, "date", lower=WHEN)
    dates.advance(WHEN + dt.timedelta(milliseconds=5), 3, "date")
    decimals = Segment(NS, "number", lower=Decimal128("1.5"), upper=2.5)
    decimals.advance(Decimal128("2.25"), 7, "number")
    strings = Segment(NS, "string", upper="é")
    strings.advance("Zebra", 1, "string")
    everything = Segment(NS, None, paged=False)
    everything.advance({"a": 1}, 4, "object")
    return [fresh, resumed, dates, decimals, strings, everything, Segment(NS, None)]


SAVED = _saved_segments()


@pytest.mark.parametrize("segment", SAVED, ids=lambda s: f"{s.id_type}:{s.count}")
def test_document_round_trip(segment: Segment) -> None:
    document = segment.to_document()
    assert set(document) >= {"namespace", "id_type", "lower", "upper", "after", "count"}
    assert Segment.from_document(document) == segment


@pytest.mark.parametrize("segment", SAVED, ids=lambda s: f"{s.id_type}:{s.count}")
def test_document_round_trip_through_bson(segment: Segment) -> None:
    decoded = bson.decode(bson.encode(segment.to_document()))
    restored = Segment.from_document(decoded)
    assert restored == segment
    assert restored.query() == segment.query()


@pytest.mark.parametrize("segment", SAVED, ids=lambda s: f"{s.id_type}:{s.count}")
def test_document_round_trip_through_relaxed_json(segment: Segment) -> None:
    text = json_util.dumps(segment.to_document(), json_options=json_util.RELAXED_JSON_OPTIONS)
    restored = Segment.from_document(json_util.loads(text))
    assert restored == segment
    assert restored.query() == segment.query()


def test_from_document_defaults() -> None:
    segment = Segment.from_document({"namespace": NS, "id_type": "string"})
    assert segment == Segment(NS, "string")
    assert segment.after_type == "minKey" and segment.paged


@pytest.mark.parametrize(
    "document",
    [
        {"id_type": "number"},  # no namespace
        {"namespace": NS},  # no id_type
        {"namespace": NS, "id_type": "uuid"},
        {"namespace": NS, "id_type": "Number"},
        {"namespace": NS, "id_type": 3},
        {"namespace": NS, "id_type": "number", "after_type": "uuid"},
        {"namespace": NS, "id_type": "number", "count": "many"},
        {"namespace": NS, "id_type": "number", "count": None},
        [("namespace", NS), ("id_type", "number")],
        "db.coll",
        None,
        42,
    ],
    ids=repr,
)
def test_from_document_rejects_malformed(document: Any) -> None:
    with pytest.raises(ConfigurationError):
        Segment.from_document(cast("Any", document))


# --- segments_for ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "boundaries",
    [[], [5], [1, 2, 3], ["a", "m", "é"], [OID_1, OID_2], [Decimal128("1"), 2.5, Int64(9)]],
    ids=repr,
)
def test_segments_for_chain(boundaries: list[Any]) -> None:
    segments = segments_for(NS, "number", boundaries)
    assert len(segments) == len(boundaries) + 1
    assert segments[0].lower is None and segments[-1].upper is None
    for before, after in itertools.pairwise(segments):
        assert before.upper is not None and before.upper == after.lower
    assert [s.upper for s in segments[:-1]] == boundaries
    for segment in segments:
        assert (segment.namespace, segment.id_type) == (NS, "number")
        assert (segment.started, segment.done, segment.count, segment.after) == (
            False,
            False,
            0,
            None,
        )


def test_segments_for_without_boundaries_is_the_whole_bracket() -> None:
    (segment,) = segments_for(NS, "string", ())
    assert segment.query() == {"_id": {"$type": ["string", "symbol"]}}


def _contains(segment: Segment, value: int) -> bool:
    """``lower <= value < upper``, None unbounded."""
    return (segment.lower is None or segment.lower <= value) and (
        segment.upper is None or value < segment.upper
    )


@given(
    st.lists(st.integers(-(10**6), 10**6), unique=True).map(sorted),
    st.lists(st.integers(-(2 * 10**6), 2 * 10**6), min_size=1),
)
def test_every_id_falls_in_exactly_one_segment(boundaries: list[int], ids: list[int]) -> None:
    segments = segments_for(NS, "number", boundaries)
    for value in [*ids, *boundaries]:
        assert sum(_contains(segment, value) for segment in segments) == 1


# --- pick_boundaries -------------------------------------------------------------------------


@pytest.mark.parametrize("segments", [-1, 0, 1])
def test_pick_boundaries_one_segment_or_less(segments: int) -> None:
    assert pick_boundaries(list(range(10)), segments) == []


def test_pick_boundaries_no_candidates() -> None:
    assert pick_boundaries([], 8) == []


def test_pick_boundaries_fewer_candidates_than_segments() -> None:
    assert pick_boundaries([10, 20, 30], 10) == [10, 20, 30]
    assert pick_boundaries(["x"], 5) == ["x"]
    assert pick_boundaries([1, 2], 3) == [1, 2]


def test_pick_boundaries_evenly_spread() -> None:
    candidates = list(range(100))
    assert pick_boundaries(candidates, 2) == [50]
    assert pick_boundaries(candidates, 4) == [25, 50, 75]
    assert pick_boundaries(candidates, 10) == [10, 20, 30, 40, 50, 60, 70, 80, 90]
    picked = pick_boundaries(candidates, 7)
    assert len(picked) == 6
    gaps = [b - a for a, b in zip([0, *picked], [*picked, 100], strict=True)]
    assert max(gaps) - min(gaps) <= 1


@given(st.lists(st.integers(), unique=True).map(sorted), st.integers(-2, 300))
def test_pick_boundaries_properties(candidates: list[int], segments: int) -> None:
    picked = pick_boundaries(candidates, segments)
    assert len(picked) <= max(0, segments - 1)
    assert len(picked) <= len(candidates)
    assert picked == sorted(set(picked))
    assert set(picked) <= set(candidates)
    if candidates and segments > 1:
        assert len(picked) == min(segments - 1, len(candidates))


# --- boundaries_from_sample ------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind",
    [name for name in ID_TYPES if name not in ("number", "string", "objectId", "date")],
)
def test_boundaries_from_sample_unorderable_kind(kind: str) -> None:
    assert boundaries_from_sample(kind, [{"a": 1}, {"a": 2}, {"b": 0}], 3) == []


def test_boundaries_from_sample_object() -> None:
    assert boundaries_from_sample("object", [{"a": i} for i in range(10)], 4) == []


def test_boundaries_from_sample_drops_nan() -> None:
    sample = [3, math.nan, 1, Decimal128("NaN"), 2, float("-nan"), Decimal128("sNaN")]
    assert boundaries_from_sample("number", sample, 10) == [1, 2, 3]
    assert boundaries_from_sample("number", [math.nan, Decimal128("NaN")], 4) == []


def test_boundaries_from_sample_mixed_numbers_sort_numerically() -> None:
    sample: list[Any] = [Int64(40), 2.5, Decimal128("-7.5"), 10, Decimal128("1E+2"), -math.inf]
    picked = boundaries_from_sample("number", sample, 100)
    assert [float(str(v)) if isinstance(v, Decimal128) else float(v) for v in picked] == [
        -math.inf,
        -7.5,
        2.5,
        10.0,
        40.0,
        100.0,
    ]
    assert isinstance(picked[1], Decimal128) and isinstance(picked[4], Int64)


def test_boundaries_from_sample_numeric_duplicates_removed() -> None:
    sample: list[Any] = [1, 1.0, Int64(1), Decimal128("1"), Decimal128("1.00"), 2, 2, 2.0, 3]
    picked = boundaries_from_sample("number", sample, 10)
    assert picked == [1, 2, 3]


def test_boundaries_from_sample_strings_by_utf8_bytes() -> None:
    sample = ["é", "a", "Z", "b", "a", "\U0001f600", "\uffff"]
    assert boundaries_from_sample("string", sample, 10) == ["Z", "a", "b", "é", "\uffff", "😀"]


def test_boundaries_from_sample_other_types_ignored() -> None:
    sample: list[Any] = [
        "b",
        5,
        None,
        True,
        OID_1,
        WHEN,
        {"a": 1},
        b"x",
        MinKey(),
        MaxKey(),
        "a",
        Decimal128("2"),
    ]
    assert boundaries_from_sample("string", sample, 10) == ["a", "b"]
    assert boundaries_from_sample("number", sample, 10) == [Decimal128("2"), 5]
    assert boundaries_from_sample("objectId", sample, 10) == [OID_1]
    assert boundaries_from_sample("date", sample, 10) == [WHEN]
    assert boundaries_from_sample("number", ["1", True, False], 3) == []


def test_boundaries_from_sample_object_ids_and_dates() -> None:
    assert boundaries_from_sample("objectId", [OID_3, OID_1, OID_2, OID_1], 10) == [
        OID_1,
        OID_2,
        OID_3,
    ]
    later = WHEN + dt.timedelta(seconds=1)
    assert boundaries_from_sample("date", [later, WHEN, later], 10) == [WHEN, later]


def test_boundaries_from_sample_values_not_ordered_like_mongodb() -> None:
    # A date pymongo could not decode as a datetime is a DatetimeMS: no boundaries from it.
    assert boundaries_from_sample("date", [DatetimeMS(1), DatetimeMS(2)], 3) == []


def test_boundaries_from_sample_spread_and_length() -> None:
    sample = list(range(1000, 0, -1))
    picked = boundaries_from_sample("number", sample, 4)
    assert picked == [251, 501, 751]
    assert boundaries_from_sample("number", sample, 1) == []
    assert boundaries_from_sample("number", [], 4) == []


def test_boundaries_from_sample_plan_covers_the_sample() -> None:
    sample = [7, 3, 3, 9, 1, 12, 5]
    boundaries = boundaries_from_sample("number", sample, 3)
    segments = segments_for(NS, "number", boundaries)
    assert len(segments) == len(boundaries) + 1 <= 3
    for value in sample:
        assert sum(_contains(segment, value) for segment in segments) == 1


def _sorted_distinct(values: Sequence[int]) -> list[int]:
    return sorted(set(values))


@given(st.lists(st.integers(-(2**63), 2**63 - 1)), st.integers(2, 50))
def test_boundaries_from_sample_properties(sample: list[int], segments: int) -> None:
    picked = boundaries_from_sample("number", sample, segments)
    assert picked == _sorted_distinct(picked)
    assert set(picked) <= set(sample)
    assert len(picked) <= segments - 1
    assert len(picked) == min(segments - 1, len(_sorted_distinct(sample)))
