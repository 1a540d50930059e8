"""A mongo-connector DocManager that only counts what mongo-connector hands it.

Loaded by mongo-connector through the config file's
``docManagers[].docManagerClassPath = "count_doc_manager.DocManager"`` (this folder is on
PYTHONPATH / sys.path). Counts ``upsert`` / ``update`` / ``remove`` calls and every document of
``bulk_upsert`` (the collection dump); commands (``handle_command``) do not count.

When the count reaches ``expect`` it prints the contender's result line and ends the process
with ``os._exit`` (mongo-connector's threads are not joined: the benchmark stops at N).

``contender.py`` sets ``T0`` (a ``time.perf_counter()`` reading) right before it starts the
connector, and ``NOTE`` (the text of the result's note).
"""

import json
import os
import shutil
import sys
import time

from mongo_connector.doc_managers.doc_manager_base import DocManagerBase

T0 = None  # set by contender.py: perf_counter() at start = 0
NOTE = ""  # set by contender.py
TMPDIR = None  # set by contender.py: removed before exiting
STATE = {"count": 0, "first": None, "last": None}


def result_line():
    """The protocol's result object for what was counted so far."""
    out = {
        "count": STATE["count"],
        "start": 0.0,
        "first": STATE["first"],
        "last": STATE["last"],
    }
    if NOTE:
        out["note"] = NOTE
    return json.dumps(out)


def _finish():
    if TMPDIR:
        shutil.rmtree(TMPDIR, ignore_errors=True)
    sys.stderr.flush()
    sys.stdout.write(result_line() + "\n")
    sys.stdout.flush()
    os._exit(0)


class DocManager(DocManagerBase):
    """Counts events; stores nothing."""

    def __init__(self, url=None, unique_key="_id", expect=0, **kwargs):
        self.unique_key = unique_key
        self.expect = int(expect)
        self.command_helper = None  # set by the Connector

    # -- counting ---------------------------------------------------------------------------
    def _count(self, n=1):
        # Called from one thread only (the OplogThread, or the one dump thread that a single
        # doc manager gets), so no lock.
        now = time.perf_counter()
        if STATE["first"] is None:
            STATE["first"] = now - T0
        STATE["count"] += n
        if STATE["count"] >= self.expect:
            STATE["last"] = now - T0
            _finish()

    def upsert(self, doc, namespace, timestamp):
        self._count()

    def bulk_upsert(self, docs, namespace, timestamp):
        count = self._count
        for _doc in docs:
            count()

    def update(self, document_id, update_spec, namespace, timestamp):
        self._count()
        # mongo-connector does not use the return value when tailing; the real doc managers
        # return the updated document.
        return None

    def remove(self, document_id, namespace, timestamp):
        self._count()

    def insert_file(self, f, namespace, timestamp):
        # GridFS file inserts (only for namespaces.gridfs, which the contender does not set).
        self._count()

    # -- not counted --------------------------------------------------------------------------
    def handle_command(self, command_doc, namespace, timestamp):
        pass

    # -- the rest of the interface ------------------------------------------------------------
    def search(self, start_ts, end_ts):
        return iter(())

    def commit(self):
        pass

    def get_last_doc(self):
        # Nothing stored: mongo-connector's rollback finds nothing to roll back.
        return None

    def stop(self):
        pass
