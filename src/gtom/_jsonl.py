"""Ops as JSON Lines in MongoDB Extended JSON (relaxed by default, as ``mongoexport`` writes)."""

from __future__ import annotations

from typing import Any

from bson import json_util
from bson.binary import UuidRepresentation

from gtom._extjson import ExtendedJSON
from gtom._op import Op, Source

__all__ = ["CANONICAL", "RELAXED", "OpLines", "op_document", "op_line"]

# UUIDs decoded with a standard representation are written back as subtype-4 binaries.
RELAXED = json_util.RELAXED_JSON_OPTIONS.with_options(
    uuid_representation=UuidRepresentation.STANDARD
)
CANONICAL = json_util.CANONICAL_JSON_OPTIONS.with_options(
    uuid_representation=UuidRepresentation.STANDARD
)


def op_document(op: Op) -> dict[str, Any]:
    """The fields of an op as one document, in a stable order.

    ``before`` is there when the op has a pre-image; ``stream_id`` and ``resume_token`` when it
    comes from a change stream.
    """
    txn = None
    if op.txn is not None:
        txn = {"lsid": op.txn.lsid, "txnNumber": op.txn.txn_number, "index": op.txn.index}
    document = {
        "operation": op.operation,
        "namespace": op.namespace,
        "id": op.id,
        "timestamp": op.timestamp,
        "wall": op.wall,
        "source": op.source.value,
        "data": op.data,
        "update_description": op.update_description,
        "txn": txn,
    }
    if op.before is not None:
        document["before"] = op.before
    if op.source is Source.CHANGE_STREAM:
        document["stream_id"] = op.stream_id
        document["resume_token"] = op.resume_token
    return document


class OpLines:
    """Writes ops as lines of Extended JSON (`gtom._extjson`): relaxed, or ``canonical``.

    ``uuid_representation`` is the client's, so UUIDs are written back as the binaries they were.
    """

    __slots__ = ("_json",)

    def __init__(
        self, *, canonical: bool = False, uuid_representation: int = UuidRepresentation.STANDARD
    ) -> None:
        """Write relaxed (or ``canonical``) Extended JSON."""
        self._json = ExtendedJSON(canonical=canonical, uuid_representation=uuid_representation)

    def line(self, op: Op) -> str:
        """One op as a line of Extended JSON (no trailing newline)."""
        return self._json.dumps(op_document(op)).decode()

    def lines(self, ops: list[Op]) -> bytes:
        """Ops as lines of Extended JSON, each ending with a newline, as UTF-8 (ASCII)."""
        dumps = self._json.dumps
        return b"".join([dumps(op_document(op)) + b"\n" for op in ops])


_LINES = {False: OpLines(), True: OpLines(canonical=True)}


def op_line(op: Op, *, canonical: bool = False) -> str:
    """One op as a line of Extended JSON (no trailing newline), UUIDs as standard binaries."""
    return _LINES[canonical].line(op)
