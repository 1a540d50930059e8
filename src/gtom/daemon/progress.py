"""How the daemon shows a copy's progress: a bar on a terminal, a log line every 10 s otherwise."""

from __future__ import annotations

import asyncio
import logging
import sys
import time

import gtom

__all__ = ["PROGRESS_EVERY", "progress_line", "report_copies"]

#: How often a copy's progress is looked at.
PROGRESS_EVERY = 0.5
#: Without a terminal, a log line this often.
LOG_EVERY = 10.0

log = logging.getLogger("gtom.daemon")


def progress_line(progress: dict[str, gtom.DirectReadProgress]) -> str:
    """One line for the copies' progress: a bar per namespace when its size is known."""
    parts = []
    for ns, p in progress.items():
        if p.estimated_total:
            share = min(1.0, p.read / max(1, p.estimated_total))
            bar = "#" * int(share * 20)
            parts.append(f"{ns} [{bar:<20}] {p.read:,}/~{p.estimated_total:,}")
        else:
            parts.append(f"{ns} {p.read:,}")
    return "copying " + ", ".join(parts)


async def report_copies(ctx: gtom.AsyncOpCtx) -> None:
    """Show the copies' progress until every copy has been read (run it as a task)."""
    tty = sys.stderr.isatty()
    last_log = time.monotonic()
    while True:
        await asyncio.sleep(PROGRESS_EVERY)
        progress = ctx.direct_read_progress()
        if not progress:
            continue
        line = progress_line(progress)
        if tty:
            print(f"\r\x1b[K{line}", end="", file=sys.stderr, flush=True)
        elif time.monotonic() - last_log >= LOG_EVERY:
            log.info("copying: %s", line)
            last_log = time.monotonic()
        if all(p.done for p in progress.values()):
            if tty:
                print(file=sys.stderr)
            log.info("copy read: %s", line)
            return
