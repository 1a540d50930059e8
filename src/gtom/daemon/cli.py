"""``gtom run`` and ``gtom check-config``: the daemon's command line.

Every setting of `gtom.daemon.config` is a flag ``--<section>-<key>``; ``--uri``, ``--ns`` and
``--sink`` are short for ``--source-uri``, ``--source-namespaces`` and ``--sink-type``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from pymongo.errors import PyMongoError

from gtom._errors import GtomError
from gtom._redact import Scrubber, redact, shown
from gtom._retry import translate
from gtom.daemon import exits
from gtom.daemon.config import ALIASES, SECTIONS, Config, load, secrets_of, setting_kind
from gtom.daemon.errors import ConfigError

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see '{self.prog} --help')", exits.USAGE)


def _parser(command: str) -> _Parser:
    parser = _Parser(
        prog=f"gtom {command}",
        description=(
            "Follow a MongoDB deployment and deliver every change to a sink, checkpointing what "
            "the sink confirmed."
            if command == "run"
            else "Validate the settings (file, environment, flags) without connecting."
        ),
    )
    parser.add_argument("--config", "-c", metavar="PATH", help="the TOML settings file")
    if command == "run":
        parser.add_argument(
            "--reset-checkpoint",
            action="store_true",
            help="forget the saved checkpoint and start over",
        )
    shorthand = {value: key for key, value in ALIASES.items()}
    for section, model in SECTIONS.items():
        group = parser.add_argument_group(f"[{section}]")
        for key, field in model.model_fields.items():
            names = [f"--{section}-{key}".replace("_", "-")]
            if (section, key) in shorthand:
                names.insert(0, f"--{shorthand[(section, key)]}")
            kind = setting_kind(section, key)
            extra: dict[str, object] = {}
            if kind in ("list", "dict"):
                extra["action"] = "append"
            elif kind == "bool":
                extra.update(nargs="?", const="true")
            group.add_argument(
                *names,
                dest=f"{section}.{key}",
                metavar="VALUE" if kind != "dict" else "NAME=VALUE",
                help=field.description,
                **extra,  # type: ignore[arg-type]
            )
    return parser


def parse(argv: Sequence[str]) -> tuple[str, Config, argparse.Namespace]:
    """The command, its validated settings and its other arguments."""
    command, rest = argv[0], list(argv[1:])
    args = _parser(command).parse_args(rest)
    flags: dict[tuple[str, str], list[str]] = {}
    for dest, value in vars(args).items():
        if "." in dest and value is not None:
            section, key = dest.split(".", 1)
            flags[(section, key)] = value if isinstance(value, list) else [value]
    return command, load(args.config, flags), args


def main(argv: Sequence[str]) -> int:
    """Run ``gtom run`` or ``gtom check-config``; the exit code.

    Everything it prints goes through a `Scrubber` of the config's secrets: URL passwords and
    secret options, configured header values and the HMAC key (a webhook's answer that echoes
    the request, for one, holds them).
    """
    scrub = Scrubber()
    try:
        command, config, args = parse(argv)
        scrub = Scrubber(secrets_of(config))
        if command == "check-config":
            source = config.source
            what = "change streams" if source.change_streams else "the oplog"
            if source.shards_from:
                what = "every shard's oplog"
            print(
                f"gtom: config OK: follow {what} of {redact(source.shards_from or source.uri)}, "
                f"deliver to {config.sink.type}, checkpoint in {config.checkpoint.store}"
            )
            return exits.OK
        from gtom.daemon import logs
        from gtom.daemon.runner import Runner

        logs.setup(config.log.format, config.log.level, scrub=scrub)
        return asyncio.run(Runner(config, reset=args.reset_checkpoint).run())
    except ConfigError as e:
        return _fail(str(e), e.exit_code, scrub)
    except GtomError as e:
        return _fail(str(e), exits.code_for(e), scrub)
    except KeyboardInterrupt:
        return exits.INTERRUPTED
    except PyMongoError as e:
        error = translate(e, "following the deployment")
        return _fail(str(error), exits.code_for(error), scrub)
    except Exception as e:  # a bug: one line, and the traceback in the debug log only
        logging.getLogger("gtom.daemon").debug("unexpected error", exc_info=True)
        return _fail(f"unexpected {type(e).__name__}: {e}", exits.ERROR, scrub)


def _fail(message: str, code: int, scrub: Scrubber) -> int:
    print(f"gtom: error: {scrub(shown(message, 2000)[1:-1])}", file=sys.stderr)
    return code
