"""The docs site (mkdocs.yml): every page in its nav, and docs/from-gtm.md naming only real names.

`make docs` builds the site with --strict (broken links and anchors, pages left out of the nav,
missing docstrings); these tests say the same things without building it, and check what the
build cannot: that the migration page's gtom names exist, and that the comparison's figures are
the latest benchmark run's.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
from pathlib import Path
from typing import Any

import griffe
import pytest

import gtom

sys.path.insert(0, str(Path(__file__).parent.parent / "tools"))
import docs_site

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
FROM_GTM = (DOCS / "from-gtm.md").read_text()


def nav_pages() -> list[str]:
    """Every page mkdocs.yml's nav names (its entries: ``- Title: page.md`` or ``- page.md``)."""
    config = (ROOT / "mkdocs.yml").read_text()
    nav = config.split("\nnav:\n", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^\s+- (?:.*: )?(\S+\.md)$", nav, flags=re.M)


def test_every_page_in_docs_is_in_the_nav_and_every_nav_entry_exists() -> None:
    in_nav = nav_pages()
    assert "index.md" in in_nav and "reference/options.md" in in_nav
    pages = sorted(str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md"))
    assert sorted(set(pages) - set(in_nav)) == []
    assert sorted(set(in_nav) - set(pages)) == []
    assert len(in_nav) == len(set(in_nav))


# -- docs/from-gtm.md --------------------------------------------------------------------------

# What the page's short names stand for (gtm's are capitalised: `ctx.OpC`, `op.IsDrop()`).
ROOTS: dict[str, list[type]] = {
    "ctx": [gtom.OpCtx, gtom.MultiOpCtx],
    "actx": [gtom.AsyncOpCtx, gtom.AsyncMultiOpCtx],
    "op": [gtom.Op],
    "op_c": [gtom.OpQueue],
    "err_c": [gtom.OpQueue],
}


def instance_attributes(cls: type) -> set[str]:
    """The attributes each class of ``cls``'s MRO assigns in its ``__init__`` (``self.x = ...``)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None or not inspect.isfunction(init):
            continue
        try:
            source = inspect.getsource(init)
        except OSError:  # generated (a dataclass's): its fields are class attributes anyway
            continue
        names |= set(re.findall(r"self\.([a-z_]\w*)\s*[:=]", source))
    return names


def has_attribute(cls: type, name: str) -> bool:
    return hasattr(cls, name) or name in instance_attributes(cls)


# gtom.Name.attr, or ctx.attr... with a lower-case attribute (gtm's `ctx.OpC` is not one).
GTOM_NAME = re.compile(
    r"(?<![\w.])(gtom(?:\.\w+)+|(?:{})(?:\.[a-z_]\w*)+)".format("|".join(sorted(ROOTS)[::-1]))
)


def gtom_names(text: str) -> list[str]:
    """The gtom names a page's code spans use: ``gtom.x.y``, ``ctx.x``, ``op.x``, ..."""
    spans = re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return [name for span in spans for name in GTOM_NAME.findall(span)]


def resolves(name: str) -> bool:
    root, *attributes = name.split(".")
    if root == "gtom":
        obj: Any = gtom
        for attribute in attributes:
            if not hasattr(obj, attribute):
                return False
            obj = getattr(obj, attribute)
        return True
    # ctx.op_c.get: the first attribute is on the context; the rest on what it holds.
    first = attributes[0]
    if not any(has_attribute(cls, first) for cls in ROOTS[root]):
        return False
    if first in ("op_c", "err_c") and len(attributes) > 1:
        return has_attribute(gtom.OpQueue, attributes[1])
    return True


def options_table_names() -> list[str]:
    """The gtom column of the Options table (bare field names)."""
    section = FROM_GTM.split("\n## Options\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[2] for line in section.splitlines() if line.startswith("| `")]
    return [name for cell in rows for name in re.findall(r"`([a-z_]\w*)`", cell)]


def test_the_gtm_page_names_only_gtom_names_that_exist() -> None:
    names = gtom_names(FROM_GTM)
    assert len(names) > 60  # the page's tables were read
    assert [name for name in names if not resolves(name)] == []


def test_the_gtm_page_names_only_real_options_and_every_option() -> None:
    fields = {field.name for field in dataclasses.fields(gtom.Options)}
    named = set(options_table_names())
    assert sorted(named - fields) == []
    # Every option is in the table, or in the line of options gtm has no counterpart of.
    extras = FROM_GTM.split("New in gtom: `include_internal`", 1)[1].split("\n\n", 1)[0]
    assert sorted(fields - named - {"include_internal"} - set(re.findall(r"`(\w+)`", extras))) == []


@pytest.mark.parametrize(
    ("name", "exists"),
    [
        ("gtom.start", True),
        ("gtom.Source.CHANGE_STREAM", True),
        ("gtom.consistent.partition", True),
        ("ctx.op_c.get_many", True),
        ("ctx.add_shard_listener", True),
        ("op.update_description", True),
        ("gtom.Ordering", False),
        ("gtom.Options.ordering", False),
        ("ctx.direct_read_wg", False),
        ("op.is_drop_collection", False),
        ("ctx.op_c.select", False),
    ],
)
def test_the_name_check_tells_real_names_from_invented_ones(name: str, exists: bool) -> None:
    assert gtom_names(f"see `{name}()`") == [name]
    assert resolves(name) is exists


# -- the build's own checks (tools/docs_site.py) -------------------------------------------------


def test_the_guide_links_into_the_site_and_names_the_other_files() -> None:
    guide = docs_site.guide_from_readme(
        "See [docs/oplog.md](docs/oplog.md#updates), [CONTRIBUTING.md](CONTRIBUTING.md), "
        "[one protocol](bench/peers/PROTOCOL.md) and [gtm](https://github.com/rwynn/gtm)."
    )
    assert guide == (
        "See [docs/oplog.md](oplog.md#updates), `CONTRIBUTING.md`, "
        "one protocol (`bench/peers/PROTOCOL.md` in the repository) and "
        "[gtm](https://github.com/rwynn/gtm)."
    )


def test_the_reference_check_finds_a_missing_docstring(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        '"""A package."""\n\n'
        "#: Documented by a Sphinx comment.\n"
        "LIMIT = 3\n"
        "UNDOCUMENTED = 4\n\n\n"
        "class Thing:\n"
        '    """A thing."""\n\n'
        "    def __init__(self) -> None:\n"
        '        """Make it."""\n'
        "        self.size = 1  # an instance attribute: its class describes it\n\n"
        "    def documented(self) -> None:\n"
        '        """Do it."""\n\n'
        "    def bare(self) -> None:\n"
        "        pass\n\n"
        "    def _private(self) -> None:\n"
        "        pass\n"
    )
    loaded = griffe.load(
        "pkg",
        search_paths=[str(tmp_path)],
        extensions=griffe.load_extensions(docs_site.SphinxComments),
    )
    assert isinstance(loaded, griffe.Module)
    assert docs_site.undocumented(loaded) == ["pkg.UNDOCUMENTED", "pkg.Thing.bare"]


def test_the_reference_names_every_public_name_with_a_docstring() -> None:
    rendered = {}
    for page in (DOCS / "reference").glob("*.md"):
        for identifier in re.findall(r"^:::\s+(\S+)", page.read_text(), flags=re.M):
            rendered[identifier] = str(page.relative_to(DOCS))
    assert docs_site.reference_problems(rendered) == []


# -- docs/comparison.md ------------------------------------------------------------------------


def test_the_comparison_cites_the_figures_of_the_latest_benchmark_run() -> None:
    comparison = (DOCS / "comparison.md").read_text()
    latest = (ROOT / "bench" / "results" / "latest.md").read_text()
    when = re.search(r"^- when: (\d{4}-\d\d-\d\d \d\d:\d\d UTC)", latest, flags=re.M)
    assert when is not None and f"**{when.group(1)}**" in comparison
    table = comparison.split("## Measured", 1)[1].split("\n\n| workload", 1)[1].split("\n\n")[0]
    figures = re.findall(r"\| (\d+\.\dk) ", table)
    assert len(figures) == 13
    assert [figure for figure in figures if f"| {figure} |" not in latest] == []
