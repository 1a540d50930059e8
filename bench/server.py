"""The benchmark server: SecantusDB's Rust server (`secantusd-rs`) in its own process.

`ensure_rust_server()` builds it once with cargo (crate ``secantus-mdb``, cached in `CACHE`,
outside the clone, so later clones reuse it); `BenchServer` starts it on a free port with a
fresh data directory, or the Python server (``python -m secantus``) when the Rust one cannot be
built, and says which.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

BENCH = Path(__file__).resolve().parent
#: Where builds and the peers' virtualenvs are kept, shared by every clone on the machine:
#: $GTOM_BENCH_CACHE, else $XDG_CACHE_HOME/gtom-bench (~/.cache/gtom-bench).
CACHE = Path(
    os.environ.get("GTOM_BENCH_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gtom-bench"
)
BUILD = CACHE / "build"
VENVS = CACHE / "venvs"
#: The crate, version and Rust toolchain of the server (its rust-version is 1.98).
CRATE, CRATE_VERSION, TOOLCHAIN = "secantus-mdb", "0.5.3-beta.196", "1.98"
RUST_ROOT = BUILD / f"secantus-rs-{CRATE_VERSION}"
RUST_BIN = RUST_ROOT / "bin" / "secantusd-rs"


_T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[bench {time.monotonic() - _T0:5.0f}s] {message}", file=sys.stderr, flush=True)


def ensure_rust_server() -> tuple[Path | None, str]:
    """The built `secantusd-rs` (building it if needed), or (None, why it could not be built)."""
    if RUST_BIN.exists():
        return RUST_BIN, "cached build"
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo/bin/cargo")
    rustup = shutil.which("rustup") or str(Path.home() / ".cargo/bin/rustup")
    if not Path(cargo).exists():
        return None, "cargo is not installed"
    log(f"building {CRATE} {CRATE_VERSION} with Rust {TOOLCHAIN} (once; about 5 minutes)")
    steps = [
        [rustup, "toolchain", "install", TOOLCHAIN, "--profile", "minimal"],
        [
            cargo,
            f"+{TOOLCHAIN}",
            "install",
            CRATE,
            "--version",
            CRATE_VERSION,
            "--locked",
            "--root",
            str(RUST_ROOT),
        ],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return None, f"`{' '.join(step[:3])}` failed: {' / '.join(tail)}"
    return RUST_BIN, "built now"


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
