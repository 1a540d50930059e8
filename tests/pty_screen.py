"""A program run in a real pseudo-terminal, its screen rendered as a person would see it.

pexpect gives the program a pty (so it sees a terminal on stdin, stdout and stderr); pyte, a
VT100 emulator, renders what it writes into rows of text. Neither needs root nor tmux.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable

import pexpect
import pyte

__all__ = ["TermScreen"]


class TermScreen:
    """``argv`` running in a ``cols`` x ``rows`` terminal."""

    def __init__(
        self,
        argv: list[str],
        *,
        cols: int = 120,
        rows: int = 40,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        self.screen = pyte.Screen(cols, rows)
        self._stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()  # everything the program wrote, escapes and all
        environment = {**os.environ, "TERM": "xterm-256color", **(env or {})}
        for name in ("NO_COLOR", "COLUMNS", "LINES", "FORCE_COLOR", "TERM_PROGRAM"):
            environment.pop(name, None)
        self.child: pexpect.spawn[bytes] = pexpect.spawn(
            argv[0], argv[1:], dimensions=(rows, cols), env=environment, cwd=cwd
        )
        self.exit_code: int | None = None

    def pump(self, wait: float = 0.05) -> None:
        """Render whatever the program wrote (waiting up to ``wait`` seconds for it)."""
        while True:
            try:
                data = self.child.read_nonblocking(65536, timeout=wait)
            except pexpect.TIMEOUT:
                return
            except pexpect.EOF:
                return
            self.raw += data
            self._stream.feed(data)
            wait = 0.01

    @property
    def text(self) -> str:
        """The screen now: its rows, trailing blanks cut."""
        return "\n".join(line.rstrip() for line in self.screen.display).rstrip()

    def wait_for(
        self, what: str | re.Pattern[str] | Callable[[str], bool], timeout: float = 30
    ) -> str:
        """The screen, once it shows ``what`` (a text, a pattern, or a test of the screen)."""
        holds: Callable[[str], bool]
        if isinstance(what, str):
            holds = lambda screen: what in screen  # noqa: E731
        elif isinstance(what, re.Pattern):
            holds = lambda screen: what.search(screen) is not None  # noqa: E731
        else:
            holds = what
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            screen = self.text
            if holds(screen):
                return screen
            if not self.child.isalive():
                self.pump()
                if holds(self.text):
                    return self.text
                raise AssertionError(f"the program ended; its screen:\n{self.text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not on the screen in {timeout} s: {what!r}\n{screen}")

    def send(self, keys: str) -> None:
        """Type ``keys``."""
        self.child.send(keys)

    def wait_exit(self, timeout: float = 20) -> int:
        """The program's exit code, once it has exited (rendering what it wrote last)."""
        deadline = time.monotonic() + timeout
        while self.child.isalive():
            self.pump()
            if time.monotonic() > deadline:
                raise AssertionError(f"still running after {timeout} s:\n{self.text}")
        self.pump()
        self.child.close()
        code = self.child.exitstatus
        if code is None:  # killed by a signal
            code = -(self.child.signalstatus or 0)
        self.exit_code = code
        return code

    def close(self) -> None:
        """Stop the program if it still runs."""
        if self.child.isalive():
            self.child.terminate(force=True)
        self.child.close()
