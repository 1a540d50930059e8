"""tools/synchro.py: the sync face is generated from the asyncio one, face-specific blocks too."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "tools"))
import synchro


def test_async_code_becomes_sync_code() -> None:
    source = "async def f(c: AsyncMongoClient) -> None:\n    await c.close()\n"
    assert synchro.unasync(source) == "def f(c: MongoClient) -> None:\n    c.close()\n"


def test_face_specific_blocks_are_resolved_for_the_sync_face() -> None:
    source = (
        "x = call()\n"
        "# synchro: async-only\n"
        "x = await maybe_await(x)\n"
        "# synchro: end\n"
        "    # synchro: sync-only\n"
        "    # lock.release()\n"
        "    # synchro: end\n"
    )
    assert synchro.unasync(source) == "x = call()\n    lock.release()\n"


@pytest.mark.parametrize(
    "source",
    [
        "# synchro: async-only\nx = 1\n",  # never closed
        "# synchro: end\n",  # closes nothing
        "# synchro: sync-only\nx = 1\n# synchro: end\n",  # not commented out
    ],
)
def test_a_malformed_block_is_an_error(source: str) -> None:
    with pytest.raises(ValueError, match=r"synchro|commented out"):
        synchro.face_blocks(source)
