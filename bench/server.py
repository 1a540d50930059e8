"""The benchmark server: SecantusDB's Rust server (`secantusd-rs`) in its own process.

`ensure_rust_server()` (``tools/secantus_rs.py``) builds it once with cargo, into a cache outside
the clone that every clone and the tests share; `BenchServer` starts it on a free port with a
fresh data directory, or the Python server (``python -m secantus``) when the Rust one cannot be
built, and says which.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tools"))

from secantus_rs import CACHE, CRATE_VERSION  # noqa: E402 - the shared build of the server
from secantus_rs import ensure as ensure_rust_server  # noqa: E402

#: Where the peers' builds and virtualenvs are kept (shared by every clone on the machine).
BUILD = CACHE / "build"
VENVS = CACHE / "venvs"

_T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[bench {time.monotonic() - _T0:5.0f}s] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BenchServer:
    """One server process for the whole run; ``uri`` connects to it."""

    def __init__(self, oplog_entries: int, *, prefer_rust: bool = True) -> None:
        self.path = tempfile.mkdtemp(prefix="gtom-bench-")
        self.port = free_port()
        binary, why = ensure_rust_server() if prefer_rust else (None, "--python-server given")
        common = [
            "--port",
            str(self.port),
            "--storage-path",
            self.path,
            "--oplog-max-entries",
            str(oplog_entries),
            "--log-level",
            "WARNING",
        ]
        if binary is not None:
            self.kind = f"SecantusDB Rust server (secantusd-rs {CRATE_VERSION}, {why})"
            command = [str(binary), *common, "--oplog-retention-seconds", "86400"]
        else:
            self.kind = f"SecantusDB Python server (the Rust server could not be built: {why})"
            command = [sys.executable, "-m", "secantus", *common]
        log(f"server: {self.kind}")
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.path
        )
        self.uri = f"mongodb://127.0.0.1:{self.port}/?directConnection=true"
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the benchmark server exited with {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.close()
        raise RuntimeError("the benchmark server did not start within 60 s")

    def rss_mb(self) -> float:
        """The server's resident memory, for the record."""
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> BenchServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


if __name__ == "__main__":  # `python bench/server.py`: build (or find) the Rust server
    found, reason = ensure_rust_server()
    print(found or f"not built: {reason}")
    sys.exit(0 if found else 1)
