"""Ops as JSON Lines in MongoDB Extended JSON (relaxed by default, as ``mongoexport`` writes)."""

from __future__ import annotations

from typing import Any

from bson import json_util

from gtom._op import Op

__all__ = ["op_document", "op_line"]

_RELAXED = json_util.RELAXED_JSON_OPTIONS
_CANONICAL = json_util.CANONICAL_JSON_OPTIONS


def op_document(op: Op) -> dict[str, Any]:
    """The fields of an op as one document, in a stable order."""
    txn = None
    if op.txn is not None:
        txn = {"lsid": op.txn.lsid, "txnNumber": op.txn.txn_number, "index": op.txn.index}
    return {
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


def op_line(op: Op, *, canonical: bool = False) -> str:
    """One op as a line of Extended JSON (no trailing newline)."""
    return json_util.dumps(op_document(op), json_options=_CANONICAL if canonical else _RELAXED)
