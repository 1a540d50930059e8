"""Inputs of the decode microbenchmarks, built once per session from the test suite's fixtures.

Every oplog entry and change event starts from a real-shaped one in ``tests/fixtures/`` (the case
is named next to each builder below); only the document is swapped for the ~1 KB order of
`order_document` where a benchmark asks for a document of that size, and the ``_id`` values are
renumbered where one entry holds many writes.

Each input is kept the ways the decoders can meet it:

* ``encoded``: the entry's BSON bytes, as the server sends them (inside a ``getMore`` reply: see
  `getmore_reply`);
* ``decoded``: those bytes decoded with the codec options the oplog tailer and the change stream
  follower decode with (the client's options, ``document_class=dict``);
* ``raw``: a `RawBSONDocument` over the bytes (the decoders accept it; no source hands it over).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import bson
from bson import Decimal128, Int64, ObjectId, Timestamp, json_util
from bson.codec_options import DEFAULT_CODEC_OPTIONS, CodecOptions
from bson.raw_bson import RawBSONDocument

from gtom._async.oplog_source import dict_codec

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"

#: What the oplog tailer decodes its raw batches with for a client with default options (and
#: what the change stream follower gives its decoder): `gtom._async.oplog_source.dict_codec`.
CODEC: CodecOptions[dict[str, Any]] = dict_codec(
    SimpleNamespace(codec_options=DEFAULT_CODEC_OPTIONS)  # type: ignore[arg-type]
)
#: The same options decoding into `RawBSONDocument` (for the raw-input benchmarks).
RAW_CODEC: CodecOptions[RawBSONDocument] = CODEC.with_options(document_class=RawBSONDocument)


@dataclass(frozen=True)
class Input:
    """One oplog entry or change event, in each form a decoder can receive it."""

    encoded: bytes
    """The BSON bytes."""
    decoded: dict[str, Any]
    """Decoded as the tailer and the stream follower decode."""
    raw: RawBSONDocument
    """Over the BSON bytes, undecoded."""

    @classmethod
    def of(cls, document: Mapping[str, Any]) -> Input:
        data = bson.encode(document)
        return cls(data, bson.decode(data, CODEC), RawBSONDocument(data, RAW_CODEC))


def fixture_case(relative: str, name: str) -> dict[str, Any]:
    """A case of ``tests/fixtures/<relative>``, read the way the decoder tests read it."""
    cases = json_util.loads((FIXTURES / relative).read_text())["cases"]
    for case in cases:
        if case["name"] == name:
            return dict(case)
    raise LookupError(f"no case {name!r} in tests/fixtures/{relative}")


def fixture_entry(relative: str, name: str, index: int = 0) -> dict[str, Any]:
    case = fixture_case(relative, name)
    return dict((case.get("entries") or case["events"])[index])


def order_document(number: int = 1234) -> dict[str, Any]:
    """A shop order of about 1 KB of BSON, with the types real documents mix."""
    created = datetime.datetime(2024, 5, 31, 16, 8, 20, 123000)
    items = [
        ("NB-A5-DOT", "Dotted notebook A5, 120 gsm", 2, "12.50", ["paper", "a5"]),
        ("PEN-FP-EF", "Fountain pen, extra fine nib", 1, "48.00", ["pens", "gift"]),
        ("INK-BLU-50", "Blue-black ink, 50 ml bottle", 3, "9.75", ["ink"]),
    ]
    return {
        "_id": ObjectId(f"6650a1b2c3d4e5f6{number:08x}"),
        "orderNo": f"SO-2024-{number:07d}",
        "status": "paid",
        "customer": {
            "_id": ObjectId("64ce90c1cbcfddc143753651"),
            "name": "Ada Lovelace",
            "email": "ada.lovelace@example.com",
            "tier": "gold",
            "address": {
                "street": "12 Analytical Row",
                "city": "London",
                "postcode": "N1 9GU",
                "country": "GB",
            },
        },
        "items": [
            {"sku": sku, "name": name, "qty": qty, "price": Decimal128(price), "tags": tags}
            for sku, name, qty, price, tags in items
        ],
        "subtotal": Decimal128("102.25"),
        "tax": Decimal128("20.45"),
        "total": Decimal128("126.69"),
        "currency": "GBP",
        "payment": {
            "method": "card",
            "brand": "visa",
            "last4": "4242",
            "authCode": "A1B2C3",
            "capturedAt": created + datetime.timedelta(seconds=41),
        },
        "shipping": {
            "carrier": "royal-mail",
            "service": "tracked-48",
            "cost": Decimal128("3.99"),
            "eta": created + datetime.timedelta(days=2),
        },
        "giftWrap": False,
        "notes": None,
        "version": Int64(3),
        "createdAt": created,
        "updatedAt": created + datetime.timedelta(seconds=41),
    }


# -- oplog entries -------------------------------------------------------------------------------


def oplog_insert_1kb() -> dict[str, Any]:
    """crud.json ``insert_int_id_v60_with_o2`` (6.0+: ``o2`` holds the document key)."""
    entry = fixture_entry("oplog/crud.json", "insert_int_id_v60_with_o2")
    document = order_document()
    entry["o"], entry["o2"] = document, {"_id": document["_id"]}
    return entry


def oplog_inputs() -> dict[str, Input]:
    """The oplog benchmarks' entries by case name."""
    txn = fixture_entry("oplog/transactions.json", "txn_mixed_ops_with_create_two_collections_v60")
    # Its inner writes but the create (insert, $v:2 update, delete, insert), renumbered to 10.
    writes = [w for w in txn["o"]["applyOps"] if w["op"] != "c"]
    inner = []
    for n in range(10):
        write = dict(writes[n % len(writes)])
        if write["op"] == "i":
            oid = ObjectId(f"6650a1b2c3d4e5f6a7b8{n:04x}")
            write["o"] = {**write["o"], "_id": oid}
            write["o2"] = {"_id": oid}
        elif write["op"] == "u":
            write["o2"] = {"_id": 100 + n}
        else:
            write["o"] = {"_id": 100 + n}
        inner.append(write)
    txn["o"] = {"applyOps": inner}
    entries = {
        "insert_1kb": oplog_insert_1kb(),
        "update_v2_diff": fixture_entry(
            "oplog/updates_v2_diff.json", "v2_nested_subdiffs_three_levels"
        ),
        "update_v2_set": fixture_entry("oplog/updates_v2_diff.json", "v2_update_section"),
        "update_v1_set": fixture_entry("oplog/updates_v1.json", "v1_set_and_unset_v44"),
        "delete": fixture_entry("oplog/crud.json", "delete_by_id_v60"),
        "command_drop": fixture_entry("oplog/commands.json", "drop_collection_v60"),
        "applyops_txn_10": txn,
    }
    return {name: Input.of(entry) for name, entry in entries.items()}


def getmore_reply(entries: Sequence[Mapping[str, Any]]) -> bytes:
    """mongod's reply to the tailer's ``getMore`` on ``local.oplog.rs`` holding ``entries``.

    pymongo decodes the whole reply with the cursor's codec options (``bson.decode_all``, as
    ``bson._decode_all_selective`` does without type decoders) and hands ``nextBatch`` over.
    """
    last = entries[-1]["ts"] if entries else Timestamp(1717171700, 1)
    return bson.encode(
        {
            "cursor": {
                "nextBatch": entries,
                "id": Int64(8162298355521546397),
                "ns": "local.oplog.rs",
                "postBatchResumeToken": {"ts": last},
            },
            "ok": 1.0,
            "$clusterTime": {
                "clusterTime": last,
                "signature": {"hash": b"\0" * 20, "keyId": Int64(0)},
            },
            "operationTime": last,
        }
    )


def oplog_insert_batch(count: int) -> bytes:
    """A ``getMore`` reply of ``count`` ~1 KB inserts (one full batch of the tailer's)."""
    entries = []
    for n in range(count):
        entry = oplog_insert_1kb()
        document = order_document(n)
        entry["o"], entry["o2"] = document, {"_id": document["_id"]}
        entry["ts"] = Timestamp(1717171700, n + 1)
        entries.append(entry)
    return getmore_reply(entries)


# -- change events ------------------------------------------------------------------------------

STREAM_ID = "shop.orders"


def change_inputs() -> dict[str, Input]:
    """The change event benchmarks' events by case name (crud.json, 6.0 shapes)."""
    insert = fixture_entry("change_events/crud.json", "insert_v60_with_wall_time")
    document = order_document()
    insert["fullDocument"], insert["documentKey"] = document, {"_id": document["_id"]}
    events = {
        "insert_1kb": insert,
        "update": fixture_entry("change_events/crud.json", "update_set_and_unset_v60"),
        "delete": fixture_entry("change_events/crud.json", "delete_v60"),
    }
    return {name: Input.of(event) for name, event in events.items()}
