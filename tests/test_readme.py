"""The README's examples run, against a real server."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import threading
import time
from pathlib import Path
from typing import Any

from tests.conftest import TestServer

README = (Path(__file__).parent.parent / "README.md").read_text()
EXAMPLE_URI = "mongodb://localhost:27017/?replicaSet=rs0"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_the_quick_start_example_prints_the_insert_and_the_update(server: TestServer) -> None:
    quick_start = python_blocks()[0]
    assert EXAMPLE_URI in quick_start
    assert len(quick_start.strip().splitlines()) <= 12
    code = quick_start.replace(EXAMPLE_URI, server.uri)
    out = io.StringIO()
    namespace: dict[str, Any] = {}
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), namespace)
    namespace["client"].close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("i shop.orders ") and "'qty': 2" in lines[0]
    assert lines[1].startswith("u shop.orders ") and "'item': 'tea', 'qty': 3}" in lines[1]


def test_the_asyncio_example_follows_changes(server: TestServer) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(python_blocks()[1], "README.md", "exec"), namespace)

    async def scenario() -> str:
        client = server.async_client()
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                task = asyncio.create_task(namespace["follow"](client))
                # start_async has returned once its tailer runs: writes from now on are seen.
                while not any(t.get_name().startswith("gtom") for t in asyncio.all_tasks()):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                await client.readme_async.c.insert_one({"_id": "hello"})
                for _ in range(100):
                    if "readme_async.c hello" in out.getvalue():
                        break
                    await asyncio.sleep(0.05)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            await client.close()
        return out.getvalue()

    assert "i readme_async.c hello" in asyncio.run(scenario())


def test_the_change_stream_example_prints_the_insert_and_keeps_its_token(
    server: TestServer,
) -> None:
    example = python_blocks()[2]
    assert "change_stream_ns" in example and EXAMPLE_URI in example
    out = io.StringIO()
    namespace: dict[str, Any] = {}
    with contextlib.redirect_stdout(out):
        exec(compile(example.replace(EXAMPLE_URI, server.uri), "README.md", "exec"), namespace)
    namespace["client"].close()
    assert out.getvalue().splitlines() == ["shop.orders i milk"]
    assert "_data" in namespace["saved"]["shop.orders"]


class _ExampleDoneError(Exception):
    pass


def test_the_seed_example_copies_test_test_then_follows_its_changes(server: TestServer) -> None:
    example = python_blocks()[3]
    assert "direct_read_ns" in example and EXAMPLE_URI in example
    admin = server.client()
    admin.test.test.drop()
    admin.test.test.insert_many([{"_id": 1}, {"_id": 2}])
    printed: list[str] = []

    def fake_print(*args: Any, **kwargs: Any) -> None:
        printed.append(" ".join(map(str, args)))
        if "change_stream" in printed[-1]:
            raise _ExampleDoneError

    namespace: dict[str, Any] = {"print": fake_print}
    code = compile(example.replace(EXAMPLE_URI, server.uri), "README.md", "exec")

    def run() -> None:
        with contextlib.suppress(_ExampleDoneError):
            exec(code, namespace)
        namespace["client"].close()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while len(printed) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        admin.test.test.insert_one({"_id": 3})
        thread.join(timeout=30)
        assert not thread.is_alive()
    finally:
        admin.close()
    assert sorted(printed[:2]) == ["got op i 1 from direct_read", "got op i 2 from direct_read"]
    assert printed[2:] == ["got op i 3 from change_stream"]


def test_the_performance_summary_is_the_one_make_bench_wrote() -> None:
    import sys

    bench = Path(__file__).parent.parent / "bench"
    sys.path.insert(0, str(bench))
    try:
        import report
    finally:
        sys.path.remove(str(bench))
    latest = (bench / "results" / "latest.md").read_text()
    assert "quick run" not in latest  # a smoke run is never the published one
    block = README.split(report.README_START, 1)[1].split(report.README_END, 1)[0]
    assert block.strip() == report.summary_block(latest)


def test_the_module_map_names_every_file_of_the_package_and_nothing_else() -> None:
    package = Path(__file__).parent.parent / "src" / "gtom"
    section = README.split("## How it is built", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    named: set[str] = set()
    for row in rows:
        cell = row.split("|")[1:3]
        folder = ""
        for name in re.findall(r"`([^`]+)`", " ".join(cell)):
            if name.endswith("/"):
                folder = name
            elif name.endswith((".py", ".typed")):
                named.add(name if "/" in name else folder + name)
    # The sync face is generated from the asyncio one, file for file.
    named |= {"_sync/" + name[len("_async/") :] for name in named if name.startswith("_async/")}
    files = {
        str(path.relative_to(package))
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert files - named == set(), "files the README's module map leaves out"
    assert named - files == set(), "names in the README's module map that are not files"
