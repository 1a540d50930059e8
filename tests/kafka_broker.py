"""A real Apache Kafka broker for the tests: one KRaft node (broker and controller) on 127.0.0.1.

* ``kafka_bootstrap``: ``"127.0.0.1:PORT"`` of a broker started once per test session, or the
  cluster at ``GTOM_TEST_KAFKA_BOOTSTRAP`` when that is set (nothing is started then).
* ``kafka_broker``: that broker as a `KafkaBroker`, whose ``stop()`` and ``start()`` take it down
  and bring it back on the same ports with the same data (skipped with an external cluster).

The broker's jars come from Maven Central: ``make test`` first runs ``mvn`` to copy ``kafka_2.13``
and its runtime dependencies into ``tests/brokers/kafka/lib`` (git-ignored; see ``pom.xml``
there), again only when the pom changes. Run without make, the fixture does it on first use. It
needs ``java`` (17+) and, until ``lib`` is filled, ``mvn``: where they are missing the Kafka tests
are skipped, and both ``make test`` and the test summary say so. ``GTOM_TEST_SKIP_KAFKA=1`` leaves
them out on purpose. Use it from a test module with ``pytest_plugins = ["tests.kafka_broker"]``.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import concurrent.futures
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker_fixtures import opted_out

EXTERNAL_BOOTSTRAP = os.environ.get("GTOM_TEST_KAFKA_BOOTSTRAP")
KAFKA_DIR = Path(__file__).parent / "brokers" / "kafka"
POM = KAFKA_DIR / "pom.xml"
LIB = KAFKA_DIR / "lib"
#: Fills LIB (the pom sets the output directory and the runtime scope).
MVN_COMMAND = ("mvn", "-B", "-q", "-f", str(POM), "dependency:copy-dependencies")
MAIN_JAR = "kafka_2.13-*.jar"
JVM_OPTIONS = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-Djava.awt.headless=true",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
)
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
LOG_TAIL_LINES = 40

_running: set[KafkaBroker] = set()


class BrokerError(RuntimeError):
    """The test broker could not be set up, started or stopped."""


def missing_tools(lib: Path = LIB) -> list[str]:
    """What the machine lacks to run the broker: ``java``, and ``mvn`` while ``lib`` is empty."""
    missing = [] if shutil.which("java") else ["java"]
    if not any(lib.glob(MAIN_JAR)) and shutil.which("mvn") is None:
        missing.append("mvn")
    return missing


def ensure_jars(lib: Path = LIB) -> Path:
    """``lib`` filled with the broker's jars (running Maven if needed); skips without java/mvn."""
    if opted_out("kafka"):
        pytest.skip("kafka tests left out: GTOM_TEST_SKIP_KAFKA is set")
    if shutil.which("java") is None:
        pytest.skip("the Kafka tests need java (17+) on PATH to run a broker")
    lib.mkdir(parents=True, exist_ok=True)
    with (lib / ".lock").open("w") as lock:
        with contextlib.suppress(ImportError):  # another xdist worker may be filling it now
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        if any(lib.glob(MAIN_JAR)):
            return lib
        if shutil.which("mvn") is None:
            pytest.skip(f"the Kafka tests need mvn on PATH once, to fill {lib}")
        try:
            done = subprocess.run(
                MVN_COMMAND, capture_output=True, text=True, timeout=900, check=False
            )
        except subprocess.TimeoutExpired as e:
            raise BrokerError(f"{' '.join(MVN_COMMAND)} took more than {e.timeout}s") from e
        if done.returncode != 0 or not any(lib.glob(MAIN_JAR)):
            output = "\n".join((done.stdout + done.stderr).splitlines()[-LOG_TAIL_LINES:])
            raise BrokerError(f"{' '.join(MVN_COMMAND)} failed (exit {done.returncode}):\n{output}")
    return lib


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def cluster_id(raw: bytes | None = None) -> str:
    """A cluster id as Kafka writes them: a (random) UUID in URL-safe base64, unpadded.

    About one in 64 begins with ``-``: it must be passed as ``--cluster-id=ID``, never as a
    separate argument, or the storage tool reads it as an option.
    """
    return base64.urlsafe_b64encode(raw or uuid.uuid4().bytes).decode().rstrip("=")


async def _metadata_answers(bootstrap: str) -> bool:
    """Whether the broker at ``bootstrap`` answers a metadata request listing a broker."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.errors import KafkaError

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await client.bootstrap()
        metadata = await client.fetch_all_metadata()
        return bool(metadata.brokers())
    except KafkaError:
        return False
    finally:
        await client.close()


class KafkaBroker:
    """One KRaft node (broker + controller) on two free ports, with its data in ``directory``."""

    def __init__(self, lib: Path = LIB, directory: Path | None = None) -> None:
        self.lib = lib
        self.directory = directory or Path(tempfile.mkdtemp(prefix="gtom-kafka-"))
        self.port = free_port()
        self.controller_port = free_port()
        self.properties = self.directory / "server.properties"
        self.log_path = self.directory / "broker.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._formatted = False
        self._write_properties()

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"``: where clients connect."""
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def _write_properties(self) -> None:
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.directory / "data"),
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "auto.create.topics.enable": "true",
            "num.partitions": "3",
            "group.initial.rebalance.delay.ms": "0",
            # After a kill, the controller keeps the dead broker's registration this long, and
            # refuses the restarted one meanwhile: short, so an outage test restarts quickly.
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "1500",
        }
        self.properties.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))

    def _java(self, main_class: str, *args: str) -> list[str]:
        return ["java", *JVM_OPTIONS, "-cp", str(self.lib / "*"), main_class, *args]

    def format(self, cluster: str | None = None) -> None:
        """Format the storage (once): ``kafka-storage.sh format`` with ``cluster`` or a fresh id."""
        command = self._java(
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster or cluster_id()}",  # one argument: an id may begin with "-"
            f"--config={self.properties}",
        )
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=120)
        if done.returncode != 0:
            raise BrokerError(f"formatting the Kafka storage failed:\n{self.log_tail()}")
        self._formatted = True

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the broker (again, on the same ports and data) and wait until it serves."""
        if self.running:
            return
        if not self._formatted:
            self.format()
        deadline = time.monotonic() + timeout
        while not (_bindable(self.port) and _bindable(self.controller_port)):
            if time.monotonic() > deadline:
                raise BrokerError(f"ports {self.port}/{self.controller_port} stay busy")
            time.sleep(0.1)
        command = self._java("kafka.Kafka", str(self.properties))
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        _running.add(self)
        try:
            self._wait_until_serving(deadline)
        except BaseException:
            self.stop(kill=True)
            raise

    def _wait_until_serving(self, deadline: float) -> None:
        """Return once a metadata request works; raise with the log's end if it never does."""
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # works inside an event loop too
            while True:
                if not self.running:
                    raise BrokerError(f"the Kafka broker exited:\n{self.log_tail()}")
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", self.port), timeout=1),
                ):
                    if pool.submit(asyncio.run, _metadata_answers(self.bootstrap)).result():
                        return
                if time.monotonic() > deadline:
                    raise BrokerError(f"the Kafka broker did not start in time:\n{self.log_tail()}")
                time.sleep(0.2)

    def stop(self, *, kill: bool = False, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the broker: a clean shutdown (SIGTERM), or SIGKILL with ``kill`` (a crash)."""
        process, self._process = self._process, None
        _running.discard(self)
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def close(self, *, keep: bool = False) -> None:
        """Stop the broker and delete its directory (unless ``keep``)."""
        self.stop()
        if not keep:
            shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the broker's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@atexit.register
def _kill_leftovers() -> None:
    """Kill brokers a crashed session did not stop (teardown normally does)."""
    for broker in list(_running):
        broker.stop(kill=True)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """A broker this session started; its tests may stop and start it."""
    if EXTERNAL_BOOTSTRAP:
        pytest.skip("needs a broker it can stop and start: GTOM_TEST_KAFKA_BOOTSTRAP is set")
    if opted_out("kafka"):
        pytest.skip("kafka tests left out: GTOM_TEST_SKIP_KAFKA is set")
    broker = KafkaBroker(ensure_jars())
    try:
        broker.start()
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    """``host:port`` of a Kafka cluster: ``GTOM_TEST_KAFKA_BOOTSTRAP`` or the session's broker."""
    if EXTERNAL_BOOTSTRAP:
        return EXTERNAL_BOOTSTRAP
    broker: KafkaBroker = request.getfixturevalue("kafka_broker")
    return broker.bootstrap
