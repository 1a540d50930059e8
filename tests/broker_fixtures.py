"""Real brokers for the sink tests: ``nats-server -js`` and ``redis-server`` (Debian packages).

Each runs on a free loopback port with a temp directory, can be stopped and started again on the
same port (an outage), and is skipped with the reason only when its binary is absent (``.ci/run``
installs both, so CI never skips).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["Broker", "nats_server", "redis_server"]


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


def _broker(name: str, binary: str, args: list[str]) -> Iterator[Broker]:
    path = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if Path(p).exists()), None
    )
    if path is None:
        pytest.skip(f"{binary} is not installed (apt-get install {binary}; .ci/run does)")
    broker = Broker(name, path, args)
    broker.start()
    yield broker
    broker.close()


@pytest.fixture(scope="session")
def nats_server() -> Iterator[Broker]:
    """A NATS server with JetStream (file storage in a temp directory)."""
    yield from _broker(
        "nats", "nats-server", ["-js", "-a", "127.0.0.1", "-p", "{port}", "-sd", "{dir}"]
    )


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Broker]:
    """A Redis server that keeps its data across a restart (append-only file, fsync always)."""
    yield from _broker(
        "redis",
        "redis-server",
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
