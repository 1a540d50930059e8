"""Print pytest-benchmark's JSON (``--benchmark-json``) as a markdown table, one row a benchmark.

    python bench/micro/summarize.py [bench/results/micro.json]

Times are per op: a benchmark whose ``extra_info`` has ``ops_per_round`` (a whole batch per
call) has its figures divided by it. The median is shown next to the mean: on a busy machine a
few preempted rounds pull the mean up, the median much less.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DEFAULT = Path(__file__).resolve().parents[1] / "results" / "micro.json"


def rows(report: dict[str, Any]) -> list[list[str]]:
    out = []
    for bench in report["benchmarks"]:
        stats = bench["stats"]
        per_round = bench.get("extra_info", {}).get("ops_per_round", 1)
        mean = stats["mean"] / per_round
        out.append(
            [
                bench["name"],
                f"{mean * 1e6:,.2f}",
                f"{stats['median'] / per_round * 1e6:,.2f}",
                f"{1 / mean:,.0f}",
                f"{stats['stddev'] / per_round * 1e6:,.2f}",
                f"{stats['rounds']:,}",
            ]
        )
    return out


def table(report: dict[str, Any]) -> str:
    header = ["benchmark", "mean µs/op", "median µs/op", "ops/s", "stddev µs", "rounds"]
    lines = [
        "| " + " | ".join(header) + " |",
        "| --- | " + " | ".join("---:" for _ in header[1:]) + " |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows(report)]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT
    report = json.loads(path.read_text())
    machine = report.get("machine_info", {})
    cpu = machine.get("cpu", {})
    python = machine.get("python_version", "?")
    print(f"Python {python} on {cpu.get('brand_raw', '?')} x{cpu.get('count', '?')}, ", end="")
    print(f"{report.get('datetime', '?')}\n")
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
