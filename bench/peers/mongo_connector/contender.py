"""The mongo-connector 3.1.1 contender (see bench/peers/PROTOCOL.md).

Run with the virtualenv that setup.sh builds (Python 3.11, pymongo 3.13):

    ~/.cache/gtom/venvs/mongo-connector/bin/python bench/peers/mongo_connector/contender.py \\
        --uri URI --mode oplog|changes|direct --db DB --expect N [--after SECS.INC] [--segments K]

mongo-connector runs unmodified, through its own command-line entry point
(``mongo_connector.connector.main``) with a JSON config file written to a temp dir per run. Its
only target is ``count_doc_manager.DocManager`` (this folder), which counts and, at N, prints
the result line and exits.

- ``oplog``: the checkpoint file (``oplogFile``) is written before the start, so the connector
  resumes there and does not dump. Its format (mongo-connector 3.x, ``Connector.
  read_oplog_progress``) is a JSON array ``[replica_set_name, ts_long]`` with
  ``ts_long = (secs << 32) + inc``. On resume, the connector opens ``ts >= checkpoint, op != 'n'``
  and consumes the first entry as the checkpoint itself; if that entry is newer than the
  checkpoint it starts a "rollback" (which, with nothing stored, recurses without end). So the
  checkpoint written is the newest non-no-op entry at or before ``--after`` (found with one
  query before the start): tailing then begins strictly after ``--after``.
- ``direct``: an empty checkpoint file, so the connector dumps every collection of ``--db``
  (``onlyDump``), one ``find().sort(_id)`` cursor per collection, collections one after another.
- ``changes``: unsupported (mongo-connector reads the oplog only).
"""

import collections
import collections.abc
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings

# mongo-connector 3.1.1's namespace_config.py does `from collections import MutableSet`,
# removed in Python 3.10.
collections.MutableSet = collections.abc.MutableSet

HERE = os.path.dirname(os.path.abspath(__file__))


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from protocol import parse_after, parser  # noqa: E402  (bench/peers/protocol.py)


def parse_args(argv=None):
    return parser(
        __doc__.splitlines()[0], "SECS.INC: tail strictly after this oplog timestamp"
    ).parse_args(argv)


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# Throughput options, set explicitly (the values are also mongo-connector's defaults, which
# are already the fastest: no checkpoint writes inside a batch, no commits).
BATCH_SIZE = -1  # batchSize: write the checkpoint only after a cursor batch, never per N docs
BULK_SIZE = 1000  # docManagers[].bulkSize (chunk_size; unused by a counter)
CONTINUE_ON_ERROR = False  # continueOnError: True would re-upsert a failed bulk dump one by one


def options_note(args, extra):
    parts = [
        "mongo-connector 3.1.1 (pymongo 3.13, Python 3.11) unmodified, run through its own"
        " main() with a JSON config; counting doc manager via docManagerClassPath",
        f"namespaces={{{args.db}.*: true}} (include only that db)",
        f"batchSize={BATCH_SIZE}",
        f"bulkSize={BULK_SIZE}",
        "autoCommitInterval=null",
        f"continueOnError={str(CONTINUE_ON_ERROR).lower()}",
        "verbosity=0 (errors only, to stderr)",
    ]
    return "; ".join(parts + extra)


def checkpoint_for(uri, after):
    """(replica set name, ts_long) of the newest non-no-op oplog entry at or before `after`."""
    import pymongo
    from bson.timestamp import Timestamp

    client = pymongo.MongoClient(uri)
    try:
        set_name = client.admin.command("isMaster").get("setName")
        if not set_name:
            raise SystemExit(f"mongo-connector needs a replica set: {uri} has no setName")
        entry = next(
            client.local.oplog.rs.find(
                {"ts": {"$lte": Timestamp(*after)}, "op": {"$ne": "n"}}, {"ts": 1}
            )
            .sort("$natural", pymongo.DESCENDING)
            .limit(1),
            None,
        )
    finally:
        client.close()
    if entry is None:
        raise SystemExit(
            f"no oplog entry (other than no-ops) at or before --after {after[0]}.{after[1]}:"
            " mongo-connector cannot resume there"
        )
    ts = entry["ts"]
    return set_name, (ts.time << 32) + ts.inc, ts


def main(argv=None):
    args = parse_args(argv)
    if args.mode == "changes":
        emit({"unsupported": "mongo-connector reads the oplog only"})
        return 0
    if args.expect <= 0:
        emit({"count": 0, "start": 0.0, "first": None, "last": 0.0})
        return 0

    warnings.simplefilter("ignore", DeprecationWarning)  # pymongo 3.x deprecations it calls
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import count_doc_manager
    from mongo_connector import connector

    workdir = tempfile.mkdtemp(prefix="mongo-connector-run-")
    oplog_file = os.path.join(workdir, "oplog.timestamp")
    config = {
        "mainAddress": args.uri,
        "oplogFile": oplog_file,
        "batchSize": BATCH_SIZE,
        "continueOnError": CONTINUE_ON_ERROR,
        "verbosity": 0,
        "logging": {"type": "stream"},  # a StreamHandler: stderr
        # The include set {db.*}, in the 2.5+ format (the old "include": [...] list is the
        # same filter but logs a deprecation warning).
        "namespaces": {f"{args.db}.*": True},
        "timezoneAware": False,
        "docManagers": [
            {
                "docManagerClassPath": "count_doc_manager.DocManager",
                "bulkSize": BULK_SIZE,
                "autoCommitInterval": None,
                "args": {"expect": args.expect},
            }
        ],
    }
    extra = []
    if args.mode == "oplog":
        if not args.after:
            raise SystemExit("--mode oplog needs --after SECS.INC")
        after = parse_after(args.after)
        set_name, ts_long, ts = checkpoint_for(args.uri, after)
        with open(oplog_file, "w") as f:
            json.dump([set_name, ts_long], f)
        config["noDump"] = True
        config["onlyDump"] = False
        extra.append(
            f"resumes from a pre-written checkpoint file [{set_name!r}, {ts_long}]"
            f" = Timestamp({ts.time}, {ts.inc}) (newest non-no-op entry <= --after), so no dump"
        )
        extra.append(
            "before tailing, its OplogThread queries the oplog 4 times (find_one, the resume"
            " point twice, the oldest entry) and checks its lag (newest entry) every 30 s;"
            " against a server that scans the oplog per query this is most of `first`"
        )
    else:  # direct
        open(oplog_file, "w").close()  # empty: no checkpoint, so it dumps
        config["noDump"] = False
        config["onlyDump"] = True
        extra.append(
            f"--segments {args.segments} ignored: mongo-connector cannot split a collection; it"
            " dumps each collection of the db with one find().sort(_id) cursor, collections one"
            " after another, in one thread (it starts one dump thread per doc manager; one here)"
        )
        extra.append("the dump first reads the newest oplog entry and counts each collection")
    config_file = os.path.join(workdir, "config.json")
    with open(config_file, "w") as f:
        json.dump(config, f)

    count_doc_manager.NOTE = options_note(args, extra)
    count_doc_manager.TMPDIR = workdir
    sys.argv = ["mongo-connector", "-c", config_file]

    t0 = time.perf_counter()
    count_doc_manager.T0 = t0
    with contextlib.suppress(SystemExit):
        connector.main()  # returns only if the connector stops before N
    # The doc manager exits the process at N; getting here means the connector stopped early.
    shutil.rmtree(workdir, ignore_errors=True)
    state = count_doc_manager.STATE
    out = json.loads(count_doc_manager.result_line())
    out["last"] = state["last"]
    out["error"] = f"mongo-connector stopped after {state['count']} of {args.expect} events"
    emit(out)
    sys.stderr.flush()
    os._exit(1)


if __name__ == "__main__":
    sys.exit(main())
