"""The command line every contender takes (see PROTOCOL.md); stdlib only, so each peer's own
virtualenv can import it."""

from __future__ import annotations

import argparse

MODES = ("oplog", "changes", "direct")


def parser(
    description: str, after_help: str, modes: tuple[str, ...] = MODES
) -> argparse.ArgumentParser:
    """The protocol's arguments; a contender may add its own."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--uri", required=True)
    p.add_argument("--mode", required=True, choices=modes)
    p.add_argument("--db", required=True)
    p.add_argument("--expect", required=True, type=int)
    p.add_argument("--after", help=after_help)
    p.add_argument("--segments", type=int, default=1)
    return p


def parse_after(text: str) -> tuple[int, int]:
    """``SECS.INC`` as (secs, inc)."""
    secs, _, inc = text.partition(".")
    return int(secs), int(inc or 0)
