r"""MongoDB Extended JSON for gtom's output: exact and fast.

Exact means the bytes ``bson.json_util.dumps(document, json_options=..., separators=(",", ":"))``
writes, relaxed or canonical, for every BSON value; property tests hold gtom to it. Fast means
orjson (when it is installed: ``gtom[daemon]`` brings it) writes the JSON, with lean Python for
the BSON types, instead of the standard library's encoder and ``json_util``:

* relaxed output: orjson writes the document, calling a hook for each value it does not write
  itself (looked up by class);
* canonical output: ints and floats must be written as ``{"$numberInt": "5"}`` and so on, and
  orjson writes them itself without asking, so a walk over the document converts every value
  first (about four times faster than json_util still);
* Decimal128 values are written by `decimal128_str`, not ``str`` (which goes through
  `decimal.Decimal`), dates through orjson's own date formatting.

A value of a class neither knows (a `RawBSONDocument`, a `DBRef`, a subclass) is written by
json_util itself, put into orjson's output as a fragment; a document orjson cannot write at all
(a key that is not a string, say) goes through json_util whole.

orjson writes some values differently from the standard library, so the documents gtom writes
come from a client made with `output_codec_options`, whose type registry decodes:

* BSON doubles as `ExactFloat`: orjson hands that float subclass to the hook, which writes it as
  ``repr`` does (``1e-05``, not orjson's ``0.00001``) and NaN or infinities as
  ``{"$numberDouble": ...}`` (orjson would write ``null``);
* UUIDs (with a ``uuidRepresentation`` other than ``unspecified``) as `ExactUUID`, which the hook
  writes as the binary it was (orjson would write a plain string);
* dates out of Python's range (before year 1, after 9999) as `bson.DatetimeMS`, never an error.

(Relaxed output needs them; canonical output, which sees every value, is exact for plain floats
and UUIDs too.) ``Code`` (a ``str``), ``Int64`` (an ``int``) and ``SON`` (a ``dict``) subclass
JSON-native types: orjson hands subclasses to the hook too (``OPT_PASSTHROUGH_SUBCLASS``), so
``Code`` comes out as ``{"$code": ...}``, never as a plain string. Text is written as the
standard library writes it (``ensure_ascii``): anything outside printable ASCII is escaped as
``\uXXXX``.
"""

from __future__ import annotations

import codecs
import datetime
import functools
import math
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from bson import (
    Binary,
    DatetimeMS,
    Decimal128,
    Int64,
    MaxKey,
    MinKey,
    ObjectId,
    Regex,
    Timestamp,
    json_util,
)
from bson.binary import UuidRepresentation
from bson.code import Code
from bson.codec_options import CodecOptions, DatetimeConversion, TypeDecoder, TypeRegistry
from bson.son import SON

orjson: Any
try:
    import orjson
except ImportError:  # pragma: no cover - the library alone does not need it
    orjson = None

__all__ = [
    "ExactFloat",
    "ExactUUID",
    "ExtendedJSON",
    "decimal128_str",
    "output_codec_options",
    "read_codec_options",
]


class ExactFloat(float):
    """A BSON double, decoded so that the JSON encoder writes it exactly (see the module)."""

    __slots__ = ()


class ExactUUID(uuid.UUID):
    """A BSON UUID, decoded so that the JSON encoder writes it as the binary it was."""

    __slots__ = ()


class _FloatDecoder(TypeDecoder):
    bson_type = float

    def transform_bson(self, value: Any) -> Any:
        return ExactFloat(value)


class _UUIDDecoder(TypeDecoder):
    bson_type = uuid.UUID

    def transform_bson(self, value: Any) -> Any:
        return ExactUUID(int=value.int)


def read_codec_options(codec: CodecOptions[Any]) -> CodecOptions[dict[str, Any]]:
    """The codec options gtom decodes with, given a client's.

    Into dicts, keeping its time zone, UUID representation and type registry, and turning a date
    out of Python's range into a `bson.DatetimeMS` where the client would raise (its default,
    ``DATETIME``).
    """
    conversion = codec.datetime_conversion
    if conversion in (None, DatetimeConversion.DATETIME):
        conversion = DatetimeConversion.DATETIME_AUTO
    return codec.with_options(document_class=dict, datetime_conversion=conversion)


def output_codec_options() -> dict[str, Any]:
    """Client keyword arguments for the clients whose documents gtom writes as JSON.

    Its registry decodes doubles and UUIDs into the exact types the encoder writes faithfully.
    """
    return {
        "type_registry": TypeRegistry([_FloatDecoder(), _UUIDDecoder()]),
        "datetime_conversion": DatetimeConversion.DATETIME_AUTO,
    }


# -- text ------------------------------------------------------------------------------------


def _escape_non_ascii(error: UnicodeError) -> tuple[str, int]:
    r"""An ``encode`` error handler writing characters as JSON ``\uXXXX`` escapes."""
    assert isinstance(error, UnicodeEncodeError)
    out = []
    for char in error.object[error.start : error.end]:
        code = ord(char)
        if code > 0xFFFF:
            code -= 0x10000
            out.append(f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}")
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out), error.end


_ASCII_ERRORS = "gtom-json-ascii"
codecs.register_error(_ASCII_ERRORS, _escape_non_ascii)


def _ascii(encoded: bytes) -> bytes:
    """UTF-8 JSON with every character the standard library escapes (``ensure_ascii``) escaped.

    Such characters only occur inside JSON strings, where an escape means the same character.
    """
    text = encoded.decode()
    if "\x7f" in text:
        text = text.replace("\x7f", "\\u007f")
    return text.encode("ascii", _ASCII_ERRORS)


# -- Decimal128 ------------------------------------------------------------------------------

_DECIMAL_NAN = 0x7C00000000000000  # of the high 64 bits: NaN (and sNaN, 0x7E...)
_DECIMAL_INFINITY = 0x7800000000000000
_DECIMAL_COMBINATION = 0x6000000000000000  # "11": the coefficient is implicitly too large
_DECIMAL_BIAS = 6176
_DECIMAL_MAX_COEFFICIENT = 10**34 - 1


def decimal128_str(value: Decimal128) -> str:
    """``str(value)``, without going through `decimal.Decimal` (about six times faster).

    Decodes the BID bits as `bson.Decimal128.to_decimal` does (a coefficient of more than 34
    digits is 0; NaNs of either sign and signalling NaNs are ``NaN``) and writes the number as
    `decimal.Decimal` does (to-scientific-string, with a capital ``E``).
    """
    high, low = value.__getstate__()
    if high & _DECIMAL_COMBINATION == _DECIMAL_COMBINATION:
        if high & _DECIMAL_NAN == _DECIMAL_NAN:
            return "NaN"
        if high & _DECIMAL_INFINITY == _DECIMAL_INFINITY:
            return "-Infinity" if high >> 63 else "Infinity"
        exponent = ((high >> 47) & 0x3FFF) - _DECIMAL_BIAS
        digits = "0"
    else:
        exponent = ((high >> 49) & 0x3FFF) - _DECIMAL_BIAS
        if high & 0x1FFFFFFFFFFFF:  # a coefficient of more than 64 bits
            coefficient = (high & 0x1FFFFFFFFFFFF) << 64 | low
            digits = "0" if coefficient > _DECIMAL_MAX_COEFFICIENT else str(coefficient)
        else:
            digits = str(low)
    if high >> 63:
        if exponent == 0:
            return "-" + digits
        sign = "-"
    elif exponent == 0:
        return digits
    else:
        sign = ""
    left = exponent + len(digits)  # the digits left of the point
    if exponent < 0 and left > -6:  # plain notation
        if left > 0:
            return f"{sign}{digits[:left]}.{digits[left:]}"
        return f"{sign}0.{'0' * -left}{digits}"
    if len(digits) > 1:
        return f"{sign}{digits[0]}.{digits[1:]}E{left - 1:+d}"
    return f"{sign}{digits}E{left - 1:+d}"


# -- values ----------------------------------------------------------------------------------

_SEPARATORS = (",", ":")
_EPOCH = datetime.datetime(1970, 1, 1)
_EPOCH_UTC = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_ZERO = datetime.timedelta(0)
_MAX_ISO_MILLIS = 253402300799999  # 9999-12-31T23:59:59.999Z: the last date json_util writes as ISO
_INT32 = 2**31
_NAN = {"$numberDouble": "NaN"}
_INFINITY = {"$numberDouble": "Infinity"}
_MINUS_INFINITY = {"$numberDouble": "-Infinity"}

_Convert = Callable[[Any], Any]


def _same(value: Any) -> Any:
    return value


def _millis(since_epoch: datetime.timedelta) -> int:
    """Whole milliseconds (rounded down), as ``bson.datetime_ms._datetime_to_millis`` counts."""
    return (
        since_epoch.days * 86400000 + since_epoch.seconds * 1000 + since_epoch.microseconds // 1000
    )


def _number_long_date(millis: int) -> Any:
    return {"$date": {"$numberLong": str(millis)}}


def _iso_date(value: datetime.datetime) -> Any:
    """A UTC datetime (naive, or aware at offset 0) from 1970 on, as relaxed ``$date``.

    orjson writes ``"YYYY-MM-DDTHH:MM:SS"``, then ``.ffffff`` unless the microseconds are 0
    (then the offset, if any), several times faster than ``isoformat``; json_util writes
    milliseconds (``.fff``) unless they are 0, then ``Z``.
    """
    text: bytes = orjson.dumps(value)
    if value.microsecond >= 1000:
        return orjson.Fragment(b'{"$date":' + text[:24] + b'Z"}')
    return orjson.Fragment(b'{"$date":' + text[:20] + b'Z"}')


def _relaxed_float(value: float) -> Any:
    if value != value:
        return _NAN
    if value in (math.inf, -math.inf):
        return _INFINITY if value > 0 else _MINUS_INFINITY
    return orjson.Fragment(float.__repr__(value))


def _relaxed_date(value: datetime.datetime) -> Any:
    if value.tzinfo is None:
        if value < _EPOCH:
            return _number_long_date(_millis(value - _EPOCH))
        return _iso_date(value)
    if value.utcoffset() != _ZERO:  # another time zone than UTC (or none): as json_util writes
        return json_util.default(value, json_util.RELAXED_JSON_OPTIONS)
    if value < _EPOCH_UTC:
        return _number_long_date(_millis(value - _EPOCH_UTC))
    return _iso_date(value)


def _relaxed_datetime_ms(value: DatetimeMS) -> Any:
    millis = int(value)
    if 0 <= millis <= _MAX_ISO_MILLIS:
        return _iso_date(_EPOCH + datetime.timedelta(milliseconds=millis))
    return _number_long_date(millis)


def _oid(value: ObjectId) -> Any:
    return {"$oid": str(value)}


def _timestamp(value: Timestamp) -> Any:
    return {"$timestamp": {"t": value.time, "i": value.inc}}


def _decimal(value: Decimal128) -> Any:
    return {"$numberDecimal": decimal128_str(value)}


def _relaxed_code(value: Code) -> Any:
    if value.scope is None:
        return {"$code": str(value)}
    return {"$code": str(value), "$scope": value.scope}


#: How the relaxed hook writes the values orjson hands it, by class (its own class, not a base:
#: json_util writes any other class, see `_relaxed_hook`).
_RELAXED: dict[type, _Convert] = {
    ExactFloat: _relaxed_float,
    datetime.datetime: _relaxed_date,
    DatetimeMS: _relaxed_datetime_ms,
    ObjectId: _oid,
    Timestamp: _timestamp,
    Decimal128: _decimal,
    Int64: int,
    Code: _relaxed_code,
    SON: dict,
}


def _canonical_int(value: int) -> Any:
    if -_INT32 <= value < _INT32:
        return {"$numberInt": str(value)}
    return {"$numberLong": str(value)}


def _canonical_int64(value: Int64) -> Any:
    return {"$numberLong": str(value)}


def _canonical_float(value: float) -> Any:
    if value != value:
        return _NAN
    if value in (math.inf, -math.inf):
        return _INFINITY if value > 0 else _MINUS_INFINITY
    return {"$numberDouble": repr(value)}


def _canonical_date(value: datetime.datetime) -> Any:
    if value.tzinfo is None:
        since = value - _EPOCH
        millis = since.days * 86400000 + since.seconds * 1000 + since.microseconds // 1000
        return {"$date": {"$numberLong": str(millis)}}
    if value.utcoffset() != _ZERO:  # another time zone than UTC (or none): as json_util writes
        return json_util.default(value, json_util.CANONICAL_JSON_OPTIONS)
    return _number_long_date(_millis(value - _EPOCH_UTC))


def _canonical_datetime_ms(value: DatetimeMS) -> Any:
    return {"$date": {"$numberLong": str(int(value))}}


#: How the canonical walk converts values, by class (`_canonical_walk` adds containers).
_CANONICAL: dict[type, _Convert] = {
    str: _same,
    type(None): _same,
    bool: _same,
    int: _canonical_int,
    Int64: _canonical_int64,
    float: _canonical_float,
    ExactFloat: _canonical_float,
    datetime.datetime: _canonical_date,
    DatetimeMS: _canonical_datetime_ms,
    ObjectId: _oid,
    Timestamp: _timestamp,
    Decimal128: _decimal,
}

#: Written by ``json_util.default`` as JSON of strings and ints alone (given the UUID
#: representation), so its result goes into orjson's output as it is.
_JSON_UTIL_FLAT = (ExactUUID, uuid.UUID, Binary, bytes, Regex, MinKey, MaxKey)


def _converters(
    base: Mapping[type, _Convert], options: json_util.JSONOptions
) -> tuple[Callable[[type, _Convert], _Convert], _Convert]:
    """A lookup of converters by class (``table.get``), and the converter of any other class.

    The table holds ``base`` and the classes json_util writes flat (`_JSON_UTIL_FLAT`). Any
    other class (RawBSONDocument, DBRef, subclasses of known classes) is written by json_util
    itself, as an orjson fragment: exact whatever the value, since json_util's output for a
    document is its output for each value, put together. The lookup learns each such class.
    """
    table = dict(base)
    table.update(
        dict.fromkeys(_JSON_UTIL_FLAT, functools.partial(json_util.default, json_options=options))
    )

    def fragment(value: Any) -> Any:
        return orjson.Fragment(json_util.dumps(value, json_options=options, separators=_SEPARATORS))

    def other(value: Any) -> Any:
        convert = table[value.__class__] = fragment
        return convert(value)

    return table.get, other


def _relaxed_hook(options: json_util.JSONOptions) -> _Convert:
    """orjson's ``default`` for relaxed output: the JSON form of what orjson does not write."""
    get, other = _converters(_RELAXED, options)

    def hook(value: Any) -> Any:
        return get(value.__class__, other)(value)

    return hook


def _canonical_walk(options: json_util.JSONOptions) -> _Convert:
    """Canonical output as orjson writes it natively: numbers and BSON types made documents.

    orjson writes ints and floats itself (no hook sees them), hence a walk over the document.
    """

    # Strings, the most common values, skip the call.
    def mapping(value: Mapping[str, Any]) -> Any:
        return {
            key: item if item.__class__ is str else get(item.__class__, other)(item)
            for key, item in value.items()
        }

    def sequence(value: list[Any] | tuple[Any, ...]) -> Any:
        return [
            item if item.__class__ is str else get(item.__class__, other)(item) for item in value
        ]

    def code(value: Code) -> Any:
        if value.scope is None:
            return {"$code": str(value)}
        return {"$code": str(value), "$scope": walk(value.scope)}

    def walk(value: Any) -> Any:
        return get(value.__class__, other)(value)

    containers: dict[type, _Convert] = {
        dict: mapping,
        SON: mapping,
        list: sequence,
        tuple: sequence,
        Code: code,
    }
    get, other = _converters({**_CANONICAL, **containers}, options)
    return walk


_OPTIONS = 0
if orjson is not None:
    _OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME


class ExtendedJSON:
    """Writes documents as one line of Extended JSON each (bytes, no trailing newline).

    ``canonical`` picks canonical Extended JSON over relaxed (as ``mongoexport`` writes);
    ``uuid_representation`` is the one the documents' UUIDs were decoded with (the client's), so
    that each is written back as the binary it was.
    """

    __slots__ = ("_canonical", "_hook", "_options", "_walk")

    def __init__(
        self,
        *,
        canonical: bool = False,
        uuid_representation: int = UuidRepresentation.STANDARD,
    ) -> None:
        """Write relaxed (or ``canonical``) Extended JSON; see the class docstring."""
        if uuid_representation == UuidRepresentation.UNSPECIFIED:
            # Such a client decodes no UUID objects; a UUID made some other way is a standard one.
            uuid_representation = UuidRepresentation.STANDARD
        base = json_util.CANONICAL_JSON_OPTIONS if canonical else json_util.RELAXED_JSON_OPTIONS
        self._options = base.with_options(uuid_representation=uuid_representation)
        self._canonical = canonical
        self._hook = _relaxed_hook(self._options)
        self._walk = _canonical_walk(self._options)

    def dumps(self, document: Mapping[str, Any]) -> bytes:
        """``document`` as Extended JSON: exactly what ``bson.json_util`` writes, compact."""
        if orjson is not None:
            try:
                if self._canonical:
                    encoded: bytes = orjson.dumps(self._walk(document))
                else:
                    encoded = orjson.dumps(document, default=self._hook, option=_OPTIONS)
            except (TypeError, ValueError, OverflowError):
                pass  # a value orjson cannot write (a key not a str, an int of 65 bits, ...)
            else:
                if encoded.isascii() and b"\x7f" not in encoded:
                    return encoded
                return _ascii(encoded)
        return self._general(document).encode()

    def _general(self, document: Any) -> str:
        """json_util itself: it writes what orjson cannot, or raises the error json_util raises."""
        return json_util.dumps(document, json_options=self._options, separators=_SEPARATORS)
