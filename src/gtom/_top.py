"""``gtom top``: a live terminal dashboard of running ``gtom run`` daemons.

It reads each daemon's ``/metrics`` (``metrics.listen``; ``http://127.0.0.1:9187`` by default)
every second, parsed with ``prometheus_client``'s parser, and shows per daemon: its state
(running, copying, sink down, starting, leader or standby, unreachable), events per second in
and out with a sparkline of the last minute, the lag, a table of rates per namespace and
operation, checkpoint age, queue depth, retries, the sink's health, and the progress of copies.
Rates are averaged over the last `RATE_WINDOW` seconds. ``q`` quits.

On a terminal it draws with ``rich`` (``Live``); with ``--once``, or when stdout is not a
terminal, it prints one plain-text snapshot (scraping twice, an interval apart, for the rates)
and exits. A daemon that cannot be reached is shown as unreachable, never an error.
Needs ``pip install 'gtom[top]'``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import sys
import termios
import time
import tty
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TextIO

from prometheus_client.parser import text_string_to_metric_families
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

__all__ = ["DEFAULT_URL", "Daemon", "Scrape", "parse", "run_top"]

#: Where ``gtom run`` serves its metrics unless ``metrics.listen`` says otherwise.
DEFAULT_URL = "http://127.0.0.1:9187"
#: Seconds between two scrapes (and refreshes of the screen).
INTERVAL = 1.0
#: Seconds the rates are averaged over.
RATE_WINDOW = 5.0
#: Seconds of history the sparklines show.
HISTORY = 60.0
#: The sparkline's levels, lowest first.
SPARKS = "▁▂▃▄▅▆▇█"
OPERATIONS = {"i": "insert", "u": "update", "d": "delete", "c": "command"}

Counts = dict[tuple[str, str], float]


@dataclass
class Copy:
    """A copy's progress, as a daemon reports it."""

    documents: float
    estimated: float | None
    done: bool


@dataclass
class Scrape:
    """One reading of a daemon's ``/metrics``."""

    at: float
    """When it was read (monotonic seconds)."""
    events_in: Counts = field(default_factory=dict)
    events_out: Counts = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    """Every unlabelled sample by name (``gtom_lag_seconds``, ``gtom_sink_healthy``, ...)."""
    copies: dict[str, Copy] = field(default_factory=dict)

    def events(self, direction: str) -> Counts:
        """``events_in`` (``"in"``) or ``events_out``."""
        return self.events_in if direction == "in" else self.events_out

    def get(self, name: str) -> float | None:
        """The unlabelled sample ``gtom_<name>``, if the daemon has it."""
        return self.gauges.get(f"gtom_{name}")

    @property
    def role(self) -> str | None:
        """``"leader"``, ``"standby"``, or None without a cluster."""
        leader = self.get("cluster_leader")
        return None if leader is None else ("leader" if leader else "standby")


def parse(text: str, at: float) -> Scrape:
    """A `Scrape` of the Prometheus text ``text`` read at ``at``."""
    scrape = Scrape(at)
    copies: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = s.labels
            if s.name in ("gtom_events_in_total", "gtom_events_out_total"):
                counts = scrape.events_in if "_in_" in s.name else scrape.events_out
                counts[(labels.get("namespace", ""), labels.get("operation", ""))] = s.value
            elif s.name.startswith("gtom_copy_") and "namespace" in labels:
                copies.setdefault(labels["namespace"], {})[s.name] = s.value
            elif not labels:
                scrape.gauges[s.name] = s.value
    for ns, values in copies.items():
        scrape.copies[ns] = Copy(
            documents=values.get("gtom_copy_documents", 0.0),
            estimated=values.get("gtom_copy_estimated_documents"),
            done=bool(values.get("gtom_copy_done", 0.0)),
        )
    return scrape


def _increase(now: float, then: float) -> float:
    """How much a counter went up (a daemon restarted in between counts from zero)."""
    return now - then if now >= then else now


class Daemon:
    """One daemon watched: its URL, its last minute of scrapes, and what went wrong."""

    def __init__(self, url: str, interval: float = INTERVAL) -> None:
        """Watch the metrics at ``url`` (``host:port`` and a bare URL get ``/metrics``)."""
        parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parts.path in ("", "/"):
            parts = parts._replace(path="/metrics")
        self.url = parts.geturl()
        self.name = parts.netloc
        self.scrapes: deque[Scrape] = deque(maxlen=int(HISTORY / interval) + 2)
        self.error: str | None = None

    def poll(self, timeout: float) -> None:
        """Read the metrics once; on failure remember why (the daemon is unreachable)."""
        try:
            with urllib.request.urlopen(self.url, timeout=timeout) as response:
                text = response.read().decode()
            scrape = parse(text, time.monotonic())
        except OSError as e:  # refused, timed out, an HTTP error status
            reason = getattr(e, "reason", None) or e
            self.error = str(getattr(reason, "strerror", None) or reason)
            return
        except Exception as e:  # not Prometheus text: something else answers there
            self.error = f"unreadable metrics ({type(e).__name__}: {e})"[:200]
            return
        self.error = None
        self.scrapes.append(scrape)

    @property
    def latest(self) -> Scrape | None:
        """The last successful reading."""
        return self.scrapes[-1] if self.scrapes else None

    def _window(self, seconds: float) -> tuple[Scrape, Scrape] | None:
        if len(self.scrapes) < 2:
            return None
        *earlier, now = self.scrapes
        then = earlier[-1]
        for scrape in reversed(earlier):
            if now.at - scrape.at > seconds + 0.01:
                break
            then = scrape
        return then, now

    def rates(self, direction: str, seconds: float = RATE_WINDOW) -> Counts:
        """Events per second by (namespace, operation), ``"in"`` or ``"out"``."""
        window = self._window(seconds)
        if window is None:
            return {}
        then, now = window
        before, after = then.events(direction), now.events(direction)
        elapsed = max(1e-9, now.at - then.at)
        return {k: _increase(v, before.get(k, 0.0)) / elapsed for k, v in after.items()}

    def rate(self, direction: str, seconds: float = RATE_WINDOW) -> float | None:
        """Events per second in total (None until two readings)."""
        return sum(self.rates(direction, seconds).values()) if len(self.scrapes) >= 2 else None

    def history(self, direction: str) -> list[float]:
        """Events per second between consecutive readings, oldest first."""
        out = []
        for then, now in itertools.pairwise(self.scrapes):
            before = then.events(direction)
            moved = sum(_increase(v, before.get(k, 0.0)) for k, v in now.events(direction).items())
            out.append(moved / max(1e-9, now.at - then.at))
        return out

    def delivery_lag(self, seconds: float = RATE_WINDOW) -> float | None:
        """The mean write→delivery time of the events delivered lately (None: none were)."""
        window = self._window(seconds)
        if window is None:
            return None
        then, now = window
        count, total = (
            _increase(now.get(name) or 0.0, then.get(name) or 0.0)
            for name in ("delivery_lag_seconds_count", "delivery_lag_seconds_sum")
        )
        return total / count if count else None

    @property
    def state(self) -> str:
        """unreachable, standby, sink down, copying, starting or running."""
        s = self.latest
        if self.error is not None or s is None:
            return "unreachable"
        if s.role == "standby":
            return "standby"
        if s.get("sink_healthy") == 0:
            return "sink down"
        if any(not c.done for c in s.copies.values()):
            return "copying"
        if s.get("ready") == 0:
            return "starting"
        return "running"


STATE_STYLES = {
    "running": "bold green",
    "copying": "bold cyan",
    "standby": "bold blue",
    "starting": "bold yellow",
    "sink down": "bold white on red",
    "unreachable": "bold white on red",
}


def sparkline(values: list[float], width: int = 60) -> str:
    """``values`` (the last ``width``) as a line of block characters, scaled to their maximum."""
    values = values[-width:]
    top = max(values, default=0.0)
    if top <= 0:
        return SPARKS[0] * len(values)
    return "".join(
        SPARKS[0] if v <= 0 else SPARKS[max(1, round(v / top * (len(SPARKS) - 1)))] for v in values
    )


def _number(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}{unit}"


def _facts(d: Daemon, s: Scrape) -> list[tuple[str, str]]:
    """The daemon's numbers as (label, value) pairs, in the order they are shown."""
    sink = "ok" if s.get("sink_healthy") != 0 else "DOWN"
    facts = [
        ("lag", _number(s.get("lag_seconds"), " s", 2)),
        ("write→delivery", _number(d.delivery_lag(), " s avg", 2)),
        ("checkpoint age", _number(s.get("checkpoint_age_seconds"), " s")),
        ("queue", _number(s.get("queue_depth"), "", 0)),
        ("retries", _number(s.get("retries_total"), "", 0)),
        ("sink", sink),
    ]
    if s.role is not None:
        facts.append(("role", f"{s.role}, term {_number(s.get('cluster_term'), '', 0)}"))
        facts.append(("failovers", _number(s.get("cluster_failovers_total"), "", 0)))
    return facts


def _rows(d: Daemon, s: Scrape) -> Iterator[tuple[str, str, float, float, float, float]]:
    """(namespace, operation, in/s, out/s, in total, out total), by namespace."""
    rate_in, rate_out = d.rates("in"), d.rates("out")
    for key in sorted(set(s.events_in) | set(s.events_out)):
        ns, op = key
        yield (
            ns,
            OPERATIONS.get(op, op),
            rate_in.get(key, 0.0),
            rate_out.get(key, 0.0),
            s.events_in.get(key, 0.0),
            s.events_out.get(key, 0.0),
        )


def _panel(d: Daemon) -> Panel:
    """One daemon, drawn."""
    state = d.state
    title = Text.assemble((f" {d.name} ", "bold"), " ", (f" {state} ", STATE_STYLES[state]))
    s = d.latest
    if s is None or d.error is not None:
        why = Text(f"unreachable: {d.error or 'no reading yet'}", style="bold red")
        if s is not None:
            why.append(f"  (last read {time.monotonic() - s.at:.0f} s ago)", style="dim")
        return Panel(why, title=title, title_align="left", border_style="red")
    border = "red" if state == "sink down" else "blue"
    return Panel(Group(*_body(d, s)), title=title, title_align="left", border_style=border)


def _body(d: Daemon, s: Scrape) -> list[RenderableType]:
    parts: list[RenderableType] = []
    rates = Table.grid(padding=(0, 1))
    for direction in ("in", "out"):
        rates.add_row(
            Text(f"{direction:<3}", style="bold"),
            Text(f"{_number(d.rate(direction))}/s", style="bold"),
            Text(sparkline(d.history(direction)), style="green" if direction == "out" else "cyan"),
        )
    parts.append(rates)
    line = Text()
    for label, value in _facts(d, s):
        style = "bold white on red" if value == "DOWN" else "bold"
        line.append(f"{label} ", style="dim").append(value, style=style).append("   ")
    parts.append(line)
    table = Table(box=box.SIMPLE_HEAD, expand=False, pad_edge=False, show_edge=False)
    for name in ("namespace", "operation"):
        table.add_column(name, no_wrap=True)
    for name in ("in/s", "out/s", "in", "out"):
        table.add_column(name, justify="right", no_wrap=True)
    for ns, op, rin, rout, tin, tout in _rows(d, s):
        table.add_row(ns, op, f"{rin:,.1f}", f"{rout:,.1f}", f"{tin:,.0f}", f"{tout:,.0f}")
    parts.append(table)
    for ns, copy in sorted(s.copies.items()):
        total = copy.documents if copy.done else copy.estimated
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            Text(f"copy {ns}", style="bold"),
            ProgressBar(total=total or None, completed=copy.documents, width=30),
            Text(_copy_text(copy)),
        )
        parts.append(bar)
    return parts


def _copy_text(copy: Copy) -> str:
    if copy.done:
        return f"done, {copy.documents:,.0f} docs"
    if copy.estimated:
        share = min(100.0, 100 * copy.documents / copy.estimated)
        return f"{share:.0f}% {copy.documents:,.0f}/~{copy.estimated:,.0f} docs"
    return f"{copy.documents:,.0f} docs"


def render(daemons: list[Daemon], interval: float) -> RenderableType:
    """The dashboard: a header, then a panel per daemon."""
    header = Text.assemble(
        ("gtom top", "bold"),
        f"  {time.strftime('%H:%M:%S')}  {len(daemons)} daemon(s), every {interval:g} s, "
        f"rates over {RATE_WINDOW:g} s   ",
        ("q", "bold reverse"),
        " quits",
    )
    return Group(header, *(_panel(d) for d in daemons))


def plain(daemons: list[Daemon]) -> str:
    """One snapshot of every daemon as plain text (``--once``, or stdout not a terminal)."""
    lines = [f"gtom top {time.strftime('%Y-%m-%dT%H:%M:%S')}"]
    for d in daemons:
        lines.append(f"{d.url}  {d.state}")
        s = d.latest
        if d.error is not None or s is None:
            lines.append(f"  unreachable: {d.error or 'no reading'}")
            continue
        lines.append(f"  events in {_number(d.rate('in'))}/s  out {_number(d.rate('out'))}/s")
        lines.append("  " + "  ".join(f"{label} {value}" for label, value in _facts(d, s)))
        rows = [("namespace", "operation", "in/s", "out/s", "in", "out")]
        for ns, op, rin, rout, tin, tout in _rows(d, s):
            rows.append((ns, op, f"{rin:.1f}", f"{rout:.1f}", f"{tin:.0f}", f"{tout:.0f}"))
        widths = [max(len(row[i]) for row in rows) for i in range(6)]
        for row in rows:
            cells = [
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  " + "  ".join(cells).rstrip())
        for ns, copy in sorted(s.copies.items()):
            lines.append(f"  copy {ns}: {_copy_text(copy)}")
    return "\n".join(lines) + "\n"


def _poll_all(daemons: list[Daemon], pool: ThreadPoolExecutor, timeout: float) -> None:
    """Read every daemon at once: a slow one holds up no other."""
    for future in [pool.submit(d.poll, timeout) for d in daemons]:
        future.result()


@contextlib.contextmanager
def _keys() -> Iterator[int | None]:
    """stdin in cbreak mode (a key at a time, not echoed), if it is a terminal: its fd."""
    if not sys.stdin.isatty():
        yield None
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _wait_for_quit(fd: int | None, seconds: float) -> bool:
    """Wait ``seconds``; True if ``q`` was pressed meanwhile."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if fd is None:
            time.sleep(left)
            return False
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            keys = os.read(fd, 64)
            if b"q" in keys.lower():
                return True
            if not keys:  # the terminal went away: no more keys to wait for
                fd = None
    return False


def run_top(
    urls: list[str], *, once: bool = False, interval: float = INTERVAL, out: TextIO | None = None
) -> int:
    """Show the daemons at ``urls`` until ``q`` (or print one snapshot); the exit code."""
    out = out or sys.stdout
    daemons = [Daemon(url, interval) for url in urls]
    timeout = max(0.2, min(interval * 0.9, 5.0))
    with ThreadPoolExecutor(max_workers=min(32, len(daemons))) as pool:
        if once or not out.isatty():
            _poll_all(daemons, pool, timeout)
            if any(d.latest is not None for d in daemons):
                time.sleep(interval)  # a second reading, for the rates
                _poll_all(daemons, pool, timeout)
            out.write(plain(daemons))
            out.flush()
            return 0
        console = Console(file=out)
        with _keys() as fd, Live(console=console, screen=True, auto_refresh=False) as live:
            try:
                while True:
                    started = time.monotonic()
                    _poll_all(daemons, pool, timeout)
                    live.update(render(daemons, interval), refresh=True)
                    if _wait_for_quit(fd, interval - (time.monotonic() - started)):
                        return 0
            except KeyboardInterrupt:
                return 0
