"""Generate the sync face from the asyncio one: ``src/gtom/_async/*.py`` -> ``src/gtom/_sync/``.

The engine is written once, for asyncio. This tool rewrites it token by token into threaded
code, as pymongo's own ``tools/synchro.py`` does: ``async``/``await`` disappear, async dunder
methods and names become their sync twins (`REPLACEMENTS`), and ``ruff format`` tidies the
result. ``_compat.py`` and ``queue.py`` are hand-written pairs (threads vs. tasks) and are not
generated.

    python tools/synchro.py          # regenerate src/gtom/_sync/ (and tests/_sync/)
    python tools/synchro.py --check  # exit 1 if a generated file is out of date (run by CI)

Where the faces must differ, a block says so, and no shim is needed::

    # synchro: async-only
    result = await maybe_await(result)  # gone from the sync face
    # synchro: end
    # synchro: sync-only
    # threading.get_ident()  # each line commented out here, uncommented in the sync face
    # synchro: end
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tempfile
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: (source dir, target dir) pairs.
TREES = [
    (ROOT / "src" / "gtom" / "_async", ROOT / "src" / "gtom" / "_sync"),
    (ROOT / "tests" / "_async", ROOT / "tests" / "_sync"),
]
HAND_WRITTEN = {"_compat.py", "queue.py", "_tcompat.py", "conftest.py"}
CONFIG = str(ROOT / "pyproject.toml")

#: Names (whole tokens, and whole words in strings and comments) and their sync twins.
REPLACEMENTS = {
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
    "StopAsyncIteration": "StopIteration",
    "AsyncIterator": "Iterator",
    "AsyncIterable": "Iterable",
    "AsyncGenerator": "Generator",
    "asynccontextmanager": "contextmanager",
    "AsyncMongoClient": "MongoClient",
    "AsyncCollection": "Collection",
    "AsyncDatabase": "Database",
    "AsyncCursor": "Cursor",
    "AsyncRawBatchCursor": "RawBatchCursor",
    "AsyncCommandCursor": "CommandCursor",
    "AsyncChangeStream": "ChangeStream",
    "AsyncClientSession": "ClientSession",
    "asynchronous": "synchronous",
    "AsyncOpCtx": "OpCtx",
    "AsyncMultiOpCtx": "MultiOpCtx",
    "start_multi_async": "start_multi",
    "start_async": "start",
    "last_op_timestamp_async": "last_op_timestamp",
    "first_op_timestamp_async": "first_op_timestamp",
    "get_shards_async": "get_shards",
    "_async": "_sync",
    "async_client": "client",
    "async_server": "server",
    "pytest_asyncio": "pytest",
    "asyncio face": "sync face",
}
_WORDS = re.compile(
    r"\b(" + "|".join(re.escape(k) for k in sorted(REPLACEMENTS, key=len, reverse=True)) + r")\b"
)
_PROSE = re.compile(r"\b(?:async |await )")
HEADER = "# Generated from {source} by tools/synchro.py. Edit that one.\n"


_BLOCK = re.compile(r"^(\s*)# synchro: (async-only|sync-only|end)\s*$")


def face_blocks(source: str) -> str:
    """``source`` with its face-specific blocks resolved for the sync face (see the module).

    Raises ValueError for a block that is not closed, or a sync-only line not commented out.
    """
    out: list[str] = []
    block: str | None = None
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        marker = _BLOCK.match(line)
        if marker is not None:
            kind = marker.group(2)
            if (kind == "end") == (block is None):
                raise ValueError(f"line {number}: unexpected '# synchro: {kind}'")
            block = None if kind == "end" else kind
            continue
        if block == "async-only":
            continue
        if block == "sync-only" and line.strip():
            indent = line[: len(line) - len(line.lstrip())]
            code = line.lstrip()
            if not code.startswith("# "):
                raise ValueError(f"line {number}: a sync-only line must be commented out")
            line = indent + code[2:]
        out.append(line)
    if block is not None:
        raise ValueError(f"a '# synchro: {block}' block is not closed")
    return "".join(out)


def unasync(source: str) -> str:
    """The sync twin of one asyncio module's source."""
    source = face_blocks(source)
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))

    def at(pos: tuple[int, int]) -> int:
        return offsets[pos[0] - 1] + pos[1]

    edits: list[tuple[int, int, str]] = []
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for i, tok in enumerate(tokens):
        start, end = at(tok.start), at(tok.end)
        if tok.type == tokenize.NAME and tok.string in ("async", "await"):
            nxt = tokens[i + 1]
            # drop the keyword and the blanks after it: "await f()" -> "f()"
            edits.append((start, at(nxt.start) if nxt.start[0] == tok.end[0] else end, ""))
        elif (
            tok.type == tokenize.NAME and tok.string == "Awaitable" and tokens[i + 1].string == "["
        ):
            # "Awaitable[T]" -> "T": drop the name, its "[" and the matching "]"
            depth = 0
            for close in tokens[i + 1 :]:
                depth += {"[": 1, "]": -1}.get(close.string, 0) if close.type == tokenize.OP else 0
                if depth == 0:
                    break
            edits.append((start, at(tokens[i + 1].end), ""))
            edits.append((at(close.start), at(close.end), ""))
        elif tok.type == tokenize.NAME and tok.string in REPLACEMENTS:
            edits.append((start, end, REPLACEMENTS[tok.string]))
        elif tok.type in (tokenize.STRING, tokenize.COMMENT):
            text = _PROSE.sub("", _WORDS.sub(lambda m: REPLACEMENTS[m.group(1)], tok.string))
            if text != tok.string:
                edits.append((start, end, text))
    out = source
    for start, end, text in sorted(edits, reverse=True):
        out = out[:start] + text + out[end:]
    return out


def generate(target_root: Path | None = None) -> list[Path]:
    """Write every generated file (under ``target_root`` instead of the tree, if given)."""
    written: list[Path] = []
    for src_dir, dst_dir in TREES:
        if not src_dir.is_dir():
            continue
        for src in sorted(src_dir.glob("*.py")):
            if src.name in HAND_WRITTEN:
                continue
            rel = dst_dir.relative_to(ROOT) / src.name
            dst = (target_root or ROOT) / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            header = HEADER.format(source=src.relative_to(ROOT).as_posix())
            dst.write_text(header + unasync(src.read_text()))
            written.append(dst)
    if written:
        files = [str(path) for path in written]
        subprocess.run(
            [sys.executable, "-m", "ruff", "format", "--quiet", "--config", CONFIG, *files],
            check=True,
            cwd=ROOT,
        )
        fix = ["check", "--quiet", "--fix", "--config", CONFIG, "--select", "I,F401,F811"]
        subprocess.run(
            [sys.executable, "-m", "ruff", *fix, *files],
            check=False,
            cwd=ROOT,
        )
    return written


def main() -> int:
    """Regenerate, or with ``--check`` compare the generated files with the tree."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if generated files are stale")
    args = parser.parse_args()
    if not args.check:
        for path in generate():
            print(f"generated {path.relative_to(ROOT)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        stale = []
        for fresh in generate(Path(tmp)):
            current = ROOT / fresh.relative_to(tmp)
            if not current.exists() or current.read_text() != fresh.read_text():
                stale.append(current.relative_to(ROOT))
    if stale:
        print("generated files are out of date; run: python tools/synchro.py", file=sys.stderr)
        for path in stale:
            print(f"  {path}", file=sys.stderr)
        return 1
    print("generated sync files are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
