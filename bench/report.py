"""What `make bench` measured, as JSON and as the markdown table of bench/results/latest.md."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Run:
    """One contender's run: ``count`` events, the first at ``first`` s and the last at ``last``
    s after it started its engine (``wall``: the whole process, runtime start-up included)."""

    ok: bool
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    wall: float = 0.0
    rss_mb: float = 0.0
    note: str = ""
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.count / self.last if self.ok and self.last > 0 else 0.0


def summary(runs: list[Run], value: str = "rate") -> dict[str, Any]:
    """Median and spread of ``value`` over the runs that succeeded (None without any)."""
    values = [v for r in runs if r.ok and (v := _value(r, value)) is not None]
    errors = sorted({r.error for r in runs if not r.ok and r.error})
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0, "errors": errors}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "errors": errors,
    }


def _value(run: Run, value: str) -> float | None:
    if value == "rate":
        return run.rate
    if value == "rss":
        return run.rss_mb
    node: Any = run.extra
    for part in value.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return float(node) if isinstance(node, (int, float)) else None


def to_json(meta: dict[str, Any], figures: dict[str, Any]) -> dict[str, Any]:
    def convert(node: Any) -> Any:
        if isinstance(node, Run):
            return {**asdict(node), "rate": node.rate}
        if isinstance(node, dict):
            return {k: convert(v) for k, v in node.items()}
        if isinstance(node, list):
            return [convert(v) for v in node]
        return node

    return {"meta": meta, "figures": convert(figures)}


def _runs(items: list[dict[str, Any]]) -> list[Run]:
    return [Run(**{k: v for k, v in item.items() if k != "rate"}) for item in items]


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit == "ms":
        return f"{value:.1f}"
    if unit == "MB":
        return f"{value:.0f}"
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


def _spread(s: dict[str, Any], unit: str = "") -> str:
    if s["median"] is None:
        return "—"
    return f"{_fmt(s['min'], unit)}-{_fmt(s['max'], unit)}"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "—"


def _table(
    meta: dict[str, Any],
    group: dict[str, list[dict[str, Any]]],
    value: str = "rate",
    unit: str = "",
    higher_is_better: bool = True,
) -> list[str]:
    """One row per contender: median, spread, x ceiling, and gtom's faces / this contender."""
    labels = meta["contenders"]
    stats = {key: summary(_runs(runs), value) for key, runs in group.items()}
    ceiling = stats.get("raw", {}).get("median")
    sync = stats.get("gtom-sync", {}).get("median")
    asyn = stats.get("gtom-async", {}).get("median")
    head = "events/s" if value == "rate" else value
    rows = [
        f"| contender | {head} (median) | spread | x ceiling | gtom sync / it "
        "| gtom asyncio / it |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, s in stats.items():
        label = labels.get(key, {}).get("label", key)
        median = s["median"]
        if median is None:
            why = "; ".join(s["errors"]) or "did not run"
            rows.append(f"| {label} | — | — | — | — | — ({why[:160]}) |")
            continue
        if higher_is_better:
            vs_ceiling = _ratio(median, ceiling) if key != "raw" else "1.00x"
            mine = (_ratio(sync, median), _ratio(asyn, median))
        else:  # lower is better: ratios as "times faster"
            vs_ceiling = _ratio(ceiling, median) if key != "raw" else "1.00x"
            mine = (_ratio(median, sync), _ratio(median, asyn))
        if key in ("gtom-sync", "gtom-async"):
            mine = ("", "")
        rows.append(
            f"| {label} | {_fmt(median, unit)} | {_spread(s, unit)} | {vs_ceiling} | "
            f"{mine[0]} | {mine[1]} |"
        )
    return rows


def markdown(data: dict[str, Any]) -> str:
    meta, figures = data["meta"], data["figures"]
    out = [
        "# gtom benchmarks (`make bench`)",
        "",
        f"- when: {meta['date']}; took {meta['seconds']:.0f} s",
        f"- machine: {meta['machine']}; Python {meta['python']}; gtom {meta['gtom']}",
        f"- server: {meta['server']} (in its own process; "
        f"{meta['server_rss_mb']} MB RSS at the end)",
        f"- every figure: median of {meta['runs']} runs, contenders round-robin; spread = min-max;"
        " events/s = events / time from the contender's start (connect) to its last event",
    ]
    if meta.get("quick"):
        out.append("- **quick run** (a tenth of the sizes): a smoke test, not a result")
    out += [
        f"- {c['label']} runs on workloads {', '.join(c['workloads'])} only (to fit in 10 minutes)"
        for c in meta["contenders"].values()
        if c.get("workloads")
    ]
    out += [
        f"- {c['label']} could not run: {c['unavailable']}"
        for c in meta["contenders"].values()
        if c["unavailable"]
    ]
    out += [
        "",
        "## Summary",
        "",
        *summary_table(data),
        "",
        "Ratios: above 1 means gtom is faster (for latency: the other's latency / gtom's); each"
        ' gtom cell gives the sync face, then the asyncio face. "as deltas": gtom with'
        " update_data_as_delta=True, which like the ceiling (and gtm v2.1.4 on this server's"
        " update entries) makes no query per update; by default gtom fetches updated documents.",
        "",
    ]
    titles = {k: w["title"] for k, w in meta["workloads"].items()}
    for mode, name in (("oplog", "Oplog tail"), ("changes", "Change streams")):
        if mode not in figures:
            continue
        for key, group in figures[mode].items():
            out += ["", f"## {name}: {titles[key]}", "", *_table(meta, group)]
    if "direct" in figures:
        for segments, group in figures["direct"].items():
            what = "one segment" if segments == "1" else f"split into {segments} segments"
            out += [
                "",
                f"## Direct reads: {titles['d']}, {what} (docs/s)",
                "",
                *_table(meta, group),
            ]
    if "daemon" in figures:
        out += ["", f"## Daemon: {titles['a']}", "", *_daemon_table(meta, figures["daemon"])]
    if "replay" in figures:
        out += [
            "",
            f"## Memory: `gtom run` over the {titles['r']}",
            "",
            *_replay_table(figures["replay"]),
        ]
    if "latency" in figures:
        out += ["", "## Write → event latency, idle server (ms; lower is better)", ""]
        for pct in ("p50", "p99"):
            out += [
                f"**{pct}**",
                "",
                *_table(
                    meta, figures["latency"], f"latency_ms.{pct}", "ms", higher_is_better=False
                ),
                "",
            ]
    notes = _notes(figures)
    if notes:
        out += ["", "## What each contender did (its own note)", ""]
        out += [f"- **{meta['contenders'].get(k, {}).get('label', k)}**: {n}" for k, n in notes]
    return "\n".join(out) + "\n"


def _daemon_table(meta: dict[str, Any], group: dict[str, list[dict[str, Any]]]) -> list[str]:
    stats = {key: summary(_runs(runs)) for key, runs in group.items()}
    tail = stats.get("tail", {}).get("median")
    rows = [
        "| contender | events/s (median) | spread | / `gtom tail` |",
        "| --- | ---: | ---: | ---: |",
    ]
    labels = {
        "tail": "`gtom tail \\| reader`",
        "run-piped": "`gtom run --sink stdout \\| reader`",
        "run-devnull": "`gtom run --sink stdout > /dev/null` (until its checkpoint has the "
        "last event)",
    }
    for key, s in stats.items():
        rows.append(
            f"| {labels.get(key, key)} | {_fmt(s['median'])} | {_spread(s)} | "
            f"{_ratio(s['median'], tail)} |"
        )
    return rows


def _replay_table(runs_json: list[dict[str, Any]]) -> list[str]:
    runs = _runs(runs_json)
    rows = [
        "| run | events/s | peak RSS (MB) | RSS at 25% / 50% / 75% / 100% of the run (MB) |",
        "| --- | ---: | ---: | --- |",
    ]
    for i, r in enumerate(runs, 1):
        marks = " / ".join(f"{m:.0f}" for m in r.extra.get("rss_marks", []))
        rows.append(f"| {i} | {_fmt(r.rate) if r.ok else r.error} | {r.rss_mb:.0f} | {marks} |")
    return rows


def _notes(figures: dict[str, Any]) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}

    def walk(node: Any, key: str | None = None) -> None:
        if isinstance(node, dict):
            if "note" in node and "ok" in node:
                if key and node["note"] and key not in seen:
                    seen[key] = node["note"]
                return
            for k, v in node.items():
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)

    walk(figures)
    return list(seen.items())


PEER_KEYS = ("gtm", "debezium", "mongo-connector")


def summary_table(data: dict[str, Any]) -> list[str]:
    """One row per figure: medians of every contender and gtom's ratios (sync · asyncio)."""
    meta, figures = data["meta"], data["figures"]
    titles = {k: w["title"] for k, w in meta["workloads"].items()}
    rows = [
        "| figure | ceiling | gtom sync | gtom asyncio | gtm | Debezium | mongo-connector "
        "| gtom / ceiling | gtom / gtm | gtom / Debezium | gtom / mongo-connector |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def medians(group: dict[str, list[dict[str, Any]]], value: str = "rate") -> dict[str, Any]:
        return {k: summary(_runs(v), value)["median"] for k, v in group.items()}

    def row(name: str, m: dict[str, Any], unit: str = "", lower: bool = False) -> None:
        def ratio(other: Any) -> str:
            pair = [
                _ratio(other, m.get(face)) if lower else _ratio(m.get(face), other)
                for face in ("gtom-sync", "gtom-async")
            ]
            return "—" if other is None else " · ".join(pair)

        sync = _fmt(m.get("gtom-sync"), unit)
        if m.get("gtom-delta") is not None:
            sync += f" ({_fmt(m['gtom-delta'], unit)} as deltas)"
        cells = [_fmt(m.get("raw"), unit), sync]
        cells += [_fmt(m.get(k), unit) for k in ("gtom-async", *PEER_KEYS)]
        ratios = [ratio(m.get("raw")), *(ratio(m.get(k)) for k in PEER_KEYS)]
        rows.append(f"| {name} | " + " | ".join(cells + ratios) + " |")

    for mode, name in (("oplog", "oplog tail"), ("changes", "change stream")):
        for key, group in figures.get(mode, {}).items():
            row(f"{name}, {titles[key].split(' ', 1)[0]} events/s", medians(group))
    direct = figures.get("direct", {})
    if direct:
        row("direct read, 1 segment, docs/s", medians(direct.get("1", {})))
        best: dict[str, Any] = {}
        for group in direct.values():
            for k, v in medians(group).items():
                if v is not None and (best.get(k) is None or v > best[k]):
                    best[k] = v
        row("direct read, best of 1 and 4 segments, docs/s", best)
    if "daemon" in figures:
        d = {k: summary(_runs(v))["median"] for k, v in figures["daemon"].items()}
        rows.append(
            f"| `gtom run` to /dev/null, (a) events/s | | {_fmt(d.get('run-devnull'))} | | | | "
            f"| {_ratio(d.get('run-devnull'), d.get('tail'))} of `gtom tail` "
            f"({_fmt(d.get('tail'))}/s) | | | |"
        )
    if "replay" in figures:
        runs = _runs(figures["replay"])
        peak = max((r.rss_mb for r in runs if r.ok), default=None)
        marks = [r.extra.get("rss_marks", []) for r in runs if r.ok]
        flat = " · ".join(f"{m[0]:.0f}→{m[-1]:.0f}" for m in marks if m) if marks else ""
        rows.append(
            f"| `gtom run` peak RSS over the {titles['r'].split(' of ')[-1]}, MB | | "
            f"{_fmt(peak, 'MB')} | | | | | RSS at 25% → 100% of each run: {flat} | | | |"
        )
    if "latency" in figures:
        for pct in ("p50", "p99"):
            row(
                f"write → event latency {pct}, ms",
                medians(figures["latency"], f"latency_ms.{pct}"),
                "ms",
                lower=True,
            )
    return rows


README_START = (
    "<!-- bench-summary: copied from bench/results/latest.md; tests/test_readme.py checks it -->"
)
README_END = "<!-- /bench-summary -->"


def summary_block(markdown_text: str) -> str:
    """The summary section of a latest.md (its table and the line under it)."""
    body = markdown_text.split("\n## Summary\n", 1)[1]
    return body.split("\n## ", 1)[0].strip()


def update_readme(readme: str, markdown_text: str) -> str:
    """``readme`` with the block between the bench-summary markers replaced by the summary."""
    head, rest = readme.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    block = summary_block(markdown_text)
    return f"{head}{README_START}\n{block}\n{README_END}{tail}"
