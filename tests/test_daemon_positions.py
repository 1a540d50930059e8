"""The daemon's bookkeeping, pure: event ids, checkpoint marks, and what a restart skips."""

from __future__ import annotations

import json
import math

import bson
from bson import Int64, ObjectId, Timestamp, json_util
from bson.codec_options import CodecOptions
from hypothesis import given
from hypothesis import strategies as st

from gtom import Op, Source, Txn
from gtom._extjson import output_codec_options
from gtom._position import ALL, Position
from gtom.daemon.checkpoint import Checkpoint
from gtom.daemon.events import NO_ID, EventMaker, event_id
from gtom.daemon.positions import Skipper, confirm, lane_of

T1, T2 = Timestamp(100, 1), Timestamp(100, 2)
#: What the daemon's own client decodes with (`gtom._extjson`).
OUTPUT = CodecOptions(**output_codec_options())


def op(ts: Timestamp | None, _id: object = 1, **kw: object) -> Op:
    fields: dict[str, object] = {"data": {"_id": _id}, **kw}
    return Op(operation="i", namespace="db.c", id=_id, timestamp=ts, **fields)  # type: ignore[arg-type]


def test_event_ids_are_position_index_namespace_and_id_digest() -> None:
    eid = event_id(T1, 2, "db.c", ObjectId("5f0000000000000000000001"))
    time_inc, index, ns, digest = eid.split(":")
    assert (time_inc, index, ns, len(digest)) == ("100.1", "2", "db.c", 16)
    assert event_id(None, 0, "db.c", 1).startswith("copy:0:db.c:")
    assert event_id(T1, 0, "db.$cmd", NO_ID).endswith(":-")  # a command: no _id at all
    null_id = event_id(T1, 0, "db.c", None)  # a document whose _id is null
    assert not null_id.endswith(":-") and len(null_id.rsplit(":", 1)[1]) == 16
    assert event_id(T1, 0, "db.c", 1) != event_id(T1, 0, "db.c", Int64(1))


def test_a_null_id_is_a_document_key_and_a_digest_of_its_own_unlike_a_command() -> None:
    maker = EventMaker()
    document = maker.make(op(T1, None), "oplog")
    command = maker.make(Op("c", "db.c", data={"drop": "c"}, timestamp=T2), "oplog")
    assert json.loads(document.payload)["document_key"] == {"_id": None}
    assert json.loads(command.payload)["document_key"] is None
    assert document.id.rsplit(":", 1)[1] != "-" and command.id.endswith(":-")


def test_ops_sharing_a_timestamp_are_numbered_and_the_numbering_survives_a_restart() -> None:
    ops = [op(T1, i) for i in range(3)] + [op(T2, 9)]
    first = EventMaker()
    ids = [first.make(o, "oplog").id for o in ops]
    assert [i.split(":")[1] for i in ids] == ["0", "1", "2", "0"]
    again = EventMaker()
    again.resume("oplog", Position(T1, 2))  # two were delivered before the restart
    assert [again.make(o, "oplog").id for o in ops[2:]] == ids[2:]


def test_transaction_ops_are_numbered_by_their_index() -> None:
    txn = {"lsid": {"id": 1}, "txn_number": 5}
    maker = EventMaker()
    ids = [maker.make(op(T1, i, txn=Txn(index=i + 10, **txn)), "oplog").id for i in range(2)]  # type: ignore[arg-type]
    assert [i.split(":")[1] for i in ids] == ["10", "11"]


def test_payload_is_one_json_object_with_the_event_fields() -> None:
    event = EventMaker().make(op(T1, ObjectId("5f0000000000000000000001")), "oplog")
    document = json.loads(event.payload)
    assert document["event_id"] == event.id and document["operation"] == "i"
    assert document["document_key"] == {"_id": {"$oid": "5f0000000000000000000001"}}
    assert document["timestamp"] == {"$timestamp": {"t": 100, "i": 1}}
    decoded = bson.decode(bson.encode({"_id": 1, "x": math.nan}), OUTPUT)  # as the daemon reads
    nan = EventMaker().make(op(T1, 1, data=decoded), "oplog")
    assert json_util.loads(nan.payload)["data"]["x"] != json_util.loads(nan.payload)["data"]["x"]
    canonical = EventMaker(canonical=True).make(op(T1, 1), "oplog")
    assert json.loads(canonical.payload)["id"] == {"$numberInt": "1"}


def test_lanes() -> None:
    assert lane_of(op(T1)) == "oplog"
    assert lane_of(op(T1, shard="s1")) == "shard:s1"
    assert lane_of(op(T1, source=Source.CHANGE_STREAM, stream_id="db")) == "stream:db"
    assert lane_of(op(None, source=Source.DIRECT_READ)) == "copy"


def test_confirming_counts_ops_per_timestamp_and_keeps_stream_tokens() -> None:
    cp = Checkpoint(start=Timestamp(99, 0), oplog=Position(Timestamp(99, 0), ALL))
    confirm(cp, [op(T1, 1), op(T1, 2)])
    assert cp.oplog == Position(T1, 2)
    confirm(cp, [op(T1, 3), op(T2, 4), op(None, 5, source=Source.DIRECT_READ)])
    assert cp.oplog == Position(T2, 1)
    token = {"_data": "82AB"}
    confirm(cp, [op(T1, source=Source.CHANGE_STREAM, stream_id="db", resume_token=token)])
    assert cp.streams["db"].token == token and cp.streams["db"].mark == Position(T1, 1)
    confirm(cp, [op(T1, shard="s1")])
    assert cp.shards == {"s1": Position(T1, 1)}


def test_a_restart_reads_the_position_s_timestamp_again_and_skips_what_was_delivered() -> None:
    cp = Checkpoint(oplog=Position(T1, 2))
    assert cp.oplog is not None and cp.oplog.tail_after() == Timestamp(100, 0)
    assert Position(T1, ALL).tail_after() == T1
    skipper = Skipper(cp)
    again = [op(T1, 1), op(T1, 2), op(T1, 3), op(T2, 4)]
    assert [skipper.skip(o, "oplog") for o in again] == [True, True, False, False]


def test_checkpoint_round_trips_through_extended_json() -> None:
    cp = Checkpoint(start=T1, oplog=Position(T2, 3), copies_done=["db.c"])
    confirm(cp, [op(T2, source=Source.CHANGE_STREAM, stream_id="", resume_token={"_data": "x"})])
    text = json_util.dumps(cp.to_document(), json_options=json_util.CANONICAL_JSON_OPTIONS)
    back = Checkpoint.from_document(json_util.loads(text), "test")
    assert back.to_document() == cp.to_document()


def test_change_stream_transaction_ids_survive_a_restart_in_mid_transaction() -> None:
    def stream_op(document: int, index: int) -> Op:
        txn = Txn(lsid={"id": 1}, txn_number=5, index=index)
        return op(T1, document, source=Source.CHANGE_STREAM, stream_id="db", txn=txn)

    first = EventMaker()
    ids = [first.make(stream_op(d, d), "stream:db").id for d in range(3)]
    # A new process resumes after the first event: its decoder counts the txn from 0 again.
    again = EventMaker()
    again.resume("stream:db", Position(T1, 1))
    later = [again.make(stream_op(d, d - 1), "stream:db").id for d in (1, 2)]
    assert later == ids[1:]


_lanes = st.sampled_from([("oplog", None), ("shard", "s1"), ("shard", "s2"), ("stream", "x")])


@given(
    plan=st.lists(st.tuples(_lanes, st.integers(0, 3), st.booleans()), max_size=30),
    cut=st.integers(0, 30),
)
def test_confirming_a_batch_is_confirming_its_ops_one_by_one(
    plan: list[tuple[tuple[str, str | None], int, bool]], cut: int
) -> None:
    # Each lane's timestamps never go down; lanes interleave as they do in op_c.
    clocks: dict[str, int] = {}
    ops = []
    for (kind, name), step, with_token in plan:
        key = f"{kind}:{name}"
        clocks[key] = clocks.get(key, 1) + step
        ts = Timestamp(100, clocks[key])
        if kind == "stream":
            token = {"_data": f"{ts.inc}"} if with_token else None
            ops.append(
                Op(
                    "i",
                    "db.c",
                    id=1,
                    timestamp=ts,
                    source=Source.CHANGE_STREAM,
                    stream_id=name,
                    resume_token=token,
                )
            )
        else:
            ops.append(Op("i", "db.c", id=1, timestamp=ts, shard=name))
    one_by_one, batched = Checkpoint(), Checkpoint()
    for o in ops:
        confirm(one_by_one, [o])
    confirm(batched, ops[:cut])
    confirm(batched, ops[cut:])
    assert batched.to_document() == one_by_one.to_document()
