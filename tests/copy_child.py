"""A separate process that finishes a direct read from a checkpoint (the resume tests).

    python -m tests.copy_child URI NAMESPACE CHECKPOINT_JSON

Reads NAMESPACE from the checkpoint (relaxed Extended JSON of ``ctx.direct_read_checkpoint()``)
to its end, prints each document's ``_id`` as a JSON line and exits 0; exits 3 on a gtom error.
"""

from __future__ import annotations

import sys

from bson import json_util
from pymongo import MongoClient

import gtom


def main(argv: list[str]) -> int:
    uri, namespace, checkpoint = argv[0], argv[1], json_util.loads(argv[2])
    client: MongoClient[dict[str, object]] = MongoClient(uri, serverMonitoringMode="poll")
    options = gtom.Options(
        oplog_disabled=True, direct_read_ns=[namespace], direct_read_resume=checkpoint
    )
    try:
        with gtom.start(client, options) as ctx:
            for op in ctx:
                print(json_util.dumps({"id": op.id}), flush=True)
    except gtom.GtomError as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 3
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
