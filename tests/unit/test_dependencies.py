"""The product imports only what a plain `pip install` brings: every third-party module that `tempo_lite/`
imports belongs to a default dependency (or to one of theirs), never to a test or bench extra alone.

A module that only the test extras bring in passes every test and crashes a user's first command;
scripts/first-run-check proves the first run end to end, this finds the import that would break it.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tempo_lite"


def statements(tree: ast.AST) -> Iterator[ast.AST]:
    """Every statement of the tree, nested ones included (imports are statements: no expression holds one,
    so the walk skips expressions, most of a module's nodes)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        todo.extend(c for c in ast.iter_child_nodes(node)
                    if isinstance(c, ast.stmt | ast.excepthandler | ast.match_case))


def imported_top_level_modules() -> dict[str, set[str]]:
    """Top-level module name -> the files importing it (absolute imports only, tempo_lite itself excluded)."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in statements(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top != "tempo_lite" and top not in sys.stdlib_module_names and top != "__future__":
                    # google is a namespace shared by several distributions: keep the next level.
                    key = ".".join(name.split(".")[:2]) if top == "google" else top
                    found.setdefault(key, set()).add(str(path.relative_to(ROOT)))
    return found


def default_requirement_closure() -> set[str]:
    """Normalised names of the default dependencies and, transitively, of what they require (no extras)."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    todo = [Requirement(r).name for r in declared]
    seen: set[str] = set()
    while todo:
        name = _norm(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def distributions_of(module: str) -> set[str]:
    mapping = _packages_distributions()
    top, _, sub = module.partition(".")
    if top == "google" and sub:
        # Namespace package: find which distributions ship files under google/<sub>/.
        owners = set()
        for dist in mapping.get("google", []):
            files = metadata.distribution(dist).files or []
            if any(str(f).startswith(f"google/{sub}/") for f in files):
                owners.add(_norm(dist))
        return owners
    return {_norm(d) for d in mapping.get(top, [])}


def test_every_module_the_product_imports_comes_from_a_default_dependency() -> None:
    allowed = default_requirement_closure()
    problems = []
    for module, files in sorted(imported_top_level_modules().items()):
        owners = distributions_of(module)
        if not owners:
            problems.append(f"{module}: no installed distribution provides it (imported by {sorted(files)})")
        elif not owners & allowed:
            problems.append(f"{module}: from {sorted(owners)}, not a default dependency "
                            f"(imported by {sorted(files)}); add it to [project] dependencies")
    assert not problems, "\n".join(problems)


def test_the_check_sees_a_test_only_module() -> None:
    # The check itself must be able to fail: hypothesis is in the test extra only.
    assert "hypothesis" not in default_requirement_closure()
    assert distributions_of("hypothesis") == {"hypothesis"}
    assert distributions_of("google.rpc") == {"googleapis-common-protos"}
