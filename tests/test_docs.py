"""The architecture page against the code: its parts table names every module and only modules that exist,
and its import graph of `cmet_core`'s subpackages is the one the code has, so the page cannot go stale."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "architecture.md"
PACKAGES = ("cmet_core", "cmet_jobs", "service", "worker", "cmet_cli", "training", "bench", "tests", "clients")
REVISIONS = "cmet_jobs/db/migrations/versions/"
"""Alembic revisions: the page names their folder, not each one."""


def section(title: str, level: str = "##") -> str:
    """The page's text under the heading `title`, up to the next heading of its level or above."""
    text = PAGE.read_text()
    start = text.index(f"\n{level} {title}\n")
    ends = [end for end in (text.find(f"\n{'#' * n} ", start + 1) for n in range(2, len(level) + 1)) if end != -1]
    return text[start : min(ends, default=len(text))]


def named_in_parts() -> set[str]:
    """Every `.py` path (and the revisions' folder) the parts table names, each relative to its row's folder."""
    named: set[str] = set()
    for row in section("The parts").splitlines():
        cells = row.split(" | ")
        folder = re.fullmatch(r"\| `([\w/]+/)`", cells[0])
        if folder is None:
            continue
        for name in re.findall(r"`([\w/]+(?:\.py|/))`", " | ".join(cells[1:])):
            path = folder.group(1) + name
            if name.endswith(".py") or path == REVISIONS:
                named.add(path)
    return named


def modules() -> set[str]:
    found = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if path.name != "__init__.py" and not rel.startswith(REVISIONS):
                found.add(rel)
    return found | {REVISIONS}


def test_every_module_named_in_the_parts_table_exists() -> None:
    named = named_in_parts()
    assert len(named) > 100
    assert sorted(name for name in named if not (ROOT / name).exists()) == []


def test_every_module_is_named_in_the_parts_table() -> None:
    assert sorted(modules() - named_in_parts()) == []


def import_graph() -> dict[str, set[str]]:
    """Which of `cmet_core`'s subpackages (and top-level modules) each one imports, counting every import
    statement in its files: deferred ones and those only for type checking too."""
    graph: dict[str, set[str]] = {}
    core = ROOT / "cmet_core"
    for path in core.rglob("*.py"):
        parts = path.relative_to(core).with_suffix("").parts
        if parts == ("__init__",):
            continue
        imports = graph.setdefault(parts[0], set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
                if node.module == "cmet_core":
                    names = [f"cmet_core.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                dotted = name.split(".")
                if dotted[0] == "cmet_core" and len(dotted) > 1 and dotted[1] != parts[0]:
                    imports.add(dotted[1])
    return graph


def documented_graph() -> dict[str, set[str]]:
    lines = re.findall(r"^(\w+) +-> (.+)$", section("Inside `cmet_core`", "###"), re.M)
    return {name: set() if targets == "(none)" else set(targets.split(", ")) for name, targets in lines}


def test_the_import_graph_on_the_page_is_the_code_s() -> None:
    assert documented_graph() == import_graph()


def test_the_pairs_named_as_importing_each_other_are_the_code_s() -> None:
    graph = import_graph()
    mutual = {frozenset((a, b)) for a, targets in graph.items() for b in targets if a in graph.get(b, set())}
    named = re.findall(r"^- `(\w+)` <-> `(\w+)`:", section("Inside `cmet_core`", "###"), re.M)
    assert {frozenset(pair) for pair in named} == mutual
    subpackages = {p.parent.name for p in (ROOT / "cmet_core").glob("*/__init__.py")}
    assert {
        "edit",
        "emotion",
        "backbones",
        "networks",
        "modelsets",
        "verify",
        "enhance",
        "faces",
        "media",
    } <= subpackages
    assert subpackages <= set(graph)
