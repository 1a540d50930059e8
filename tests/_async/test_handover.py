"""The hand-over from a copy to tailing: writes during the copy are never lost.

20,000 documents are copied while a writer inserts, updates and deletes; applying every op in
the order received to an empty dict must give exactly the collection's final state.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

import gtom
from tests._async._tcompat import Background

DOCUMENTS = 20_000
WRITES = 1_500


async def _write_while_copying(coll: Any, seed: int) -> None:
    rng = random.Random(seed)
    next_id = DOCUMENTS
    for n in range(WRITES):
        action = rng.random()
        if action < 0.4:
            await coll.insert_one({"_id": next_id, "v": n, "new": True})
            next_id += 1
        elif action < 0.8:
            target = rng.randrange(next_id)
            await coll.update_one({"_id": target}, {"$set": {"v": n}, "$unset": {"old": ""}})
        else:
            await coll.delete_one({"_id": rng.randrange(next_id)})
    await coll.insert_one({"_id": "done"})


def _apply(state: dict[Any, dict[str, Any]], op: gtom.Op) -> None:
    if op.is_delete():
        state.pop(op.id, None)
    elif op.is_insert() or (op.is_update() and op.update_description is None):
        assert op.data is not None
        state[op.id] = dict(op.data)
    elif op.is_update():
        if op.data is not None:  # a change stream's looked-up document
            state[op.id] = dict(op.data)
        elif op.id in state:  # an oplog delta; a document deleted since has a delete to come
            delta = op.update_description
            assert delta is not None
            state[op.id].update(delta["updatedFields"])
            for field in delta["removedFields"]:
                state[op.id].pop(field, None)


@pytest.mark.parametrize("source", ["oplog", "change_stream"])
async def test_applying_copy_and_changes_in_order_gives_the_final_state(
    async_client: Any, db_name: str, source: str
) -> None:
    ns = f"{db_name}.c"
    coll = async_client[db_name].c
    await coll.insert_many([{"_id": i, "v": -1, "old": True} for i in range(DOCUMENTS)])
    if source == "oplog":
        options = gtom.Options(direct_read_ns=[ns], namespace_filter=lambda op: op.namespace == ns)
    else:
        options = gtom.Options(direct_read_ns=[ns], change_stream_ns=[ns], oplog_disabled=True)
    state: dict[Any, dict[str, Any]] = {}
    sources: list[gtom.Source] = []
    async with await gtom.start_async(async_client, options) as ctx:
        writer = Background(lambda: _write_while_copying(coll, seed=len(db_name)))
        async for op in ctx:
            if op.id == "done" and op.source is not gtom.Source.DIRECT_READ:
                break
            sources.append(op.source)
            _apply(state, op)
        await writer.join()
    state.pop("done", None)
    final = {doc["_id"]: doc async for doc in coll.find({"_id": {"$ne": "done"}})}
    assert state == final
    copied = sources.count(gtom.Source.DIRECT_READ)
    assert copied >= DOCUMENTS - WRITES  # the copy, then the changes
    assert set(sources[:copied]) == {gtom.Source.DIRECT_READ}
