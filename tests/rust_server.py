"""SecantusDB's Rust server for the tests that its Python server cannot serve.

Its Python server refuses dates beyond year 9999 or before year 1 (valid BSON); its Rust server
stores them, so the tests of such dates run there. ``make test`` builds the server once per
machine (``tools/secantus_rs.py``, into ``~/.cache/gtom``); ``GTOM_TEST_SECANTUSD_RS`` names
another binary. Where Rust is missing the tests are skipped, and ``make test`` and the test
summary say so; ``GTOM_TEST_SKIP_RUST=1`` leaves them out on purpose.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient, MongoClient

from tests.broker_fixtures import opted_out

sys.path.insert(0, str(Path(__file__).parent.parent / "tools"))
import secantus_rs

__all__ = ["RustServer", "rust_missing", "rust_server"]


def rust_missing() -> str | None:
    """Why the Rust server cannot be had here (None when it can)."""
    if secantus_rs.built() is not None:
        return None
    if shutil.which("cargo") is None and not (Path.home() / ".cargo" / "bin" / "cargo").exists():
        return "Rust (cargo, rustup) is not installed"
    return None


class RustServer:
    """A ``secantusd-rs`` process on a free port with a data directory of its own."""

    def __init__(self, binary: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="gtom-secantus-rs-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.uri = f"mongodb://127.0.0.1:{self.port}/?directConnection=true"
        command = [str(binary), "--port", str(self.port), "--storage-path", str(self.dir)]
        command += ["--log-level", "WARNING", "--cache-size", "128M", "--log-file-max", "16MB"]
        self.proc = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.dir
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(
                        f"secantusd-rs did not start (exit {self.proc.poll()})"
                    ) from None
                time.sleep(0.05)

    def client(self, **kwargs: Any) -> MongoClient[Any]:
        return MongoClient(self.uri, serverSelectionTimeoutMS=20_000, **kwargs)

    def async_client(self, **kwargs: Any) -> AsyncMongoClient[Any]:
        return AsyncMongoClient(self.uri, serverSelectionTimeoutMS=20_000, **kwargs)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def rust_server() -> Iterator[RustServer]:
    """SecantusDB's Rust server, for the whole session."""
    if opted_out("rust"):
        pytest.skip("rust server tests left out: GTOM_TEST_SKIP_RUST is set")
    missing = rust_missing()
    if missing is not None:
        pytest.skip(f"the tests on SecantusDB's Rust server need it built: {missing}")
    binary = secantus_rs.built()
    if binary is None:
        raise RuntimeError(
            "secantusd-rs is not built: make test builds it (once per machine), or run "
            "python tools/secantus_rs.py (or name a binary in GTOM_TEST_SECANTUSD_RS)"
        )
    server = RustServer(binary)
    yield server
    server.close()
