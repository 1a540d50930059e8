"""Copy progress as a person sees it: rich bars in a real terminal, never in the events."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from bson import json_util

from tests.conftest import TestServer
from tests.pty_screen import TermScreen
from tests.webhook_server import WebhookServer

GTOM = [sys.executable, "-m", "gtom"]
DOCS = 3000


def stdout_to(path: Path, argv: list[str]) -> list[str]:
    """``argv`` with its stdout sent to ``path``: stderr (and stdin) stay on the terminal."""
    return ["/bin/sh", "-c", f"exec {shlex.join(argv)} > {shlex.quote(str(path))}"]


def test_tail_direct_read_draws_a_bar_on_the_terminal_and_keeps_stdout_json(
    tmp_path: Path, server: TestServer, client: Any, db_name: str
) -> None:
    client[db_name].c.insert_many([{"_id": i, "pad": "x" * 100} for i in range(DOCS)])
    out = tmp_path / "events.jsonl"
    argv = [*GTOM, "tail", "--uri", server.uri, "--direct-read", f"{db_name}.c", "--no-tail"]
    term = TermScreen(stdout_to(out, argv))
    try:
        assert term.wait_exit(60) == 0, term.text
    finally:
        term.close()
    screen = term.text
    bar = next(line for line in screen.splitlines() if line.startswith(f"copying {db_name}.c"))
    assert "━" in bar and "100%" in bar and f"{DOCS:,}/~{DOCS:,} docs" in bar, screen
    assert f"gtom: copy done: {db_name}.c {DOCS:,}/~{DOCS:,} (100%)" in screen
    data = out.read_bytes()
    assert b"\x1b" not in data and "━".encode() not in data  # no bar, no escape in the events
    events = [json_util.loads(line) for line in data.splitlines()]
    assert sorted(e["id"] for e in events) == list(range(DOCS))


def test_tail_direct_read_without_a_terminal_prints_no_bar(
    server: TestServer, client: Any, db_name: str
) -> None:
    client[db_name].c.insert_many([{"_id": i} for i in range(50)])
    argv = [*GTOM, "tail", "--uri", server.uri, "--direct-read", f"{db_name}.c", "--no-tail"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stderr and "━" not in result.stderr
    assert f"gtom: copy done: {db_name}.c 50/~50 (100%)" in result.stderr


def test_run_draws_the_copy_bar_with_log_lines_above_it(
    tmp_path: Path, server: TestServer, client: Any, db_name: str
) -> None:
    client[db_name].c.insert_many([{"_id": i, "pad": "x" * 100} for i in range(DOCS)])
    out = tmp_path / "events.jsonl"
    argv = [
        *GTOM,
        "run",
        *("--uri", server.uri, "--ns", db_name, "--sink", "file", "--sink-path", str(out)),
        *("--checkpoint-path", str(tmp_path / "cp.json"), "--metrics-listen", "off"),
        *("--source-direct-read", f"{db_name}.c", "--source-no-tail"),
    ]
    term = TermScreen(argv)
    try:
        assert term.wait_exit(60) == 0, term.text
    finally:
        term.close()
    screen = term.text
    lines = screen.splitlines()
    bar = next(i for i, line in enumerate(lines) if line.startswith(f"copying {db_name}.c"))
    assert "100%" in lines[bar] and f"{DOCS:,}/~{DOCS:,} docs" in lines[bar], screen
    assert re.search(r" \d+:\d\d:\d\d$", lines[bar]), screen  # finished: the time it took
    # Log lines are whole lines, never drawn over by the bar: those written while it is drawn
    # go above it. "copy complete" (the sink confirmed the last document) comes above or below,
    # as the delivery ends before or after the bar sees the last read.
    log_line = re.compile(r"\d{4}-\d\d-\d\dT[\d:]+Z info ")
    logged = [line for line in lines if log_line.match(line)]
    above = [line for line in lines[:bar] if log_line.match(line)]
    assert any(f"direct read of {db_name}.c in" in line for line in above), screen
    assert any(line.endswith(f"info copy complete: {db_name}.c") for line in logged), screen
    assert not log_line.search(lines[bar]), screen
    assert len(out.read_text().splitlines()) == DOCS


def test_a_second_ctrl_c_during_a_copy_gives_the_terminal_its_cursor_back(
    tmp_path: Path, server: TestServer, client: Any, db_name: str
) -> None:
    # A second signal exits at once with os._exit, which skips atexit: the bars must be stopped
    # first, or the shell is left without a cursor.
    client[db_name].c.insert_many([{"_id": i, "pad": "x" * 100} for i in range(DOCS)])
    hook = WebhookServer()
    hook.delay = 30.0  # every POST hangs: the copy is still on the screen when Ctrl-C comes
    argv = [
        *GTOM,
        "run",
        *("--uri", server.uri, "--ns", db_name, "--sink", "webhook", "--sink-url", hook.url),
        *("--checkpoint-path", str(tmp_path / "cp.json"), "--metrics-listen", "off"),
        *("--source-direct-read", f"{db_name}.c", "--source-no-tail"),
    ]
    term = TermScreen(argv)
    try:
        term.wait_for(f"copying {db_name}.c")
        assert term.screen.cursor.hidden  # rich hides it while it draws
        term.send("\x03")
        term.wait_for("stopping: delivering what was read")
        term.send("\x03")
        assert term.wait_exit(20) == 130, term.text
    finally:
        term.close()
        hook.close()
    assert "gtom: second signal: exiting at once" in term.text
    assert not term.screen.cursor.hidden, term.text
