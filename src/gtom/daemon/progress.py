"""How a copy's progress is shown: rich bars on a terminal, a log line every 10 s otherwise.

The bars go to stderr, and only when stderr is a terminal: never into the events (stdout, a
file) nor into a log collected from a pipe. While they are drawn, log lines and other writes to
stderr are printed above them instead of through them. `CopyBars` serves ``gtom run`` (here,
`report_copies`) and ``gtom tail --direct-read`` alike; it needs ``rich`` (``gtom[daemon]``).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import time
from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.file_proxy import FileProxy
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

import gtom

if TYPE_CHECKING:
    from gtom.daemon.metrics import Metrics

__all__ = [
    "LOG_EVERY",
    "PROGRESS_EVERY",
    "CopyBars",
    "close_all_bars",
    "progress_line",
    "report_copies",
]

#: How often a copy's progress is looked at.
PROGRESS_EVERY = 0.5
#: Without a terminal, a log line this often.
LOG_EVERY = 10.0

log = logging.getLogger("gtom.daemon")

#: The bars being drawn (`close_all_bars` stops them before an ``os._exit``).
_drawing: set[CopyBars] = set()


def close_all_bars() -> None:
    """Stop every `CopyBars` being drawn, giving the terminal its cursor back.

    For an exit that skips ``atexit`` (``os._exit`` after a second Ctrl-C).
    """
    for bars in list(_drawing):
        bars.close()


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


class _Documents(ProgressColumn):
    """``1,234/~5,000 docs``: documents read, of the server's estimate when there is one."""

    def render(self, task: Task) -> Text:
        read = int(task.completed)
        if task.total is None:
            return Text(f"{read:,} docs", style="progress.download")
        return Text(f"{read:,}/~{int(task.total):,} docs", style="progress.download")


class CopyBars:
    """A progress bar per copied namespace, drawn on a terminal with ``rich``.

    Make one only when ``stream.isatty()``; `update` it with ``ctx.direct_read_progress()`` and
    `close` it at the end (the bars stay on the screen, complete).
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        """Start drawing on ``stream`` (default: stderr)."""
        self._stream = stream or sys.stderr
        self._console = Console(file=self._stream)
        self._progress = Progress(
            TextColumn("copying [bold]{task.description}[/]"),
            BarColumn(),
            TaskProgressColumn(),
            _Documents(),
            TimeRemainingColumn(elapsed_when_finished=True),
            console=self._console,
            auto_refresh=False,  # refreshed by `update`: no thread of its own
            redirect_stdout=False,  # stdout may carry the events
            redirect_stderr=True,
        )
        self._tasks: dict[str, TaskID] = {}
        self._handlers: list[tuple[logging.StreamHandler[TextIO], TextIO]] = []
        self._progress.start()
        self._route_logs()
        atexit.register(self.close)  # a process ending mid-copy gets its cursor back
        _drawing.add(self)

    def _route_logs(self) -> None:
        """gtom's log handlers hold stderr itself: send their lines above the bars meanwhile."""
        for handler in logging.getLogger("gtom").handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is self._stream:
                self._handlers.append((handler, handler.stream))
                handler.setStream(FileProxy(self._console, self._stream))

    def update(self, progress: dict[str, gtom.DirectReadProgress]) -> None:
        """Show ``progress`` (the copies' progress, by namespace)."""
        for ns, p in progress.items():
            total: float | None = None
            if p.done:
                total = p.read
            elif p.estimated_total:
                total = max(p.estimated_total, p.read)
            task = self._tasks.get(ns)
            if task is None:
                task = self._tasks[ns] = self._progress.add_task(ns, total=total)
            self._progress.update(task, total=total, completed=p.read)
        self._progress.refresh()

    def close(self) -> None:
        """Stop drawing (the last state stays on the screen); idempotent."""
        if self._progress.live.is_started:
            self._progress.refresh()
            self._progress.stop()
        for handler, stream in self._handlers:
            handler.setStream(stream)
        self._handlers.clear()
        atexit.unregister(self.close)
        _drawing.discard(self)


async def report_copies(ctx: gtom.AsyncOpCtx, metrics: Metrics | None = None) -> None:
    """Show the copies' progress until every copy has been read (run it as a task).

    It also keeps ``metrics.copies`` up to date (default: the process's `Metrics`), for
    ``/metrics``.
    """
    if metrics is None:
        from gtom.daemon.metrics import current_metrics

        metrics = current_metrics()
    bars = CopyBars() if sys.stderr.isatty() else None
    last_log = time.monotonic()
    try:
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            progress = ctx.direct_read_progress()
            if not progress:
                continue
            if metrics is not None:
                metrics.copies = dict(progress)
            line = progress_line(progress)
            if bars is not None:
                bars.update(progress)
            elif time.monotonic() - last_log >= LOG_EVERY:
                log.info("copying: %s", line)
                last_log = time.monotonic()
            if all(p.done for p in progress.values()):
                if bars is not None:
                    bars.close()
                log.info("copy read: %s", line)
                return
    finally:  # also when the run ends first (the task is cancelled): show where it got to
        if bars is not None:
            bars.update(ctx.direct_read_progress())
            bars.close()
        if metrics is not None:
            metrics.copies = dict(ctx.direct_read_progress())
