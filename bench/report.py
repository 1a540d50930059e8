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
        """Events per second from the first event to the last: the rate of the stream.

        The time to the first event is left out: on SecantusDB it is mostly the server's first
        query, which scans the whole oplog and takes 0.7 s to 3 s for the same query (it is
        `first`, published on its own).
        """
        if not self.ok or self.count < 2 or self.last <= self.first:
            return 0.0
        return (self.count - 1) / (self.last - self.first)


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


@dataclass(frozen=True)
class Target:
    """A ratio the issue tracker set as a target: ``mine`` / ``theirs`` >= ``at_least``."""

    name: str
    path: tuple[str, ...]  # where the runs of both are in ``figures``
    mine: str
    theirs: str
    at_least: float


TARGETS = [
    Target("oplog tail (a), asyncio / gtm", ("oplog", "a"), "gtom-async", "gtm", 1.0),
    Target("oplog tail (a), sync / gtm", ("oplog", "a"), "gtom-sync", "gtm", 0.95),
    Target("oplog tail (c), asyncio / gtm", ("oplog", "c"), "gtom-async", "gtm", 1.0),
    Target("oplog tail (c), sync / gtm", ("oplog", "c"), "gtom-sync", "gtm", 0.95),
    Target("oplog tail (a), asyncio / ceiling", ("oplog", "a"), "gtom-async", "raw", 0.85),
    Target("oplog tail (b), as deltas / gtm", ("oplog", "b"), "gtom-delta", "gtm", 1.0),
    Target(
        "oplog tail (b), fetching, asyncio / raw-fetch", ("oplog", "b"), "gtom-async",
        "raw-fetch", 0.85,
    ),
    Target("change stream (a), asyncio / gtm", ("changes", "a"), "gtom-async", "gtm", 1.0),
    Target("change stream (c), asyncio / gtm", ("changes", "c"), "gtom-async", "gtm", 1.0),
    Target("direct read, 1 segment, asyncio / gtm", ("direct", "1"), "gtom-async", "gtm", 1.0),
    Target("direct read, 1 segment, sync / gtm", ("direct", "1"), "gtom-sync", "gtm", 0.9),
    Target(
        "`gtom run > /dev/null`, (a) / library asyncio", ("daemon",), "run-devnull", "library",
        0.8,
    ),
    Target("`gtom tail | reader`, (a) / library asyncio", ("daemon",), "tail", "library", 0.8),
    *(
        Target(f"sink {sink} / stdout sink", ("sinks", "a"), sink, "stdout", at_least)
        for sink, at_least in (
            ("file", 0.9), ("webhook", 0.9), ("nats", 0.75), ("redis", 0.75), ("kafka", 0.75)
        )
    ),
]  # fmt: skip


def ratios(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target's ratio per round (run i of both contenders), and their median.

    Contenders run round-robin, so the i-th runs of two contenders come from the same round;
    a round where either failed gives no ratio.
    """
    out = []
    for target in TARGETS:
        group: Any = figures
        for part in target.path:
            group = group.get(part, {}) if isinstance(group, dict) else {}
        mine, theirs = group.get(target.mine, []), group.get(target.theirs, [])
        per_round = []
        for a, b in zip(mine, theirs, strict=False):
            ra, rb = _rate(a), _rate(b)
            if ra and rb:
                per_round.append(round(ra / rb, 3))
        median = statistics.median(per_round) if per_round else None
        out.append(
            {
                "name": target.name,
                "figure": ".".join((*target.path, target.mine)),
                "against": target.theirs,
                "at_least": target.at_least,
                "rounds": per_round,
                "median": median,
                "met": median is not None and median >= target.at_least,
            }
        )
    return out


def _rate(run: Run | dict[str, Any]) -> float:
    if isinstance(run, Run):
        return run.rate
    return float(run.get("rate") or 0.0)


def to_json(meta: dict[str, Any], figures: dict[str, Any]) -> dict[str, Any]:
    def convert(node: Any) -> Any:
        if isinstance(node, Run):
            return {**asdict(node), "rate": node.rate}
        if isinstance(node, dict):
            return {k: convert(v) for k, v in node.items()}
        if isinstance(node, list):
            return [convert(v) for v in node]
        return node

    return {"meta": meta, "figures": convert(figures), "ratios": ratios(figures)}


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
        "| gtom asyncio / it | first event after (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, s in stats.items():
        label = labels.get(key, {}).get("label", key)
        median = s["median"]
        if median is None:
            why = "; ".join(s["errors"]) or "did not run"
            rows.append(f"| {label} | — | — | — | — | — ({why[:160]}) | — |")
            continue
        firsts = [r.first for r in _runs(group[key]) if r.ok]
        first = f"{statistics.median(firsts):.2f}" if firsts else "—"
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
            f"{mine[0]} | {mine[1]} | {first} |"
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
        f"- every figure: median of {meta['runs']} rounds, contenders round-robin (some peers run"
        " fewer rounds, see below); spread = min-max; events/s = events from the first to the last"
        " / the time between them (the time to the first event, mostly the server's first oplog"
        " scan, is shown apart)",
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
        "## Targets",
        "",
        *_targets_table(data.get("ratios") or ratios(figures)),
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
    if "sinks" in figures:
        for key, group in figures["sinks"].items():
            out += [
                "",
                f"## Sinks: a fresh `gtom run` per sink, the first events of {titles[key]}",
                "",
                *_sinks_table(group),
            ]
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


def _targets_table(found: list[dict[str, Any]]) -> list[str]:
    rows = [
        "| target | at least | median | per round | met |",
        "| --- | ---: | ---: | --- | :---: |",
    ]
    for r in found:
        median = "—" if r["median"] is None else f"{r['median']:.2f}x"
        rounds = " · ".join(f"{x:.2f}" for x in r["rounds"]) or "did not run"
        name = r["name"].replace("|", "\\|")
        rows.append(
            f"| {name} | {r['at_least']:.2f}x | {median} | {rounds} | "
            f"{'yes' if r['met'] else '**no**'} |"
        )
    return rows


def _daemon_table(meta: dict[str, Any], group: dict[str, list[dict[str, Any]]]) -> list[str]:
    stats = {key: summary(_runs(runs)) for key, runs in group.items()}
    tail = stats.get("tail", {}).get("median")
    rows = [
        "| contender | events/s (median) | spread | / `gtom tail` |",
        "| --- | ---: | ---: | ---: |",
    ]
    labels = {
        "library": "the library's asyncio face (the contender `gtom-async`)",
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


def _sinks_table(group: dict[str, list[dict[str, Any]]]) -> list[str]:
    stats = {key: summary(_runs(runs)) for key, runs in group.items()}
    stdout = stats.get("stdout", {}).get("median")
    rows = [
        "| sink | events/s (median) | spread | / stdout sink |",
        "| --- | ---: | ---: | ---: |",
    ]
    for key, s in stats.items():
        if s["median"] is None:
            why = "; ".join(s["errors"]) or "did not run"
            rows.append(f"| {key} | — | — | — ({why[:160]}) |")
            continue
        rows.append(
            f"| {key} | {_fmt(s['median'])} | {_spread(s)} | {_ratio(s['median'], stdout)} |"
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
    if len(direct) > 1:
        best: dict[str, Any] = {}
        for group in direct.values():
            for k, v in medians(group).items():
                if v is not None and (best.get(k) is None or v > best[k]):
                    best[k] = v
        row("direct read, best of 1 and 4 segments, docs/s", best)
    if "daemon" in figures:
        d = {k: summary(_runs(v))["median"] for k, v in figures["daemon"].items()}
        library = d.get("library")
        for key, name in (("run-devnull", "`gtom run` to /dev/null"), ("tail", "`gtom tail`")):
            rows.append(
                f"| {name}, (a) events/s | | | {_fmt(d.get(key))} | | | "
                f"| {_ratio(d.get(key), library)} of the library's asyncio tail "
                f"({_fmt(library)}/s) | | | |"
            )
    for key, group in figures.get("sinks", {}).items():
        sinks = {k: summary(_runs(v))["median"] for k, v in group.items()}
        ratios_text = ", ".join(
            f"{k} {_ratio(v, sinks.get('stdout'))}" for k, v in sinks.items() if k != "stdout"
        )
        rows.append(
            f"| `gtom run` into each sink, ({key}) events/s | | | "
            f"{_fmt(sinks.get('stdout'))} (stdout) | | | | {ratios_text} | | | |"
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
