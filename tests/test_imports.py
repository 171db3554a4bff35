"""Import hygiene of the product packages: a function-level import says why it is not at the top
(`# deferred: <heavy module>` or `# cycle: <a> <-> <b>`), and no module imports another's private names."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cmet_core", "cmet_jobs", "service", "worker", "cmet_cli", "training", "bench")
REASON = re.compile(r"#\s*(deferred|cycle):\s*\S")
Import = ast.Import | ast.ImportFrom


def _modules() -> list[tuple[str, Path]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return found


MODULES = _modules()


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _import_runs(tree: ast.Module) -> Iterator[list[Import]]:
    """Runs of adjacent import statements inside functions (one reason may cover a run)."""

    def bodies(node: ast.AST, in_function: bool) -> Iterator[list[ast.stmt]]:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if inner:
                for field in ("body", "orelse", "finalbody"):
                    block = getattr(child, field, None)
                    if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                        yield block
                for handler in getattr(child, "handlers", []):
                    yield handler.body
            yield from bodies(child, inner)

    for block in bodies(tree, False):
        run: list[Import] = []
        for stmt in [*block, None]:
            if isinstance(stmt, Import):
                run.append(stmt)
            elif run:
                yield run
                run = []


def _function_level_imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, statement, says why) for every import inside a function."""
    source = path.read_text()
    lines = source.splitlines()
    found = []
    for run in _import_runs(ast.parse(source)):
        start = run[0].lineno - 1
        while start > 0 and lines[start - 1].strip().startswith("#"):
            start -= 1
        covered = any(REASON.search(line) for line in lines[start : run[-1].end_lineno])
        found += [(stmt.lineno, ast.unparse(stmt), covered) for stmt in run]
    return found


def _private_uses(module: str, path: Path) -> list[str]:
    """`from m import _x` and `m._x` where m is another module of the product packages."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    ours = {name for name, _ in MODULES}
    bound: set[str] = set()  # local names bound to one of our modules
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            if source.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                if f"{source}.{alias.name}" in ours:
                    bound.add(alias.asname or alias.name)
                if _private(alias.name) and source != module:
                    uses.append(f"{node.lineno}: from {source} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    bound.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in bound:
                uses.append(f"{node.lineno}: {ast.unparse(node)}")
    return uses


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_the_scan_sees_the_packages() -> None:
    """Guards the two rules below against passing because they read nothing."""
    assert len(MODULES) > 150
    assert sum(len(_function_level_imports(path)) for _, path in MODULES) > 20


@pytest.mark.parametrize("path", [path for _, path in MODULES], ids=[name for name, _ in MODULES])
def test_a_function_level_import_says_why(path: Path) -> None:
    where = path.relative_to(ROOT)
    silent = [f"{where}:{line}: {stmt}" for line, stmt, why in _function_level_imports(path) if not why]
    assert not silent, (
        "move these to the top of the module, or say why they stay: `# deferred: <heavy module>` "
        "or `# cycle: <this> <-> <other>`\n" + "\n".join(silent)
    )


@pytest.mark.parametrize("module, path", MODULES, ids=[name for name, _ in MODULES])
def test_no_module_uses_another_modules_private_names(module: str, path: Path) -> None:
    uses = _private_uses(module, path)
    assert not uses, f"{path.relative_to(ROOT)} uses private names of other modules:\n" + "\n".join(uses)


def test_the_rules_catch_what_they_are_for(tmp_path: Path) -> None:
    """A silent function-level import and another module's private name are found; a reasoned one is not."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from service.routes.edits import _invalid\n"
        "from service import problems\n\n"
        "def f():\n"
        "    import json\n"
        "    return problems._log, json\n\n"
        "def g():\n"
        "    import torch  # deferred: torch\n"
        "    import numpy\n"
        "    return torch, numpy\n"
    )
    assert [(line, why) for line, _, why in _function_level_imports(sample)] == [(5, False), (9, True), (10, True)]
    assert _private_uses("sample", sample) == ["1: from service.routes.edits import _invalid", "6: problems._log"]
