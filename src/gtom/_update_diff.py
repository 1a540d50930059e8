"""Update oplog entries -> a change stream's ``updateDescription``. Pure: no I/O.

Two shapes: ``$v:1`` (``$set``/``$unset``, or no ``$v`` before 3.6) and ``$v:2`` diffs, both as
mongod writes them and as SecantusDB writes them (change-event shaped). The output has the keys
and the field order a mongod change stream gives for the same update, which
``tests/fixtures/corpus/`` pins against mongod's own test cases.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import bson
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

from gtom._errors import DecodeError

__all__ = ["diff_to_update_description", "update_description"]


def update_description(
    o: Mapping[str, Any], version: Any, codec: CodecOptions[dict[str, Any]], disambiguate: bool
) -> dict[str, Any]:
    """The ``updateDescription`` of an update entry's ``o`` (``$v`` is ``version``).

    Raw documents inside ``o`` are decoded with ``codec``.
    """
    if version is None or version == 1:
        updated = o.get("$set", {})
        removed = o.get("$unset", {})
        if not isinstance(updated, Mapping) or not isinstance(removed, Mapping):
            raise DecodeError("$set and $unset of an update must be documents", o)
        unknown = [k for k in o if k.startswith("$") and k not in ("$v", "$set", "$unset")]
        if unknown:
            raise DecodeError(f"unknown update operators in oplog entry: {unknown}", o)
        return {
            "updatedFields": _copy(updated, codec),
            "removedFields": list(removed),
            "truncatedArrays": [],
        }
    if version == 2:
        diff = o.get("diff")
        if not isinstance(diff, Mapping):
            raise DecodeError("a $v:2 update must have a 'diff' document", o)
        return diff_to_update_description(_read(diff, codec), disambiguate=disambiguate)
    raise DecodeError(f"unknown update version $v={version!r}", o)


def diff_to_update_description(
    diff: Mapping[str, Any], *, disambiguate: bool = False
) -> dict[str, Any]:
    """A change stream's ``updateDescription`` for a ``$v:2`` oplog diff.

    Understands mongod's diff format (``u``/``i``/``b``/``d``/``s<field>``, arrays with ``a``,
    ``l``, ``u<index>``, ``s<index>``) and the change-event shaped diff SecantusDB writes. Like
    mongod's own change-stream diff parser, it reports the fields of the update (``u``), insert
    (``i``) and binary (``b``: time-series columns) sections as ``updatedFields``, then the
    deleted ones, then the sub-diffs of the level, depth first. With ``disambiguate`` it also
    gives ``disambiguatedPaths`` as mongod does with ``showExpandedEvents`` (6.1+): for each
    path holding a field name with a dot, or a numeric field name past the first, its parts
    (array indexes as ints, field names as strings).
    """
    updated = diff.get("updatedFields")
    if updated is not None or "removedFields" in diff or "truncatedArrays" in diff:
        if updated is None:
            updated = {}
        removed = diff.get("removedFields", [])
        truncated = diff.get("truncatedArrays", [])
        if (
            (updated.__class__ is not dict and not isinstance(updated, Mapping))
            or removed.__class__ is not list
            or truncated.__class__ is not list
        ):
            raise DecodeError("malformed change-event shaped diff", diff)
        return {
            "updatedFields": dict(updated),
            "removedFields": list(removed),
            "truncatedArrays": list(truncated),
        }
    if len(diff) == 1 and not disambiguate:  # mongod's usual diff: one "u" section of fields
        section = diff.get("u")
        if section.__class__ is dict:
            return {"updatedFields": dict(section), "removedFields": [], "truncatedArrays": []}
    out: dict[str, Any] = {"updatedFields": {}, "removedFields": [], "truncatedArrays": []}
    if disambiguate:
        out["disambiguatedPaths"] = {}
        _walk_object_diff(diff, "", out, (), False)
    else:
        _walk_object_diff(diff, "", out, None, False)
    return out


#: Sections of a document diff whose fields are reported as updated, in mongod's order.
_UPDATED_SECTIONS = ("u", "i", "b")

#: The parts of a path so far (field names and array indexes), or None when not disambiguating.
Parts = tuple[str | int, ...] | None


def _walk_object_diff(
    diff: Mapping[str, Any], prefix: str, out: dict[str, Any], parts: Parts, ambiguous: bool
) -> None:
    subs: list[tuple[str, Any]] = []
    for key, value in diff.items():
        if key not in _UPDATED_SECTIONS and key != "d":
            if not key.startswith("s"):  # "s" alone: the sub-diff of a field named ""
                raise DecodeError(f"unknown section {key!r} in an update diff", diff)
            subs.append((key, value))
    updated = out["updatedFields"]
    for key in _UPDATED_SECTIONS:
        if key in diff:
            for field, new in _section(diff[key], key).items():
                updated[prefix + field] = new
                if parts is not None:
                    _note_field(out, prefix + field, parts, field, ambiguous)
    if "d" in diff:
        for field in _section(diff["d"], "d"):
            out["removedFields"].append(prefix + field)
            if parts is not None:
                _note_field(out, prefix + field, parts, field, ambiguous)
    for key, value in subs:
        field = key[1:]
        sub, sub_ambiguous = None, ambiguous
        if parts is not None:
            sub = (*parts, field)
            sub_ambiguous = ambiguous or _ambiguous_field(field, first=not parts)
        _walk_sub_diff(_section(value, key), prefix + field, out, sub, sub_ambiguous)


def _walk_sub_diff(
    diff: Mapping[str, Any], path: str, out: dict[str, Any], parts: Parts, ambiguous: bool
) -> None:
    if diff.get("a") is True:
        _walk_array_diff(diff, path, out, parts, ambiguous)
    else:
        _walk_object_diff(diff, path + ".", out, parts, ambiguous)


def _walk_array_diff(
    diff: Mapping[str, Any], path: str, out: dict[str, Any], parts: Parts, ambiguous: bool
) -> None:
    if "l" in diff:  # the new length first, as mongod reports it
        size = diff["l"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise DecodeError(f"array diff has a bad new length {size!r}", diff)
        out["truncatedArrays"].append({"field": path, "newSize": size})
        if parts is not None and ambiguous:
            out["disambiguatedPaths"][path] = list(parts)
    for key, value in diff.items():
        if key == "a" or key == "l":
            continue
        if len(key) > 1 and key[0] in "us" and key[1:].isdigit():
            index = int(key[1:])
            element = f"{path}.{index}"
            if key[0] == "u":
                out["updatedFields"][element] = value
                if parts is not None and ambiguous:
                    out["disambiguatedPaths"][element] = [*parts, index]
            else:
                sub = None if parts is None else (*parts, index)
                _walk_sub_diff(_section(value, key), element, out, sub, ambiguous)
        else:
            raise DecodeError(f"unknown section {key!r} in an array diff", diff)


def _ambiguous_field(field: str, *, first: bool) -> bool:
    """Whether a field name makes its dotted path ambiguous.

    It does when it holds a dot, or (past the first part) is a number without leading zeros,
    which reads as an array index.
    """
    if "." in field:
        return True
    return (
        not first and field.isdigit() and field.isascii() and (len(field) == 1 or field[0] != "0")
    )


def _note_field(
    out: dict[str, Any], path: str, parts: tuple[str | int, ...], field: str, ambiguous: bool
) -> None:
    if ambiguous or _ambiguous_field(field, first=not parts):
        out["disambiguatedPaths"][path] = [*parts, field]


def _section(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DecodeError(f"update diff section {key!r} must be a document")
    return value


def _read(value: Mapping[str, Any], codec: CodecOptions[dict[str, Any]]) -> Mapping[str, Any]:
    """A raw document decoded with ``codec``; any other mapping as it is (to be read only)."""
    if isinstance(value, RawBSONDocument):
        return bson.decode(value.raw, codec)
    return value


def _copy(value: Mapping[str, Any], codec: CodecOptions[dict[str, Any]]) -> dict[str, Any]:
    """A new dict of ``value`` (a raw document decoded with ``codec``)."""
    if isinstance(value, RawBSONDocument):
        return bson.decode(value.raw, codec)
    return dict(value)
