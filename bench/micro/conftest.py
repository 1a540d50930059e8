"""Fixtures of the decode microbenchmarks: their inputs (see inputs.py), built once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from inputs import Input, change_inputs, oplog_inputs

#: pytest-benchmark options given other defaults here (the command line still wins): at most
#: about half a second of rounds per benchmark keeps the whole run near 10 s, and pytest-benchmark
#: calibrates the iterations per round to its timer's resolution.
DEFAULTS = {"max_time": 0.5, "min_rounds": 20}


def pytest_configure(config: pytest.Config) -> None:
    """Set `DEFAULTS`; create the directory of ``--benchmark-json`` (pytest-benchmark doesn't)."""
    given = " ".join(map(str, config.invocation_params.args))
    for name, value in DEFAULTS.items():
        if f"--benchmark-{name.replace('_', '-')}" not in given:
            setattr(config.option, f"benchmark_{name}", value)
    path = config.getoption("benchmark_json", None)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: list[Any], output_json: dict[str, Any]
) -> None:
    """Keep the statistics, drop every round's timing (tens of MB for the fast benchmarks)."""
    for bench in output_json["benchmarks"]:
        bench["stats"].pop("data", None)


@pytest.fixture(scope="session")
def oplog() -> dict[str, Input]:
    return oplog_inputs()


@pytest.fixture(scope="session")
def changes() -> dict[str, Input]:
    return change_inputs()
