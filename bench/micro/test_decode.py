"""Microbenchmarks of gtom's pure paths: oplog entry -> Op, change event -> Op, Op -> JSON line.

Run (about 10 s; not part of the test suite, whose testpaths is tests/)::

    .venv/bin/python -m pytest bench/micro -q --benchmark-only \\
        --benchmark-json=bench/results/micro.json -p no:xdist
    .venv/bin/python bench/micro/summarize.py bench/results/micro.json

Each benchmark's mean is the cost of one entry (or event, or line), except where
``extra_info["ops_per_round"]`` says a round handles more (summarize.py divides by it).

The oplog inputs come in three forms (see conftest.py):

* ``tailer``: what `OplogTailer` does per entry: the ``getMore`` reply holding the entry decoded
  into dicts with the client's codec options (pymongo does it for the tailer's ``find`` cursor;
  the tailer used to do the same with ``find_raw_batches`` and ``bson.decode_all``), then
  `OplogDecoder.decode`. The tailer's own per-entry bookkeeping (position, pending ops) is not
  included;
* ``decoder``: `OplogDecoder.decode` alone, on the dict the tailer hands it;
* ``raw``: the reply decoded into `RawBSONDocument` and `OplogDecoder.decode` on that (the
  decoder accepts it; the tailer does not use it): whether decoding lazily would pay.

Change events: ``stream`` is what pymongo's change stream does before gtom sees an event (it
decodes each event's raw bytes into the client's document class, ``bson._bson_to_dict``) plus
`ChangeDecoder.decode`;
``decoder`` is the decoder alone on that dict; ``raw`` the decoder on a `RawBSONDocument`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bson
import pytest
from inputs import CODEC, RAW_CODEC, STREAM_ID, Input, getmore_reply, oplog_insert_batch
from pytest_benchmark.fixture import BenchmarkFixture

from gtom import Op
from gtom._async.oplog_source import BATCH_SIZE
from gtom._decode_change import ChangeDecoder
from gtom._decode_oplog import OplogDecoder
from gtom._jsonl import op_line
from gtom.daemon.events import EventMaker

OPLOG_CASES = [
    "insert_1kb",
    "update_v2_diff",
    "update_v2_set",
    "update_v1_set",
    "delete",
    "command_drop",
    "applyops_txn_10",
]
#: How many ops each oplog case decodes to.
OPLOG_OPS = {"applyops_txn_10": 10}
CHANGE_CASES = ["insert_1kb", "update", "delete"]


def oplog_call(form: str, entry: Input) -> Callable[[], list[Op]]:
    """A function decoding ``entry`` the way ``form`` names (see the module docstring)."""
    decoder = OplogDecoder(codec_options=CODEC)
    decode = decoder.decode
    if form == "decoder":
        document = entry.decoded
        return lambda: decode(document)
    reply = getmore_reply([entry.raw])
    codec = CODEC if form == "tailer" else RAW_CODEC

    def from_reply() -> list[Op]:
        ops: list[Op] = []
        for document in bson.decode_all(reply, codec)[0]["cursor"]["nextBatch"]:
            ops += decode(document)
        return ops

    return from_reply


@pytest.mark.parametrize("form", ["tailer", "decoder", "raw"])
@pytest.mark.parametrize("case", OPLOG_CASES)
def test_oplog_entry_to_ops(
    benchmark: BenchmarkFixture, oplog: dict[str, Input], case: str, form: str
) -> None:
    ops = benchmark(oplog_call(form, oplog[case]))
    assert len(ops) == OPLOG_OPS.get(case, 1)
    benchmark.extra_info["entry_bytes"] = len(oplog[case].encoded)


def test_oplog_tailer_full_batch_of_inserts_1kb(benchmark: BenchmarkFixture) -> None:
    """A full batch (BATCH_SIZE ~1 KB inserts): the getMore reply into dicts, each decoded.

    Per op this costs more than one entry alone: the whole batch's documents are alive at once.
    """
    reply = oplog_insert_batch(BATCH_SIZE)
    decode = OplogDecoder(codec_options=CODEC).decode

    def batch() -> int:
        count = 0
        for entry in bson.decode_all(reply, CODEC)[0]["cursor"]["nextBatch"]:
            count += len(decode(entry))
        return count

    assert benchmark(batch) == BATCH_SIZE
    benchmark.extra_info["ops_per_round"] = BATCH_SIZE


def change_call(form: str, event: Input) -> Callable[[], Op | None]:
    decode = ChangeDecoder(STREAM_ID, codec_options=CODEC).decode
    if form == "decoder":
        document = event.decoded
        return lambda: decode(document)
    if form == "raw":
        raw = event.raw
        return lambda: decode(raw)
    data = event.encoded

    def from_stream() -> Op | None:
        document: dict[str, Any] = bson.decode(data, CODEC)
        return decode(document)

    return from_stream


@pytest.mark.parametrize("form", ["stream", "decoder", "raw"])
@pytest.mark.parametrize("case", CHANGE_CASES)
def test_change_event_to_op(
    benchmark: BenchmarkFixture, changes: dict[str, Input], case: str, form: str
) -> None:
    op = benchmark(change_call(form, changes[case]))
    assert op is not None
    benchmark.extra_info["event_bytes"] = len(changes[case].encoded)


def decoded_op(entry: Input) -> Op:
    (op,) = OplogDecoder(codec_options=CODEC).decode(entry.decoded)
    return op


@pytest.mark.parametrize("case", ["insert_1kb", "update_v2_diff"])
@pytest.mark.parametrize("fmt", ["relaxed", "canonical"])
def test_daemon_event_make(
    benchmark: BenchmarkFixture, oplog: dict[str, Input], case: str, fmt: str
) -> None:
    """`EventMaker.make`: event id (BLAKE2b of the _id's BSON) and the JSON payload."""
    op = decoded_op(oplog[case])
    make = EventMaker(canonical=fmt == "canonical").make
    event = benchmark(make, op, "lane")
    benchmark.extra_info["payload_bytes"] = len(event.payload)


@pytest.mark.parametrize("fmt", ["relaxed", "canonical"])
def test_tail_op_line_insert_1kb(
    benchmark: BenchmarkFixture, oplog: dict[str, Input], fmt: str
) -> None:
    """`gtom._jsonl.op_line`, the line ``gtom tail`` writes."""
    op = decoded_op(oplog["insert_1kb"])
    line: Any = benchmark(op_line, op, canonical=fmt == "canonical")
    benchmark.extra_info["line_bytes"] = len(line.encode())
