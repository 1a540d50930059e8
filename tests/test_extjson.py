"""gtom's Extended JSON output: exactly what bson.json_util writes, for any BSON document.

Documents are generated as BSON, then decoded the way gtom's own clients decode them
(`gtom._extjson.output_codec_options`, with each UUID representation and time zone setting). The
fast encoders must write the very bytes ``bson.json_util`` writes, relaxed and canonical;
canonical output must read back into the same BSON bytes; relaxed output into the same values up
to the losses Extended JSON's relaxed form documents (an Int64 that fits in 32 bits reads back
as an int32). Documents made in Python (aware datetimes at any offset, microseconds, tuples, raw
documents, ints of any size) are held to json_util's bytes too, and so is the Decimal128 text.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import re
from typing import Any

import bson
import pytest
from bson import (
    Binary,
    Code,
    DatetimeMS,
    Decimal128,
    Int64,
    MaxKey,
    MinKey,
    ObjectId,
    Timestamp,
    json_util,
)
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.dbref import DBRef
from bson.raw_bson import RawBSONDocument
from bson.regex import Regex
from bson.son import SON
from bson.tz_util import FixedOffset, utc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gtom import Op, Source
from gtom._extjson import ExactFloat, ExactUUID, ExtendedJSON, decimal128_str, output_codec_options
from gtom.consistent import key_of
from gtom.daemon.events import EventMaker, id_digest

REPRESENTATIONS = [
    UuidRepresentation.UNSPECIFIED,
    UuidRepresentation.STANDARD,
    UuidRepresentation.PYTHON_LEGACY,
    UuidRepresentation.JAVA_LEGACY,
    UuidRepresentation.CSHARP_LEGACY,
]
INT32 = 2**31


#: Time zone settings of a client: naive UTC datetimes (the default), or aware ones in a zone.
ZONES: list[dict[str, Any]] = [
    {},
    {"tz_aware": True},
    {"tz_aware": True, "tzinfo": datetime.timezone.utc},
    {"tz_aware": True, "tzinfo": FixedOffset(90, "+01:30")},
    {"tz_aware": True, "tzinfo": FixedOffset(-300, "-05:00")},
]


def reader(representation: int, zone: dict[str, Any] | None = None) -> CodecOptions[dict[str, Any]]:
    """How gtom's clients decode, with the given UUID representation (and time zone)."""
    options: CodecOptions[dict[str, Any]] = CodecOptions(
        document_class=dict,
        uuid_representation=representation,
        **output_codec_options(),
        **(zone or {}),
    )
    return options


def decoded(raw: bytes, representation: int, zone: dict[str, Any] | None = None) -> dict[str, Any]:
    """``raw`` as gtom's clients decode it."""
    return bson.decode(raw, reader(representation, zone))


def plain(representation: int, zone: dict[str, Any] | None = None) -> CodecOptions[dict[str, Any]]:
    """How a plain client decodes (what json_util is given as the reference)."""
    return CodecOptions(
        uuid_representation=representation,
        datetime_conversion=DatetimeConversion.DATETIME_AUTO,
        **(zone or {}),
    )


#: Decoding that keeps every value as it is: binaries as binaries, any date.
AS_IS: CodecOptions[dict[str, Any]] = CodecOptions(
    uuid_representation=UuidRepresentation.UNSPECIFIED,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
)
#: A key starting with "$" reads back as an Extended JSON type (``{"$date": ...}``): Extended
#: JSON cannot carry such keys, so the read-back tests leave them out (in BSON: a type byte,
#: then "$" as the key's first byte).
DOLLAR_KEY = re.compile(rb"[\x01-\x13\x7f\xff]\$")


def reading(*, canonical: bool) -> json_util.JSONOptions:
    """How Extended JSON is read back: every binary and date as it was written."""
    base = json_util.CANONICAL_JSON_OPTIONS if canonical else json_util.RELAXED_JSON_OPTIONS
    return base.with_options(
        uuid_representation=UuidRepresentation.UNSPECIFIED,
        datetime_conversion=DatetimeConversion.DATETIME_AUTO,
    )


def json_options(canonical: bool, representation: int) -> json_util.JSONOptions:
    base = json_util.CANONICAL_JSON_OPTIONS if canonical else json_util.RELAXED_JSON_OPTIONS
    if representation == UuidRepresentation.UNSPECIFIED:
        representation = UuidRepresentation.STANDARD
    return base.with_options(uuid_representation=representation)


# -- every BSON value ------------------------------------------------------------------------

floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-05, 2.5e-07, 1e16, 1e22, 5e-324, 1.7976931348623157e308]),
)
decimals = st.one_of(
    st.builds(
        lambda sign, coefficient, exponent: Decimal128(f"{sign}{coefficient}E{exponent}"),
        st.sampled_from(["", "-"]),
        st.integers(0, 10**34 - 1),
        st.integers(-6176, 6111),
    ),
    st.sampled_from(
        ["NaN", "-NaN", "Infinity", "-Infinity", "-0", "1E+6144", "0E-6176", "1.50"]
    ).map(Decimal128),
)
datetimes = st.one_of(
    st.datetimes(min_value=datetime.datetime(1, 1, 1)).map(
        lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)
    ),
    st.integers(-(2**63), 2**63 - 1).map(DatetimeMS),  # before year 1, after 9999 too
    st.sampled_from([datetime.datetime(1969, 12, 31, 23, 59, 59, 999000)]),
)
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
keys = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=8)
binaries = st.one_of(
    st.builds(Binary, st.binary(max_size=16), st.sampled_from([0, 1, 2, 5, 6, 8, 0x80])),
    st.builds(Binary, st.binary(min_size=16, max_size=16), st.sampled_from([3, 4])),
    st.binary(max_size=16),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-INT32, INT32 - 1),
    st.integers(-(2**63), 2**63 - 1).map(Int64),
    floats,
    texts,
    binaries,
    st.builds(ObjectId),
    datetimes,
    st.builds(Timestamp, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    decimals,
    st.builds(Regex, keys, st.sampled_from(["", "i", "ims", "ilmsux", "x"])),  # no NUL
    st.builds(Code, texts),
    st.just(MinKey()),
    st.just(MaxKey()),
)


def documents(values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(keys, values, max_size=5)


values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        documents(inner),
        st.builds(Code, texts, documents(inner)),  # with scope
        st.builds(lambda coll, id_: DBRef(coll, id_), texts.filter(bool), inner),
    ),
    max_leaves=12,
)
bson_documents = documents(values).map(lambda d: bson.encode(d, codec_options=ENCODE))
ENCODE: CodecOptions[Any] = CodecOptions(uuid_representation=UuidRepresentation.STANDARD)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=bson_documents,
    representation=st.sampled_from(REPRESENTATIONS),
    zone=st.sampled_from(ZONES),
    canonical=st.booleans(),
)
def test_output_is_byte_for_byte_what_json_util_writes(
    raw: bytes, representation: int, zone: dict[str, Any], canonical: bool
) -> None:
    ours = ExtendedJSON(canonical=canonical, uuid_representation=representation).dumps(
        decoded(raw, representation, zone)
    )
    reference = json_util.dumps(
        bson.decode(raw, plain(representation, zone)),
        json_options=json_options(canonical, representation),
        separators=(",", ":"),
    )
    assert ours == reference.encode()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=bson_documents, representation=st.sampled_from(REPRESENTATIONS))
def test_canonical_output_is_exact_for_documents_any_client_decoded(
    raw: bytes, representation: int
) -> None:
    """Canonical output walks every value: plain floats and UUIDs are written exactly too."""
    document = bson.decode(raw, plain(representation))
    ours = ExtendedJSON(canonical=True, uuid_representation=representation).dumps(document)
    options = json_options(True, representation)
    assert ours == json_util.dumps(document, json_options=options, separators=(",", ":")).encode()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=bson_documents, representation=st.sampled_from(REPRESENTATIONS))
def test_canonical_output_reads_back_into_the_same_bson_bytes(
    raw: bytes, representation: int
) -> None:
    written = ExtendedJSON(canonical=True, uuid_representation=representation).dumps(
        decoded(raw, representation)
    )
    options = json_options(True, representation)
    if not DOLLAR_KEY.search(raw):
        read = json_util.loads(written, json_options=reading(canonical=True))
        assert bson.encode(read, codec_options=AS_IS) == without_nan_signs(raw)
    reference = json_util.dumps(
        bson.decode(raw, plain(representation)), json_options=options, separators=(",", ":")
    )
    assert written == reference.encode()


def without_nan_signs(raw: bytes) -> bytes:
    """``raw`` with every NaN made the one NaN Extended JSON can write (``"NaN"``): the sign
    and payload of a NaN are the one thing canonical Extended JSON cannot carry."""

    def plain_nan(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return math.nan
        if isinstance(value, Decimal128) and value.to_decimal().is_nan():
            return Decimal128("NaN")
        if isinstance(value, dict):
            return {k: plain_nan(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain_nan(v) for v in value]
        if isinstance(value, Code) and value.scope is not None:
            return Code(str(value), plain_nan(value.scope))
        if isinstance(value, DBRef):
            return DBRef(value.collection, plain_nan(value.id), value.database)
        return value

    return bson.encode(plain_nan(bson.decode(raw, AS_IS)), codec_options=AS_IS)


def relaxed_losses(value: Any) -> Any:
    """``value`` as relaxed Extended JSON reads it back: an Int64 fitting in 32 bits is an int."""
    if isinstance(value, Int64) and -INT32 <= value < INT32:
        return int(value)
    if isinstance(value, dict):
        return {k: relaxed_losses(v) for k, v in value.items()}
    if isinstance(value, list):
        return [relaxed_losses(v) for v in value]
    if isinstance(value, Code) and value.scope is not None:
        return Code(str(value), relaxed_losses(value.scope))
    if isinstance(value, DBRef):
        return DBRef(value.collection, relaxed_losses(value.id), value.database)
    return value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=bson_documents.filter(lambda raw: not DOLLAR_KEY.search(raw)))
def test_relaxed_output_reads_back_up_to_the_documented_losses(raw: bytes) -> None:
    representation = UuidRepresentation.STANDARD
    written = ExtendedJSON(uuid_representation=representation).dumps(decoded(raw, representation))
    read = json_util.loads(written, json_options=reading(canonical=False))
    original = relaxed_losses(bson.decode(without_nan_signs(raw), AS_IS))
    assert bson.encode(read, codec_options=AS_IS) == bson.encode(original, codec_options=AS_IS)


# -- the values that went wrong, one by one ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "relaxed"),
    [
        (Code("f()"), '{"$code":"f()"}'),
        (Code("f(x)", {"x": 1}), '{"$code":"f(x)","$scope":{"x":1}}'),
        (Int64(5), "5"),
        (True, "true"),
        (SON([("b", Code("g"))]), '{"b":{"$code":"g"}}'),
        (math.nan, '{"$numberDouble":"NaN"}'),
        (-math.inf, '{"$numberDouble":"-Infinity"}'),
        (1e-05, "1e-05"),
        (-0.0, "-0.0"),
        ("é\x7f😀", '"\\u00e9\\u007f\\ud83d\\ude00"'),
        (DatetimeMS(253402300800000), '{"$date":{"$numberLong":"253402300800000"}}'),
        (DatetimeMS(-62135596800001), '{"$date":{"$numberLong":"-62135596800001"}}'),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else v[:8],
)
def test_subclasses_of_json_types_and_special_values_are_written_exactly(
    value: Any, relaxed: str
) -> None:
    raw = bson.encode({"v": value})
    decoded = bson.decode(raw, reader(UuidRepresentation.STANDARD))
    assert ExtendedJSON().dumps(decoded) == ('{"v":' + relaxed + "}").encode()


def test_the_daemon_payload_carries_code_exactly_in_data_and_updated_fields() -> None:
    decoded = bson.decode(bson.encode({"_id": 1, "v": Code("f()")}), reader(4))
    op = Op("i", "db.c", id=1, data=decoded, timestamp=Timestamp(1, 1), source=Source.OPLOG)
    payload = json_util.loads(EventMaker().make(op, "oplog").payload)
    assert payload["data"]["v"] == Code("f()")
    update = Op("u", "db.c", id=1, timestamp=Timestamp(1, 2), source=Source.OPLOG)
    update.update_description = {
        "updatedFields": decoded,
        "removedFields": [],
        "truncatedArrays": [],
    }
    payload = json_util.loads(EventMaker().make(update, "oplog").payload)
    assert payload["update_description"]["updatedFields"]["v"] == Code("f()")


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        (5, '{"$numberInt":"5"}'),
        (-(2**31), '{"$numberInt":"-2147483648"}'),
        (2**31, '{"$numberLong":"2147483648"}'),
        (Int64(5), '{"$numberLong":"5"}'),
        (True, "true"),
        (None, "null"),
        (1.0, '{"$numberDouble":"1.0"}'),
        (-0.0, '{"$numberDouble":"-0.0"}'),
        (1e-05, '{"$numberDouble":"1e-05"}'),
        (1e22, '{"$numberDouble":"1e+22"}'),
        (math.inf, '{"$numberDouble":"Infinity"}'),
        (math.nan, '{"$numberDouble":"NaN"}'),
        (Decimal128("-1.50E+10"), '{"$numberDecimal":"-1.50E+10"}'),
        (
            datetime.datetime(2024, 5, 31, 16, 8, 20, 123000),
            '{"$date":{"$numberLong":"1717171700123"}}',
        ),
        (datetime.datetime(1969, 12, 31, 23, 59, 59, 999000), '{"$date":{"$numberLong":"-1"}}'),
        (Timestamp(1, 2), '{"$timestamp":{"t":1,"i":2}}'),
        (Code("f(x)", {"x": 1}), '{"$code":"f(x)","$scope":{"x":{"$numberInt":"1"}}}'),
        ([1, "é"], '[{"$numberInt":"1"},"\\u00e9"]'),
        (MinKey(), '{"$minKey":1}'),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else v[:8],
)
def test_canonical_values_are_written_exactly(value: Any, canonical: str) -> None:
    raw = bson.encode({"v": value})
    decoded = bson.decode(raw, reader(UuidRepresentation.STANDARD))
    assert ExtendedJSON(canonical=True).dumps(decoded) == ('{"v":' + canonical + "}").encode()


# -- documents made in Python ------------------------------------------------------------------

#: Offsets from UTC of the aware datetimes: 0 (in several tzinfo classes), whole and odd ones.
TIME_ZONES = st.sampled_from(
    [
        utc,
        datetime.timezone.utc,
        FixedOffset(0, "Z"),
        FixedOffset(90, "+01:30"),
        FixedOffset(-300, "-05:00"),
        datetime.timezone(datetime.timedelta(hours=-23, minutes=-59)),
        datetime.timezone(datetime.timedelta(seconds=1, microseconds=1)),
    ]
)
any_datetimes = st.one_of(
    st.datetimes(),  # any microsecond: written to the millisecond
    st.datetimes(
        min_value=datetime.datetime(1, 1, 2),
        max_value=datetime.datetime(9999, 12, 30),
        timezones=TIME_ZONES,
    ),
    st.sampled_from(
        [
            datetime.datetime(1970, 1, 1),
            datetime.datetime(1970, 1, 1, 0, 0, 0, 999),
            datetime.datetime(1969, 12, 31, 23, 59, 59, 999999),
            datetime.datetime(1970, 1, 1, tzinfo=utc),
            datetime.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=datetime.timezone.utc),
            datetime.datetime(9999, 12, 31, 23, 59, 59, 999999),
        ]
    ),
)
#: Every BSON value as Python has it, doubles as `ExactFloat` (orjson writes plain floats itself).
python_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # any size: orjson writes 64 bits at most
    st.integers(-(2**63), 2**63 - 1).map(Int64),
    floats.map(ExactFloat),
    texts,
    binaries,
    st.uuids().map(lambda u: ExactUUID(int=u.int)),
    st.builds(ObjectId),
    any_datetimes,
    st.integers(-(2**63), 2**63 - 1).map(DatetimeMS),
    st.builds(Timestamp, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    decimals,
    st.builds(Regex, keys, st.sampled_from(["", "i", "ims", "ilmsux", "x"])),
    st.builds(Code, texts),
    st.just(MinKey()),
    st.just(MaxKey()),
)
python_values = st.recursive(
    python_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        documents(inner),
        documents(inner).map(lambda d: SON(sorted(d.items()))),
        st.builds(Code, texts, documents(inner)),
        st.builds(
            lambda coll, id_, db, extra: DBRef(coll, id_, db, **extra),
            texts.filter(bool),
            inner,
            st.none() | texts,
            st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2),
        ),
    ),
    max_leaves=12,
)
RAW: CodecOptions[RawBSONDocument] = CodecOptions(
    document_class=RawBSONDocument, datetime_conversion=DatetimeConversion.DATETIME_AUTO
)
raw_documents = bson_documents.map(lambda raw: RawBSONDocument(raw, RAW))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    document=documents(st.one_of(python_values, raw_documents)),
    representation=st.sampled_from(REPRESENTATIONS[1:]),
    canonical=st.booleans(),
)
def test_documents_made_in_python_are_written_as_json_util_writes_them(
    document: dict[str, Any], representation: int, canonical: bool
) -> None:
    ours = ExtendedJSON(canonical=canonical, uuid_representation=representation).dumps(document)
    options = json_options(canonical, representation)
    assert ours == json_util.dumps(document, json_options=options, separators=(",", ":")).encode()


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(st.uuids(), st.floats()), document=documents(python_values))
def test_canonical_output_writes_plain_floats_and_uuids_exactly(
    value: Any, document: dict[str, Any]
) -> None:
    """Relaxed output needs `ExactFloat` and `ExactUUID` (orjson writes the plain ones itself)."""
    document = {**document, "value": value, "in": [value, {"v": value}]}
    ours = ExtendedJSON(canonical=True).dumps(document)
    options = json_options(True, UuidRepresentation.STANDARD)
    assert ours == json_util.dumps(document, json_options=options, separators=(",", ":")).encode()


# -- Decimal128 --------------------------------------------------------------------------------


@settings(max_examples=2000, deadline=None)
@given(
    bid=st.one_of(
        st.binary(min_size=16, max_size=16),
        st.integers(0, 2**128 - 1).map(lambda n: n.to_bytes(16, "little")),
    )
)
def test_decimal128_text_is_str_for_any_bid_pattern(bid: bytes) -> None:
    value = Decimal128.from_bid(bid)
    assert decimal128_str(value) == str(value)


@settings(max_examples=2000, deadline=None)
@given(
    sign=st.sampled_from(["", "-"]),
    coefficient=st.integers(1, 34).flatmap(lambda n: st.integers(10 ** (n - 1), 10**n - 1))
    | st.just(0),
    exponent=st.integers(-6176, 6111) | st.integers(-45, 5),
)
def test_decimal128_text_is_str_for_every_exponent_and_digit_count(
    sign: str, coefficient: int, exponent: int
) -> None:
    value = Decimal128(f"{sign}{coefficient}E{exponent}")
    assert decimal128_str(value) == str(value)


def test_decimal128_text_is_str_around_the_switch_to_exponents() -> None:
    for digits in range(1, 35):
        for exponent in [*range(-45, 8), -6176, 6111]:
            for sign in ("", "-"):
                value = Decimal128(f"{sign}{'7' * digits}E{exponent}")
                assert decimal128_str(value) == str(value), value
    for text in ["NaN", "-NaN", "sNaN", "-sNaN", "Infinity", "-Infinity", "0", "-0", "0E+3"]:
        assert decimal128_str(Decimal128(text)) == str(Decimal128(text))


# -- event ids ---------------------------------------------------------------------------------


@given(
    document_id=st.one_of(
        st.builds(ObjectId),
        st.binary(min_size=12, max_size=12).map(ObjectId),
        st.integers(-(2**63), 2**63 - 1),
        st.sampled_from([0, -1, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1, True]),
        scalars,
    )
)
def test_an_id_digest_is_the_blake2b_of_the_ids_bson(document_id: Any) -> None:
    expected = hashlib.blake2b(key_of(document_id), digest_size=8).hexdigest()
    assert id_digest(document_id) == expected
