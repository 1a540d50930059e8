"""Daemons in a cluster: one lease, one leader delivering, hot standbys, fencing by term.

Every ``gtom run`` with the same ``cluster.name`` (and worker, or shard) competes for one lease
document in MongoDB, written with majority write concern::

    {_id: key, holder: "host:pid:nonce", term: 3, version: 118, renewed_at: <date>}

* **The leader** renews the lease every ``lease_ttl / 3`` (``version`` + 1) and delivers. It
  sends only while its last renewal *started* less than ``lease_ttl - margin`` ago (`valid`),
  and each send must end within what is left (`remaining`), so it stops sending before anyone
  may take the lease. A renewal that finds another term means it was deposed: `LeaseLost`.
* **A standby** reads the lease every second. It takes the lease once it has seen the same
  ``(term, version, holder)`` for ``lease_ttl`` on its own clock, with reads that worked all
  that time (so a lease server that was down does not count as a dead leader), by raising the
  term: ``term + 1`` names the new leader. No clocks are compared across machines.
* **Fencing.** The checkpoint carries the term of its writer, and a write with an older term
  fails (`gtom.daemon.checkpoint.MongoStore`): a deposed leader that somehow still runs cannot
  move it. A new leader raises the checkpoint's term before it reads it.
* **Freezes.** A leader frozen by SIGSTOP and woken by SIGCONT after its lease could have been
  taken exits at once (`install_wake_guard`, exit code 20), before any buffered write leaves.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable
from types import FrameType
from typing import Any

from pymongo import AsyncMongoClient, ReturnDocument, WriteConcern
from pymongo.errors import DuplicateKeyError, PyMongoError

from gtom._errors import GtomError
from gtom._retry import describe

__all__ = ["Lease", "LeaseLost", "install_wake_guard", "lease_key", "process_id"]

log = logging.getLogger("gtom.daemon")

#: A standby reads the lease this often (at most; a shorter lease_ttl reads more often).
POLL_SECONDS = 1.0


class LeaseLost(GtomError):  # noqa: N818 - it is what happened, not an "error"
    """This process no longer holds the lease (another took it): it must stop delivering."""


def process_id() -> str:
    """This process among all others of the cluster: ``host:pid:nonce``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_key(name: str, worker: str | None, shard: str | None) -> str:
    """The lease's ``_id``: the cluster name, and the worker or shard this process serves."""
    key = name
    if worker is not None:
        key += f"/worker:{worker}"
    if shard is not None:
        key += f"/shard:{shard}"
    return key


class Lease:
    """One lease of a cluster, as seen by this process (see the module)."""

    def __init__(
        self,
        client: AsyncMongoClient[Any],
        namespace: str,
        key: str,
        ttl: float,
        *,
        holder: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """The lease ``key`` in ``namespace`` (``"db.coll"``), lasting ``ttl`` seconds."""
        database, _, collection = namespace.partition(".")
        self._coll = client[database].get_collection(
            collection, write_concern=WriteConcern("majority")
        )
        self.key = key
        self.ttl = ttl
        self.holder = holder or process_id()
        self.margin = ttl / 5
        self.term = 0
        """The term this process holds (0: none)."""
        self.took_over = False
        """Whether the last `acquire` took the lease from another holder."""
        self._clock = clock
        self._renewed = -float("inf")  # when the last successful renewal (or take) started
        self._version = 0

    @property
    def held(self) -> bool:
        """Whether this process took the lease (and did not lose it, as far as it knows)."""
        return self.term > 0

    def remaining(self) -> float:
        """Seconds this process may still send (0 when it may not)."""
        if not self.held:
            return 0.0
        return max(0.0, self._renewed + self.ttl - self.margin - self._clock())

    def valid(self) -> bool:
        """Whether this process holds the lease and may send now."""
        return self.remaining() > 0

    # -- a standby ---------------------------------------------------------------------------

    async def acquire(self, stopping: asyncio.Event) -> bool:
        """Wait, as a hot standby, until this process holds the lease (True) or ``stopping``."""
        seen: tuple[Any, ...] | None = None
        since = self._clock()
        poll = min(POLL_SECONDS, self.ttl / 3)
        while not stopping.is_set():
            started = self._clock()
            try:
                document = await self._coll.find_one({"_id": self.key})
                if document is None:
                    if await self._create(started):
                        return True
                    continue  # another process created it first: read it
                mark = (document.get("term"), document.get("version"), document.get("holder"))
                if document.get("holder") is None:  # released: no one to wait for
                    if await self._take(document, started):
                        return True
                elif mark != seen:
                    seen, since = mark, started
                elif started - since >= self.ttl and await self._take(document, started):
                    return True
            except PyMongoError as e:
                # Only a lease seen unchanged by reads that worked counts as abandoned.
                seen = None
                log.warning(
                    "cluster: cannot read the lease %r (%s): retrying", self.key, describe(e)
                )
            stop = asyncio.ensure_future(stopping.wait())
            await asyncio.wait({stop}, timeout=poll)
            stop.cancel()
        return False

    async def _create(self, started: float) -> bool:
        try:
            await self._coll.insert_one(
                {
                    "_id": self.key,
                    "holder": self.holder,
                    "term": 1,
                    "version": 0,
                    "renewed_at": _now(),
                }
            )
        except DuplicateKeyError:
            return False
        self._won(1, started, took_over=False)
        return True

    async def _take(self, document: dict[str, Any], started: float) -> bool:
        term = document.get("term")
        if not isinstance(term, int):
            raise GtomError(f"the lease {self.key!r} has no valid term: {document!r}")
        taken = await self._coll.find_one_and_update(
            {
                "_id": self.key,
                "term": term,
                "version": document.get("version"),
                "holder": document.get("holder"),
            },
            {
                "$set": {
                    "holder": self.holder,
                    "term": term + 1,
                    "version": 0,
                    "renewed_at": _now(),
                }
            },
            return_document=ReturnDocument.AFTER,
        )
        if taken is None:
            return False  # someone renewed or took it meanwhile
        self._won(term + 1, started, took_over=document.get("holder") is not None)
        return True

    def _won(self, term: int, started: float, *, took_over: bool) -> None:
        self.term, self._version, self._renewed, self.took_over = term, 0, started, took_over

    # -- the leader ----------------------------------------------------------------------------

    async def renew(self) -> None:
        """Renew the lease once; `LeaseLost` if another process holds it now.

        A renewal that fails (the server is unreachable) raises the pymongo error: the lease
        stays valid until its time is up, and the next renewal may work.
        """
        started = self._clock()
        result = await self._coll.update_one(
            {"_id": self.key, "holder": self.holder, "term": self.term},
            {"$inc": {"version": 1}, "$set": {"renewed_at": _now()}},
        )
        if result.matched_count == 0:
            term = self.term
            self.term = 0
            raise LeaseLost(f"the lease {self.key!r} of term {term} was taken by another process")
        self._renewed = started

    async def keep(self) -> None:
        """Renew every ``ttl / 3`` until cancelled; returns (after logging why) once lost."""
        failing = False
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self.renew()
            except LeaseLost as e:
                log.warning("cluster: lost the lease: %s", e)
                return
            except PyMongoError as e:
                if not failing:
                    log.warning(
                        "cluster: cannot renew the lease %r (%s): sending stops in %.1fs unless "
                        "a renewal works",
                        self.key,
                        describe(e),
                        self.remaining(),
                    )
                failing = True
            else:
                if failing:
                    log.info("cluster: the lease %r is renewed again", self.key)
                failing = False

    async def wait_valid(self) -> None:
        """Return once this process may send (renewals work); `LeaseLost` once it lost it."""
        while not self.valid():
            if not self.held:
                raise LeaseLost(f"this process no longer holds the lease {self.key!r}")
            await asyncio.sleep(0.05)

    async def release(self) -> None:
        """Give the lease up (a clean stop): a standby takes it at once."""
        if not self.held:
            return
        try:
            await self._coll.update_one(
                {"_id": self.key, "holder": self.holder, "term": self.term},
                {"$set": {"holder": None, "renewed_at": _now()}},
            )
        except PyMongoError as e:
            log.warning("cluster: could not release the lease %r (%s)", self.key, describe(e))
        self.term = 0


def install_wake_guard(lease: Lease) -> None:
    """Exit at once (code 20) when woken by SIGCONT after the lease could have been taken.

    A Python signal handler runs in the main thread before any more of its Python code, so no
    batch held in a client's buffer is written after the freeze. (A freeze without SIGCONT, such
    as a GC pause, is caught by the check before each send and by the checkpoint's term.)
    """
    from gtom.daemon import exits

    def woken(signum: int, frame: FrameType | None) -> None:
        if lease.held and not lease.valid():
            os.write(
                2,
                b"gtom: error: woken up after the cluster lease could have been taken: "
                b"stopping at once (another process delivers now)\n",
            )
            os._exit(exits.FENCED)

    signal.signal(signal.SIGCONT, woken)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)
