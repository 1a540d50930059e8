"""A cursor reply's batch, kept as BSON: find it without decoding it. Pure.

A ``find``/``getMore`` reply is ``{cursor: {firstBatch|nextBatch: [...], id, ns, ...}, ok, ...}``.
`split_batch` walks the reply's bytes to the batch array (sizing each element it passes by its
type) and returns the reply decoded without the batch, with the batch in its place as the BSON
bytes of the array: decoding the array later (``bson.decode`` reads an array as a document with
keys "0", "1", ...) costs what decoding the reply would have, but can wait for a better moment.
"""

from __future__ import annotations

import struct
from typing import Any

import bson

__all__ = ["split_batch"]

_INT32 = struct.Struct("<i")
#: Bytes after the key of a fixed-size element, by type.
_FIXED = {
    0x01: 8, 0x06: 0, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8,
    0x12: 8, 0x13: 16, 0x7F: 0, 0xFF: 0,
}  # fmt: skip
_BATCHES = (b"firstBatch", b"nextBatch")
_EMPTY_ARRAY = b"\x05\x00\x00\x00\x00"


def _int32(data: memoryview | bytearray, at: int) -> int:
    value: int = _INT32.unpack_from(data, at)[0]
    return value


def _value_end(data: memoryview, kind: int, at: int) -> int:
    """Where the value of type ``kind`` starting at ``at`` ends (ValueError if unknown)."""
    fixed = _FIXED.get(kind)
    if fixed is not None:
        return at + fixed
    if kind in (0x03, 0x04, 0x0F):  # document, array, code with scope: an int32 total size
        return at + _int32(data, at)
    if kind in (0x02, 0x0D, 0x0E):  # string, code, symbol: int32 length, then the bytes
        return at + 4 + _int32(data, at)
    if kind == 0x05:  # binary: int32 length, subtype, bytes
        return at + 5 + _int32(data, at)
    if kind == 0x0B:  # regex: two C strings
        return _cstring_end(data, _cstring_end(data, at))
    if kind == 0x0C:  # DBPointer: string, then 12 bytes
        return at + 4 + _int32(data, at) + 12
    raise ValueError(f"unknown BSON type {kind:#x}")


def _cstring_end(data: memoryview, at: int) -> int:
    """Just past the NUL ending the C string at ``at`` (ValueError if there is none)."""
    step = 64
    while True:
        chunk = bytes(data[at : at + step])
        end = chunk.find(b"\x00")
        if end >= 0:
            return at + end + 1
        if len(chunk) < step:
            raise ValueError("a C string runs off the end")
        step *= 4


def _find(
    data: memoryview, start: int, keys: tuple[bytes, ...]
) -> tuple[int, int, int, bytes] | None:
    """The first element of the document at ``start`` whose key is one of ``keys``.

    Returns (element start, value start, value end, key), or None when there is none.
    """
    end = start + _int32(data, start) - 1  # the document's trailing NUL
    at = start + 4
    while at < end:
        kind = data[at]
        key_end = _cstring_end(data, at + 1)
        key = bytes(data[at + 1 : key_end - 1])
        value_end = _value_end(data, kind, key_end)
        if key in keys:
            return at, key_end, value_end, key
        at = value_end
    return None


def split_batch(payload: bytes | memoryview) -> dict[str, Any] | None:
    """The reply decoded, with its batch as the BSON of its array.

    None for an error reply, or one that is not a cursor reply: decode it the usual way.
    """
    data = memoryview(payload)  # walked in place: only the array is copied, once
    try:
        cursor = _find(data, 0, (b"cursor",))
        if cursor is None or data[cursor[0]] != 0x03:
            return None
        batch = _find(data, cursor[1], _BATCHES)
        if batch is None or data[batch[0]] != 0x04:
            return None
        _, value, value_end, key = batch
        array = bytes(data[value:value_end])
        # The reply without the batch: an empty array in its place, the sizes of the two
        # documents around it shrunk to match.
        shrink = len(array) - len(_EMPTY_ARRAY)
        rest = bytearray(data[:value])
        rest += _EMPTY_ARRAY
        rest += data[value_end:]
        for at in (0, cursor[1]):
            _INT32.pack_into(rest, at, _int32(rest, at) - shrink)
        reply: dict[str, Any] = bson.decode(bytes(rest))
    except (ValueError, IndexError, struct.error, bson.InvalidBSON):
        return None
    if reply.get("ok") != 1:
        return None
    reply["cursor"][key.decode()] = [array] if len(array) > len(_EMPTY_ARRAY) else []
    return reply
