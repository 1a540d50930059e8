"""The ``gtom`` command.

``gtom tail`` prints a deployment's changes as JSON Lines; ``gtom demo`` shows it on an embedded
server; ``gtom top`` shows running daemons live (`gtom._top`).
Every failure the user can fix (a bad URI, an unreachable server, a server with no oplog, an
unknown option) is one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from bson import Timestamp
from pymongo import MongoClient
from pymongo.errors import ConfigurationError as PyMongoConfigurationError
from pymongo.errors import PyMongoError

import gtom
from gtom._extjson import output_codec_options
from gtom._jsonl import OpLines
from gtom._namespaces import parse_position, tail_filter
from gtom._op import Op
from gtom._redact import redact, uri_error
from gtom.consistent import consistent_hash_filter_from_file

if TYPE_CHECKING:
    from gtom.daemon.progress import CopyBars

__all__ = ["main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEFAULT_URI = "mongodb://localhost:27017/"
DEFAULT_TIMEOUT = 10.0


class UsageError(Exception):
    """A mistake on the command line or in its values: one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _parse_after(text: str) -> Callable[[Any, gtom.Options], Timestamp] | None:
    """``now`` (default), ``oldest``, or ``SECONDS[.INCREMENT]`` (a BSON timestamp)."""
    try:
        ts = parse_position(text)
    except ValueError as e:
        raise UsageError(f"--after {e}") from None
    return None if ts is None else lambda client, options: ts


def _tail_filter(namespaces: Sequence[str]) -> Callable[[Op], bool] | None:
    """``--ns`` for the oplog; copies (``--direct-read``) are what was asked for already."""
    try:
        return tail_filter(namespaces)
    except ValueError as e:
        raise UsageError(f"--ns: {e}") from None


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="gtom",
        description="Follow a MongoDB deployment's changes and print them as JSON Lines.",
    )
    parser.add_argument("--version", action="version", version=f"gtom {gtom.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    tail = commands.add_parser(
        "tail",
        help="print a deployment's changes as JSON Lines",
        description="Tail a replica set's oplog (or follow change streams) and print every "
        "change as a line of JSON.",
    )
    tail.add_argument(
        "--uri",
        default=os.environ.get("GTOM_URI", DEFAULT_URI),
        help="connection string of a replica set member (default: $GTOM_URI or %(default)s)",
    )
    tail.add_argument(
        "--ns",
        action="append",
        default=[],
        metavar="NS",
        help="only this database or db.collection (repeatable; default: everything)",
    )
    tail.add_argument(
        "--change-streams",
        action="store_true",
        help="follow change streams instead of the oplog: one per --ns (a collection or a "
        "database), or one for the whole deployment; works through mongos",
    )
    tail.add_argument(
        "--direct-read",
        action="append",
        default=[],
        metavar="DB.COLL",
        help="first copy this collection or view whole (repeatable); tailing starts from before "
        "the copy, so nothing written meanwhile is missed",
    )
    tail.add_argument(
        "--no-tail",
        action="store_true",
        help="with --direct-read: copy, then exit instead of tailing",
    )
    tail.add_argument(
        "--after",
        default="now",
        metavar="WHEN",
        help="start after: now (default), oldest, or a timestamp SECONDS[.INCREMENT]",
    )
    tail.add_argument(
        "--shards-from",
        metavar="CONFIG_URI",
        help="tail every shard of a sharded cluster through its own oplog: the shards are read "
        "from config.shards of this config server (credentials and TLS options of this URI are "
        "used for the shards too), and shards added later are followed as well",
    )
    tail.add_argument(
        "--worker",
        metavar="NAME",
        help="with --workers-file: print only this worker's share of the changes (by _id, on a "
        "consistent-hash ring; commands go to every worker)",
    )
    tail.add_argument(
        "--workers-file",
        metavar="PATH",
        help='TOML file listing every worker: Workers = ["Tom", "Dick", "Harry"]',
    )
    tail.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="how long to look for the server before giving up (default: %(default)s)",
    )
    tail.add_argument(
        "--canonical", action="store_true", help="canonical instead of relaxed Extended JSON"
    )
    tail.add_argument(
        "--include-internal",
        action="store_true",
        help="also print the oplog changes of internal namespaces (the local and config "
        "databases, system.* collections), which are skipped by default",
    )

    for name, text in (
        ("run", "the daemon: deliver every change to a sink, with checkpoints (gtom[daemon])"),
        ("check-config", "validate the daemon's settings without connecting"),
    ):
        commands.add_parser(name, help=text, add_help=False)

    top = commands.add_parser(
        "top",
        help="a live dashboard of running `gtom run` daemons (gtom[top])",
        description="Show running `gtom run` daemons live, from their /metrics: state, events "
        "per second, lag, rates per namespace and operation, checkpoint, queue, retries, sink "
        "health and copies. q quits. With --once, or when stdout is not a terminal, print one "
        "plain-text snapshot and exit.",
    )
    top.add_argument(
        "--url",
        action="append",
        default=[],
        metavar="URL",
        help="a daemon's metrics address, http://HOST:PORT (repeatable; default: "
        "http://127.0.0.1:9187, the default metrics.listen)",
    )
    top.add_argument("--once", action="store_true", help="print one snapshot and exit")
    top.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between two readings (default: %(default)s)",
    )

    demo = commands.add_parser(
        "demo",
        help="run gtom against an embedded server with sample changes (needs SecantusDB)",
        description="Start an embedded SecantusDB server, make sample changes, and print the "
        "events gtom sees as JSON Lines.",
    )
    demo.add_argument(
        "--canonical", action="store_true", help="canonical instead of relaxed Extended JSON"
    )
    demo.add_argument(
        "--serve",
        action="store_true",
        help="afterwards keep the server up, with changes being made in it, until Ctrl-C: "
        "to try `gtom run` and `gtom top` on it",
    )
    demo.add_argument(
        "--port",
        type=int,
        default=0,
        help="with --serve: the server's port (default: any free port)",
    )
    return parser


def tail(
    client: MongoClient[Any], options: gtom.Options, out: TextIO, *, canonical: bool = False
) -> int:
    """Print ``client``'s changes to ``out`` until interrupted (SIGINT/SIGTERM) or a fatal error."""
    lines = _lines(client, canonical)
    return print_ops(gtom.start(client, options), out, lines)


def _lines(client: MongoClient[Any], canonical: bool) -> OpLines:
    """How ops of ``client`` are written: UUIDs back as the binaries the client decoded."""
    return OpLines(
        canonical=canonical, uuid_representation=client.codec_options.uuid_representation
    )


def print_ops(ctx: gtom.OpCtx, out: TextIO, lines: OpLines, *, what: str = "") -> int:
    """Print the ops of a started context to ``out`` until it ends or a signal stops it."""
    _stop_on_signals(ctx)
    options = ctx.options
    if options.change_stream_ns:
        streams = ", ".join(ns or "(whole deployment)" for ns in options.change_stream_ns)
        doing = f"tailing change streams of {streams}"
    elif not options.oplog_disabled:
        doing = f"tailing the oplog{what}"
    else:
        doing = ""
    if options.direct_read_ns:
        copying = f"copying {', '.join(options.direct_read_ns)}{what}"
        doing = f"{copying}, then {doing}" if doing else copying
        threading.Thread(target=_report_copy, args=(ctx,), daemon=True).start()
    print(f"gtom: {doing}; stop with Ctrl-C", file=sys.stderr, flush=True)
    binary = getattr(out, "buffer", None)  # a real stream: write the JSON's bytes as they are
    if binary is not None:
        out.flush()
    try:
        for batch in ctx.batches():
            text = lines.lines(batch)
            if binary is not None:
                binary.write(text)
            else:
                out.write(text.decode())
            if ctx.op_c.empty():  # batch lines while busy, show them at once while idle
                (binary or out).flush()
    finally:
        ctx.stop()
    return EXIT_OK


def _report_copy(ctx: gtom.OpCtx) -> None:
    """Show the copy's progress on a terminal (stderr), and say when it is done.

    With ``rich`` (``gtom[daemon]``) a bar per collection, else one line redrawn in place;
    nothing but the closing line when stderr is not a terminal. Never on stdout (the events).
    """
    tty = sys.stderr.isatty()
    bars = _copy_bars() if tty else None
    try:
        while not ctx.wait_for_direct_reads(timeout=0.5):
            if ctx.stopped:
                return
            if bars is not None:
                bars.update(ctx.direct_read_progress())
            elif tty:
                print(f"\r\x1b[Kgtom: {_progress_line(ctx)}", end="", file=sys.stderr, flush=True)
        if bars is not None:
            bars.update(ctx.direct_read_progress())
    finally:
        if bars is not None:
            bars.close()
    end = "\r\x1b[K" if tty and bars is None else ""
    print(f"{end}gtom: copy done: {_progress_line(ctx)}", file=sys.stderr, flush=True)


def _copy_bars() -> CopyBars | None:
    """Rich progress bars on stderr, if ``rich`` is installed."""
    try:
        from gtom.daemon.progress import CopyBars
    except ImportError:
        return None
    return CopyBars()


def _progress_line(ctx: gtom.OpCtx) -> str:
    parts = []
    for ns, progress in ctx.direct_read_progress().items():
        if progress.estimated_total:
            share = min(100, 100 * progress.read // max(1, progress.estimated_total))
            parts.append(f"{ns} {progress.read:,}/~{progress.estimated_total:,} ({share}%)")
        else:
            parts.append(f"{ns} {progress.read:,}")
    return ", ".join(parts)


def _stop_on_signals(ctx: gtom.OpCtx) -> None:
    def stop(signum: int, frame: FrameType | None) -> None:
        ctx.stop()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)


def _run_tail(args: argparse.Namespace) -> int:
    after = _parse_after(args.after)
    if args.no_tail and not args.direct_read:
        raise UsageError("--no-tail needs --direct-read (there would be nothing to do)")
    if (args.worker is None) != (args.workers_file is None):
        raise UsageError("--worker and --workers-file go together (this worker's name, and all)")
    if args.shards_from and args.change_streams:
        raise UsageError(
            "--shards-from tails each shard's oplog; change streams follow a sharded cluster "
            "through mongos: use --change-streams --uri MONGOS_URI instead"
        )
    copy = gtom.Options(
        direct_read_ns=list(args.direct_read), include_internal=args.include_internal
    )
    if args.worker is not None:
        copy = copy.replace(filter=consistent_hash_filter_from_file(args.worker, args.workers_file))
    if args.no_tail:
        options = copy.replace(oplog_disabled=True)
    elif args.change_streams:
        options = copy.replace(
            oplog_disabled=True, change_stream_ns=list(args.ns) or [""], after=after
        )
    else:
        options = copy.replace(namespace_filter=_tail_filter(args.ns), after=after)
    if args.timeout <= 0:
        raise UsageError(f"--timeout must be a number of seconds > 0, got {args.timeout}")
    if args.shards_from:
        return _tail_shards(args.shards_from, options, args)
    client = _client(args.uri, args.timeout)
    try:
        return tail(client, options, sys.stdout, canonical=args.canonical)
    finally:
        client.close()


def _client(uri: str, timeout: float, **kwargs: Any) -> MongoClient[Any]:
    """A client whose documents `OpLines` writes exactly (see `gtom._extjson`)."""
    try:
        return MongoClient(
            uri, serverSelectionTimeoutMS=int(timeout * 1000), **output_codec_options(), **kwargs
        )
    except (PyMongoConfigurationError, ValueError, TypeError) as e:
        raise UsageError(f"invalid MongoDB URI: {uri_error(uri, e)}") from e


def _tail_shards(config_uri: str, options: gtom.Options, args: argparse.Namespace) -> int:
    """``--shards-from``: every shard listed by the config server, and those added later."""
    config = _client(config_uri, args.timeout)
    clients: list[MongoClient[Any]] = []

    def open_shard(info: gtom.ShardInfo) -> MongoClient[Any]:
        # The shards get the config URI's credentials and options, with their own hosts and set.
        client = _client(info.get_url(like=config_uri), args.timeout)
        clients.append(client)
        return client

    try:
        listen_after: Timestamp | None = None
        if not options.oplog_disabled:
            try:  # before reading config.shards: a shard added meanwhile is not missed
                listen_after = gtom.last_op_timestamp(config)
            except gtom.GtomError as e:
                _warn(f"shards added later will not be followed: {e}")
        shards = gtom.get_shards(config)
        if not shards:
            raise UsageError(f"config.shards of {redact(config_uri)} lists no shard")
        ctx = gtom.start_multi({str(info.id): open_shard(info) for info in shards}, options)
        if listen_after is not None:
            try:
                ctx.add_shard_listener(config, None, open_shard, after=listen_after)
            except gtom.GtomError as e:
                _warn(f"shards added later will not be followed: {e}")
        names = ", ".join(str(info.id) for info in shards)
        lines = _lines(config, args.canonical)
        return print_ops(ctx, sys.stdout, lines, what=f" of shards {names}")
    finally:
        for client in clients:
            client.close()
        config.close()


def _warn(message: str) -> None:
    print(f"gtom: warning: {redact(message)}", file=sys.stderr)


#: The cyclic garbage collector's first threshold in gtom's own processes (Python's is 700).
GC_THRESHOLD = 100_000


def tune_gc() -> None:
    """Collect garbage less often in a process of gtom's own (not in a library user's).

    Every document becomes a dict, so the collector's default (a collection per 700 new
    objects) runs every few events, each time over everything alive. Raising the first threshold
    and freezing what exists at start (modules, classes) took 10% off ``gtom run``'s time per
    event; gtom makes few reference cycles, so memory stays flat (``make bench`` checks it).
    """
    import gc

    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gtom`` command line; return the exit code."""
    if argv is None:  # the command itself, not a caller's process
        tune_gc()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("run", "check-config"):
        return _run_daemon(argv)
    try:
        args = _build_parser().parse_args(argv)
        if args.command == "tail":
            return _run_tail(args)
        if args.command == "top":
            return _run_top(args)
        from gtom._demo import run_demo

        return run_demo(sys.stdout, canonical=args.canonical, serve=args.serve, port=args.port)
    except UsageError as e:
        return _fail(str(e), EXIT_USAGE)
    except gtom.GtomError as e:
        return _fail(str(e), EXIT_USAGE)
    except PyMongoError as e:
        return _fail(f"MongoDB error: {e}", EXIT_ERROR)
    except BrokenPipeError:
        # The reader went away (e.g. `gtom tail | head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _run_top(args: argparse.Namespace) -> int:
    if not 0.1 <= args.interval <= 3600:
        raise UsageError(f"--interval must be between 0.1 and 3600 seconds, got {args.interval}")
    try:
        from gtom._top import DEFAULT_URL, run_top
    except ImportError as e:
        raise UsageError(
            f"gtom top needs its dependencies ({e.name} is missing): pip install 'gtom[top]'"
        ) from None
    return run_top(args.url or [DEFAULT_URL], once=args.once, interval=args.interval)


def _run_daemon(argv: list[str]) -> int:
    try:
        from gtom.daemon.cli import main as daemon_main
    except ImportError as e:
        return _fail(
            f"gtom {argv[0]} needs the daemon's dependencies ({e.name} is missing): "
            f"pip install 'gtom[daemon]'",
            EXIT_USAGE,
        )
    return daemon_main(argv)


def _fail(message: str, code: int) -> int:
    print(f"gtom: error: {redact(message)}", file=sys.stderr)
    return code
