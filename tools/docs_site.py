"""MkDocs hooks and a Griffe extension for the docs site (`make docs`, `mkdocs.yml`).

* The guide (``docs/index.md``) is README.md, put in at build time with its links made to work on
  the site: ``docs/x.md`` becomes ``x.md``, and a file outside ``docs/`` is named, not linked.
  The text lives in one place, README.md.
* The API reference (``docs/reference/``) must name every public name of ``gtom`` and
  ``gtom.consistent``, and every object it renders must have a docstring; otherwise the build
  logs a warning, which fails ``mkdocs build --strict``. Attributes assigned only in ``__init__``
  are exempt: Python gives them no docstring, their class's docstring describes them.
* `SphinxComments` makes a ``#:`` comment above an attribute its docstring, as Sphinx does.
"""

from __future__ import annotations

import ast
import importlib
import logging
import re
from pathlib import Path
from typing import Any

import griffe
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
#: The comment that docs/index.md holds in place of the README.
GUIDE_MARKER = "<!-- guide: README.md -->"
#: The packages whose public names (their ``__all__``) the reference must name.
PUBLIC_MODULES = ("gtom", "gtom.consistent")

# Under "mkdocs", so that `mkdocs build --strict` counts the warnings.
log = logging.getLogger("mkdocs.hooks.gtom")

_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_DIRECTIVE = re.compile(r"^:::\s+(\S+)", re.M)
_rendered: dict[str, str] = {}  # identifier of a ::: directive -> the page it is on


# -- the guide ---------------------------------------------------------------------------------


def guide_from_readme(readme: str) -> str:
    """README.md as the site's guide: links into docs/ made relative, other files named."""

    def adapt(match: re.Match[str]) -> str:
        label, target = match.group(1), match.group(2)
        if target.startswith(("http://", "https://", "mailto:", "#")):
            return match.group(0)
        if target.startswith("docs/"):
            return f"[{label}]({target.removeprefix('docs/')})"
        # A file of the repository outside the site: name it where the text does not already.
        if label.strip("`") == target:
            return f"`{target}`"
        return f"{label} (`{target}` in the repository)"

    return _LINK.sub(adapt, readme)


def on_page_markdown(markdown: str, *, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Put README.md into the guide; note which objects each reference page renders."""
    if page.file.src_uri == "index.md":
        if GUIDE_MARKER not in markdown:
            log.warning("docs/index.md lacks %s: the guide would not be README.md", GUIDE_MARKER)
            return markdown
        return markdown.replace(GUIDE_MARKER, guide_from_readme(README.read_text()))
    for identifier in _DIRECTIVE.findall(markdown):
        _rendered[identifier] = page.file.src_uri
    return markdown


# -- the reference -----------------------------------------------------------------------------


def _is_rendered_member(member: griffe.Object | griffe.Alias) -> bool:
    """Whether mkdocstrings renders ``member`` with mkdocs.yml's options (filters ``!^_``)."""
    return not member.name.startswith("_") and not member.inherited and member.is_public


def _needs_docstring(obj: griffe.Object) -> bool:
    return not (obj.is_attribute and obj.labels == {"instance-attribute"})


def undocumented(root: griffe.Object | griffe.Alias) -> list[str]:
    """The paths of ``root`` and its rendered members (recursively) that have no docstring."""
    missing: list[str] = []
    seen: set[str] = set()

    def walk(obj: griffe.Object | griffe.Alias, path: str) -> None:
        target = obj.final_target if isinstance(obj, griffe.Alias) else obj
        if target.path in seen:
            return
        seen.add(target.path)
        if not target.docstring and _needs_docstring(target):
            missing.append(path)
        if target.is_class or target.is_module:
            for name, member in target.members.items():
                if _is_rendered_member(member):
                    walk(member, f"{path}.{name}")

    walk(root, root.path)
    return missing


def public_names() -> list[str]:
    """Every public name of `PUBLIC_MODULES`, as ``module.name`` (``__version__`` aside)."""
    names = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        names += [f"{module_name}.{n}" for n in module.__all__ if not n.startswith("__")]
    return names


def reference_problems(rendered: dict[str, str]) -> list[str]:
    """What is wrong with a reference rendering ``rendered`` (identifier -> page), in words."""
    package = griffe.load(
        "gtom",
        search_paths=[str(ROOT / "src")],
        extensions=griffe.load_extensions(SphinxComments),
    )
    problems = []
    covered = set(rendered)
    for identifier, page in sorted(rendered.items()):
        obj = package[identifier.removeprefix("gtom.")] if identifier != "gtom" else package
        for path in undocumented(obj):
            shown = path.replace(obj.path, identifier, 1)
            problems.append(f"{page}: {shown} has no docstring")
        if obj.is_module:  # its rendered members are covered too
            covered |= {f"{identifier}.{n}" for n, m in obj.members.items() if m.is_public}
    problems += [
        f"the API reference (docs/reference/) does not name {name}"
        for name in public_names()
        if name not in covered
    ]
    return problems


def on_post_build(*, config: MkDocsConfig) -> None:
    """Warn about every public name missing from the reference and every missing docstring."""
    for problem in reference_problems(_rendered):
        log.warning(problem)
    _rendered.clear()


# -- the Griffe extension ----------------------------------------------------------------------


class SphinxComments(griffe.Extension):
    """A ``#:`` comment right above an attribute becomes its docstring (when it has none)."""

    def on_attribute_instance(
        self, *, node: ast.AST | griffe.ObjectNode, attr: griffe.Attribute, **kwargs: Any
    ) -> None:
        """Give ``attr`` the text of the ``#:`` lines right above it."""
        if attr.docstring is not None or attr.lineno is None or attr.parent is None:
            return
        filepath = attr.filepath
        if isinstance(filepath, list):  # a namespace package: no single file
            return
        try:
            lines = attr.lines_collection[filepath]
        except KeyError:  # no source kept (a compiled module)
            return
        comment: list[str] = []
        index = attr.lineno - 2  # the line above the attribute, 0-based
        while index >= 0 and lines[index].lstrip().startswith("#:"):
            comment.insert(0, lines[index].lstrip()[2:].strip())
            index -= 1
        if comment:
            attr.docstring = griffe.Docstring(
                "\n".join(comment), lineno=index + 2, endlineno=attr.lineno - 1, parent=attr
            )
