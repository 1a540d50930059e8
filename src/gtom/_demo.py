"""``gtom demo``: gtom's main job with no MongoDB installed.

It starts an embedded SecantusDB server (a MongoDB wire-protocol server with a real oplog) in a
temporary directory, tails it with gtom, makes sample changes (inserts, updates, a replacement, a
delete, a transaction, collection DDL, a drop) and prints every event gtom sees as JSON Lines.
SecantusDB is only needed for this demo and the tests; gtom itself never depends on it.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
from typing import Any, TextIO

from pymongo import MongoClient

import gtom
from gtom._extjson import output_codec_options
from gtom._jsonl import op_line

__all__ = ["run_demo", "sample_changes"]

DEMO_DB = "demo"


def sample_changes(client: MongoClient[Any]) -> None:
    """Make the demo's changes in database ``demo``; its final change drops the database."""
    db = client[DEMO_DB]
    users = db.users
    users.insert_many(
        [
            {"_id": 1, "name": "Ada", "langs": ["en"]},
            {"_id": 2, "name": "Grace", "langs": ["en", "fr"]},
            {"_id": 3, "name": "Linus", "langs": ["fi"]},
        ]
    )
    users.update_one({"_id": 1}, {"$set": {"name": "Ada Lovelace"}, "$push": {"langs": "it"}})
    users.update_one({"_id": 2}, {"$unset": {"langs": ""}})
    users.replace_one({"_id": 3}, {"name": "Linus T.", "langs": ["fi", "en"]})
    users.delete_one({"_id": 2})
    db.create_collection("orders")
    with client.start_session() as session, session.start_transaction():
        db.orders.insert_one({"_id": "o1", "user": 1, "total": 42}, session=session)
        users.update_one({"_id": 1}, {"$inc": {"orders": 1}}, session=session)
    db.create_collection("scratch")
    db.scratch.rename("scratch_old")
    db.scratch_old.drop()
    client.drop_database(DEMO_DB)


def run_demo(out: TextIO, *, canonical: bool = False) -> int:
    """Run the demo, printing events to ``out`` and what happens to stderr; the exit code."""
    try:
        import secantus
    except ImportError:
        print(
            "gtom: error: the demo needs SecantusDB (a test server): pip install SecantusDB",
            file=sys.stderr,
        )
        return 2
    path = tempfile.mkdtemp(prefix="gtom-demo-")
    server = secantus.SecantusDBServer(storage_path=path, port=0)
    server.start()
    host, port = server.address
    client: MongoClient[Any] = MongoClient(
        f"mongodb://{host}:{port}/?directConnection=true", **output_codec_options()
    )
    try:
        print(
            f"gtom demo: embedded SecantusDB at {host}:{port}; tailing its oplog", file=sys.stderr
        )
        options = gtom.Options(namespace_filter=lambda op: op.get_database() == DEMO_DB)
        with gtom.start(client, options) as ctx:
            writer = threading.Thread(target=sample_changes, args=(client,), name="demo-writer")
            writer.start()
            count = 0
            for op in ctx:
                out.write(op_line(op, canonical=canonical) + "\n")
                out.flush()
                count += 1
                if op.is_drop_database():
                    break
            writer.join()
        print(f"gtom demo: {count} events; done", file=sys.stderr)
        return 0
    finally:
        client.close()
        server.stop()
        shutil.rmtree(path, ignore_errors=True)
