"""``gtom demo``: gtom's main job with no MongoDB installed.

It starts an embedded SecantusDB server (a MongoDB wire-protocol server with a real oplog) in a
temporary directory, tails it with gtom, makes sample changes (inserts, updates, a replacement, a
delete, a transaction, collection DDL, a drop) and prints every event gtom sees as JSON Lines.
The changes are made one step at a time while gtom tails, each once the previous one has been
printed, so every update carries its document as it was right after the update (gtom fetches
it). It ends with how to try ``gtom run`` and ``gtom top``: ``gtom demo --serve`` keeps the server
up, and a writer making changes in it, until Ctrl-C.
SecantusDB is only needed for this demo and the tests; gtom itself never depends on it.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, TextIO

from pymongo import MongoClient
from pymongo.errors import PyMongoError

import gtom
from gtom._extjson import output_codec_options
from gtom._jsonl import op_line

__all__ = ["keep_writing", "run_demo", "sample_changes"]

DEMO_DB = "demo"
#: How long a step waits for gtom to print the events of the one before (then it goes on).
STEP_TIMEOUT = 10.0
#: ``--serve``: seconds between two rounds of changes of the background writer.
SERVE_EVERY = 0.1


def _no_wait(events: int) -> None:
    """Go on at once (`sample_changes` without a tailer to wait for)."""


def sample_changes(client: MongoClient[Any], paced: Callable[[int], None] = _no_wait) -> None:
    """Make the demo's changes in database ``demo``; its final change drops the database.

    After each step, ``paced(n)`` is called with the number of events made so far: it returns
    once they have been seen, so that the next change waits for them.
    """
    db = client[DEMO_DB]
    users = db.users
    made = 0

    def step(events: int) -> None:
        nonlocal made
        made += events
        paced(made)

    users.insert_many(
        [
            {"_id": 1, "name": "Ada", "langs": ["en"]},
            {"_id": 2, "name": "Grace", "langs": ["en", "fr"]},
            {"_id": 3, "name": "Linus", "langs": ["fi"]},
        ]
    )
    step(3)
    users.update_one({"_id": 1}, {"$set": {"name": "Ada Lovelace"}, "$push": {"langs": "it"}})
    step(1)
    users.update_one({"_id": 2}, {"$unset": {"langs": ""}})
    step(1)
    users.replace_one({"_id": 3}, {"name": "Linus T.", "langs": ["fi", "en"]})
    step(1)
    users.delete_one({"_id": 2})
    step(1)
    db.create_collection("orders")
    step(1)
    with client.start_session() as session, session.start_transaction():
        db.orders.insert_one({"_id": "o1", "user": 1, "total": 42}, session=session)
        users.update_one({"_id": 1}, {"$inc": {"orders": 1}}, session=session)
    step(2)
    db.create_collection("scratch")
    step(1)
    db.scratch.rename("scratch_old")
    step(1)
    db.scratch_old.drop()
    step(1)
    client.drop_database(DEMO_DB)


def keep_writing(client: MongoClient[Any], stop: threading.Event) -> None:
    """Make changes in ``demo.orders`` until ``stop`` is set (about 30 a second).

    Orders are placed, paid and shipped, and now and then one is cancelled (deleted).
    """
    orders = client[DEMO_DB].orders
    number = 0
    try:
        while not stop.wait(SERVE_EVERY):
            number += 1
            orders.insert_one({"_id": number, "item": "tea", "qty": number % 5 + 1, "state": "new"})
            orders.update_one({"_id": number}, {"$set": {"state": "paid"}})
            if number > 1:
                orders.update_one({"_id": number - 1}, {"$set": {"state": "shipped"}})
            if number % 10 == 0:
                orders.delete_one({"_id": number - 5})
    except PyMongoError as e:
        print(f"gtom demo: the writer stopped: {e}", file=sys.stderr)


def run_demo(out: TextIO, *, canonical: bool = False, serve: bool = False, port: int = 0) -> int:
    """Run the demo, printing events to ``out`` and what happens to stderr; the exit code.

    With ``serve``, the server stays up afterwards (on ``port``; 0: any free port) with changes
    being made in it, until SIGINT or SIGTERM.
    """
    try:
        import secantus
    except ImportError:
        print(
            "gtom: error: the demo needs SecantusDB (a test server): pip install SecantusDB",
            file=sys.stderr,
        )
        return 2
    path = tempfile.mkdtemp(prefix="gtom-demo-")
    server = secantus.SecantusDBServer(storage_path=path, port=port)
    try:
        server.start()
    except OSError as e:
        shutil.rmtree(path, ignore_errors=True)
        print(f"gtom: error: cannot serve the demo on port {port}: {e}", file=sys.stderr)
        return 2
    host, port = server.address
    uri = f"mongodb://{host}:{port}/?directConnection=true"
    client: MongoClient[Any] = MongoClient(uri, **output_codec_options())
    try:
        print(
            f"gtom demo: embedded SecantusDB at {host}:{port}; tailing its oplog", file=sys.stderr
        )
        count = _tail_the_changes(client, out, canonical)
        print(f"gtom demo: {count} events; done", file=sys.stderr)
        if not serve:
            print(
                "gtom demo: to try `gtom run` and `gtom top` on this embedded server, run "
                "`gtom demo --serve` (it keeps the server up, with changes in it, until Ctrl-C)",
                file=sys.stderr,
            )
            return 0
        return _serve(client, uri)
    finally:
        client.close()
        server.stop()
        shutil.rmtree(path, ignore_errors=True)


def _tail_the_changes(client: MongoClient[Any], out: TextIO, canonical: bool) -> int:
    """Print the events of `sample_changes`, made while gtom tails; how many there were."""
    printed = 0
    seen = threading.Condition()

    def paced(events: int) -> None:
        with seen:
            seen.wait_for(lambda: printed >= events, timeout=STEP_TIMEOUT)

    options = gtom.Options(namespace_filter=lambda op: op.get_database() == DEMO_DB)
    with gtom.start(client, options) as ctx:
        writer = threading.Thread(
            target=sample_changes, args=(client, paced), name="demo-writer", daemon=True
        )
        writer.start()
        for op in ctx:
            out.write(op_line(op, canonical=canonical) + "\n")
            out.flush()
            with seen:
                printed += 1
                seen.notify_all()
            if op.is_drop_database():
                break
        writer.join()
    return printed


def _serve(client: MongoClient[Any], uri: str) -> int:
    """Keep the server up, with changes made in ``demo.orders``, until SIGINT or SIGTERM."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    writer = threading.Thread(target=keep_writing, args=(client, stop), name="demo-orders")
    writer.start()
    print(
        f"gtom demo: serving {uri}\n"
        f"gtom demo: making changes in {DEMO_DB}.orders (about 30 a second); in another "
        f"terminal, try:\n"
        f"  gtom run --uri '{uri}' --ns {DEMO_DB} --sink file --sink-path demo-events.jsonl "
        f"--checkpoint-path demo-checkpoint.json\n"
        f"  gtom top   # in a third one: the daemon above, live (q quits)\n"
        f"gtom demo: Ctrl-C stops the server",
        file=sys.stderr,
        flush=True,
    )
    while not stop.wait(0.5):
        pass
    writer.join()
    print("gtom demo: stopped", file=sys.stderr)
    return 0
