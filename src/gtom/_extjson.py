r"""MongoDB Extended JSON for gtom's output: exact and fast.

Exact means the bytes ``bson.json_util.dumps(document, json_options=..., separators=(",", ":"))``
writes, relaxed or canonical, for every BSON value; a property test holds gtom to it. Fast means
relaxed output goes through orjson (when it is installed: ``gtom[daemon]`` brings it), with a
lean hook for the BSON types, instead of the standard library's encoder and ``json_util``.

orjson writes some values differently from the standard library, so the documents gtom writes
come from a client made with `output_codec_options`, whose type registry decodes:

* BSON doubles as `ExactFloat`: orjson hands that float subclass to the hook, which writes it as
  ``repr`` does (``1e-05``, not orjson's ``0.00001``) and NaN or infinities as
  ``{"$numberDouble": ...}`` (orjson would write ``null``);
* UUIDs (with a ``uuidRepresentation`` other than ``unspecified``) as `ExactUUID`, which the hook
  writes as the binary it was (orjson would write a plain string);
* dates out of Python's range (before year 1, after 9999) as `bson.DatetimeMS`, never an error.

``Code`` (a ``str``), ``Int64`` (an ``int``) and ``SON`` (a ``dict``) subclass JSON-native types:
orjson hands subclasses to the hook too (``OPT_PASSTHROUGH_SUBCLASS``), so ``Code`` comes out as
``{"$code": ...}``, never as a plain string. Text is written as the standard library writes it
(``ensure_ascii``): anything outside printable ASCII is escaped as ``\uXXXX``. Whatever the fast
path cannot write, and canonical output, goes through ``bson.json_util``.
"""

from __future__ import annotations

import codecs
import datetime
import math
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import bson
from bson import Decimal128, Int64, ObjectId, Timestamp, json_util
from bson.binary import UuidRepresentation
from bson.code import Code
from bson.codec_options import CodecOptions, DatetimeConversion, TypeDecoder, TypeRegistry
from bson.raw_bson import RawBSONDocument
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


# -- values ----------------------------------------------------------------------------------

_EPOCH = datetime.datetime(1970, 1, 1)
_NAN = {"$numberDouble": "NaN"}
_INFINITY = {"$numberDouble": "Infinity"}
_MINUS_INFINITY = {"$numberDouble": "-Infinity"}


def _float(value: float) -> Any:
    if value != value:
        return _NAN
    if math.isinf(value):
        return _INFINITY if value > 0 else _MINUS_INFINITY
    assert orjson is not None
    return orjson.Fragment(float.__repr__(value))


def _date(value: datetime.datetime) -> Any:
    if value.tzinfo is not None or value < _EPOCH:
        return None  # the general path: time zones, dates before 1970
    millis = value.microsecond // 1000
    if millis:
        return {"$date": f"{value.isoformat(timespec='seconds')}.{millis:03d}Z"}
    return {"$date": value.isoformat(timespec="seconds") + "Z"}


def _code(value: Code) -> Any:
    if value.scope is None:
        return {"$code": str(value)}
    return {"$code": str(value), "$scope": value.scope}


_RELAXED: dict[type, Callable[[Any], Any]] = {
    ExactFloat: _float,
    datetime.datetime: _date,
    ObjectId: lambda value: {"$oid": str(value)},
    Timestamp: lambda value: {"$timestamp": {"t": value.time, "i": value.inc}},
    Decimal128: lambda value: {"$numberDecimal": str(value)},
    Int64: int,
    Code: _code,
    SON: dict,
}


_OPTIONS = 0
if orjson is not None:
    _OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME


class ExtendedJSON:
    """Writes documents as one line of Extended JSON each (bytes, no trailing newline).

    ``canonical`` picks canonical Extended JSON over relaxed (as ``mongoexport`` writes);
    ``uuid_representation`` is the one the documents' UUIDs were decoded with (the client's), so
    that each is written back as the binary it was.
    """

    __slots__ = ("_canonical", "_hook", "_options")

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
        self._hook = self._relaxed

    def dumps(self, document: Mapping[str, Any]) -> bytes:
        """``document`` as Extended JSON: exactly what ``bson.json_util`` writes, compact."""
        if not self._canonical and orjson is not None:
            try:
                encoded: bytes = orjson.dumps(document, default=self._hook, option=_OPTIONS)
            except (TypeError, orjson.JSONEncodeError):
                pass  # a value only json_util knows: the general path writes it
            else:
                if encoded.isascii() and b"\x7f" not in encoded:
                    return encoded
                return _ascii(encoded)
        return self._general(document).encode()

    def _general(self, document: Any) -> str:
        return json_util.dumps(document, json_options=self._options, separators=(",", ":"))

    def _relaxed(self, value: Any) -> Any:
        """orjson's hook: the JSON form of a value orjson does not write itself."""
        encode = _RELAXED.get(value.__class__)
        if encode is not None:
            converted = encode(value)
            if converted is not None:
                return converted
        if isinstance(value, RawBSONDocument):
            return bson.decode(value.raw)
        # ExactUUID, Binary, bytes, Regex, DBRef, DatetimeMS, MinKey, MaxKey, dates before 1970
        return json_util.default(value, self._options)
