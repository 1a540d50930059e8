"""A separate process that follows one change stream: the "restart" in the resume tests.

    python -m tests.follow_child URI STREAM_ID COUNT [TOKEN_JSON]

Follows STREAM_ID (from TOKEN_JSON, a relaxed Extended JSON resume token, when given), prints
COUNT ops as JSON lines ``{"id": ..., "token": ...}`` and exits 0; exits 3 on a gtom error,
printing it on stderr.
"""

from __future__ import annotations

import sys

from bson import json_util
from pymongo import MongoClient

import gtom


def main(argv: list[str]) -> int:
    uri, stream_id, count = argv[0], argv[1], int(argv[2])
    tokens = {stream_id: json_util.loads(argv[3])} if len(argv) > 3 else {}
    client: MongoClient[dict[str, object]] = MongoClient(uri, serverMonitoringMode="poll")
    options = gtom.Options(oplog_disabled=True, change_stream_ns=[stream_id], resume_tokens=tokens)
    try:
        with gtom.start(client, options) as ctx:
            for _, op in zip(range(count), ctx, strict=False):
                line = {"id": op.id, "token": op.resume_token}
                print(json_util.dumps(line), flush=True)
    except gtom.GtomError as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 3
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
