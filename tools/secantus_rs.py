"""SecantusDB's Rust server (``secantusd-rs``), built once per machine and shared by every clone.

The benchmarks run on it, and the tests use it where the Python server cannot go (dates beyond
year 9999, which its Rust server stores and its Python server refuses). It is built with cargo
from crates.io (crate ``secantus-mdb``; its ``rust-version`` needs a newer toolchain than the
machine's, which rustup installs) into `CACHE`, outside the clone:

    python tools/secantus_rs.py          # build it if needed; print its path (exit 1 if it can't)
    python tools/secantus_rs.py --check  # print its path if it is built (exit 1 if not)

`CACHE` is ``$GTOM_CACHE``, else ``$XDG_CACHE_HOME/gtom`` (``~/.cache/gtom``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

#: Where builds are kept, shared by every clone on the machine.
CACHE = Path(
    os.environ.get("GTOM_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gtom"
)
#: The crate, version and Rust toolchain of the server (its rust-version is 1.98).
CRATE, CRATE_VERSION, TOOLCHAIN = "secantus-mdb", "0.5.3-beta.196", "1.98"
ROOT = CACHE / "build" / f"secantus-rs-{CRATE_VERSION}"
BINARY = ROOT / "bin" / "secantusd-rs"


def _tool(name: str) -> str | None:
    found = shutil.which(name) or str(Path.home() / ".cargo" / "bin" / name)
    return found if Path(found).exists() else None


def built() -> Path | None:
    """The server's binary if it is built (``$GTOM_TEST_SECANTUSD_RS`` names another)."""
    named = os.environ.get("GTOM_TEST_SECANTUSD_RS")
    if named:
        return Path(named)
    return BINARY if BINARY.exists() else None


def ensure() -> tuple[Path | None, str]:
    """The built server (building it if needed), or (None, why it could not be built)."""
    found = built()
    if found is not None:
        return found, "cached build"
    cargo, rustup = _tool("cargo"), _tool("rustup")
    if cargo is None or rustup is None:
        return None, "Rust is not installed (cargo and rustup are needed)"
    print(
        f"building {CRATE} {CRATE_VERSION} with Rust {TOOLCHAIN} into {ROOT} (once per machine; "
        f"about 5 minutes)",
        file=sys.stderr,
        flush=True,
    )
    started = time.monotonic()
    install = [cargo, f"+{TOOLCHAIN}", "install", CRATE, "--version", CRATE_VERSION]
    steps = [
        [rustup, "toolchain", "install", TOOLCHAIN, "--profile", "minimal"],
        [*install, "--locked", "--root", str(ROOT)],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return None, f"`{' '.join(step[:3])}` failed: {' / '.join(tail)}"
    print(f"built {BINARY} in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    return BINARY, "built now"


def main() -> int:
    """Build (or with ``--check`` only find) the server; print its path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether it is built")
    args = parser.parse_args()
    found, why = (built(), "not built") if args.check else ensure()
    if found is None:
        print(f"secantusd-rs: {why}", file=sys.stderr)
        return 1
    print(found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
