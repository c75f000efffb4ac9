"""The import structure of `tempo_lite/`: no import cycle between modules, and no import that runs up the layers.

Every import counts, wherever it is written: module level, inside functions, under `TYPE_CHECKING`
(a type-only import is still a dependency a reader must follow). Importing `a.b.c` also runs the
packages `a` and `a.b`, so those count too (except a module's own enclosing packages).

Layers, lowest first; a module may import its own layer and the layers below it, never above:

0. foundation: errors, units, configuration, the metric registry, generated protobuf code
1. encodings and protocols (pure, no I/O): the span table, TraceQL, the gRPC wire protocol
2. storage, WAL and transport: object store, WAL, the block format, the HTTP/gRPC servers
3. components: distributor and receivers, live-store, block-builder, compactor, generator, querier
4. frontend: query parameters, sharding and combining, the query service the API depends on
5. api and cli: HTTP/gRPC routes and encodings, the UI, the process wiring (app/), the command line

Violations that live in files other branches are changing now are listed in `ALLOWED_UPWARD` with the
reason; the list must only shrink (a test fails when an entry no longer occurs, so fixed ones are removed).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "tempo_lite"

# Module-name prefix -> layer (longest prefix wins). Every module of tempo_lite/ must be placed.
LAYERS: dict[str, int] = {
    # 0 foundation
    "tempo_lite": 0,  # the package itself: __version__ only
    "tempo_lite._gen": 0,
    "tempo_lite.errors": 0,
    "tempo_lite.units": 0,
    "tempo_lite.config": 0,
    "tempo_lite.metrics": 0,
    "tempo_lite.roles": 0,  # which components a role set runs: configuration only
    # 1 encodings and protocols
    "tempo_lite.spantable": 1,
    "tempo_lite.traceql": 1,
    "tempo_lite.grpc_protocol": 1,
    # 2 storage, WAL and transport
    "tempo_lite.storage": 2,
    "tempo_lite.wal": 2,
    "tempo_lite.block": 2,
    "tempo_lite.server": 2,
    "tempo_lite.grpc_server": 2,
    # 3 components
    "tempo_lite.distributor": 3,
    "tempo_lite.receivers": 3,
    "tempo_lite.livestore": 3,
    "tempo_lite.blockbuilder": 3,
    "tempo_lite.compactor": 3,
    "tempo_lite.backend": 3,  # backend-scheduler and backend-worker: plan and execute compactor jobs
    "tempo_lite.generator": 3,
    "tempo_lite.querier": 3,
    # 4 frontend
    "tempo_lite.frontend": 4,
    # 5 api and cli
    "tempo_lite.api": 5,
    "tempo_lite.ui": 5,
    "tempo_lite.app": 5,
    "tempo_lite.cli": 5,  # the command line: cli/commands/ (clients of the HTTP API), cli/capture/
    "tempo_lite.__main__": 5,
}
LAYER_NAMES = ["foundation", "encodings and protocols", "storage, WAL and transport", "components", "frontend",
               "api and cli"]

# Upward imports that are known and not yet fixed: (importer, imported). Each sits in, or can only be fixed
# in, a file another branch is changing now. This list must only shrink.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {
}

# Import cycles that are known and not yet fixed, each as the sorted tuple of its modules. Must only shrink.
ALLOWED_CYCLES: set[tuple[str, ...]] = set()

# No module over ~500 lines without a reason stated at the top: its docstring says why, naming "500 lines".
MAX_MODULE_LINES = 500
# Long modules other branches are splitting now (issue 13). Must only shrink (empty since the engine and Kafka
# WAL splits); an entry whose module is short or gone fails the test, so it is removed when its split lands.
LONG_MODULES_BEING_SPLIT: set[str] = set()


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _known(name: str) -> str | None:
    """The innermost tempo_lite module `name` lies in (a submodule, an attribute of a module: its module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imported_names(module: str, path: Path) -> set[str]:
    """Every tempo_lite module named by an import statement anywhere in the file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names.add(source)
            # `from pkg import sub` imports the submodule pkg.sub when there is one.
            names.update(f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in MODULES)
    return {n for n in names if n == "tempo_lite" or n.startswith("tempo_lite.")}


@cache
def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in MODULES.items():
        own_packages = set(_ancestors(module))
        for name in _imported_names(module, path):
            target = _known(name)
            if target is None:
                continue
            # Importing a.b.c runs a and a.b first; a module's own enclosing packages are already running.
            for dep in [*_ancestors(target), target]:
                if dep != module and dep not in own_packages:
                    graph[module].add(dep)
            if target in own_packages:  # an explicit import of an enclosing package still counts
                graph[module].add(target)
    return graph


def layer_of(module: str) -> int:
    prefixes = [p for p in LAYERS if module == p or module.startswith(p + ".")]
    assert prefixes, f"{module} is in no layer: place it in LAYERS in {Path(__file__).name}"
    return LAYERS[max(prefixes, key=len)]


@cache
def _upward() -> dict[tuple[str, str], str]:
    found = {}
    for module, deps in _graph().items():
        for dep in deps:
            low, high = layer_of(module), layer_of(dep)
            if high > low:
                found[(module, dep)] = f"{module} ({LAYER_NAMES[low]}) imports {dep} ({LAYER_NAMES[high]})"
    return found


@cache
def _cycles() -> list[tuple[str, ...]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    counter = 0
    for root in sorted(MODULES):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(tuple(sorted(component)))
    return cycles


def test_every_module_is_placed_in_a_layer() -> None:
    unplaced = [m for m in MODULES if not any(m == p or m.startswith(p + ".") for p in LAYERS)]
    assert not unplaced, f"place these modules in LAYERS: {unplaced}"


def test_the_import_walk_sees_function_level_and_type_checking_imports() -> None:
    graph = _graph()
    # app.py imports the API inside a method; api/http.py imports the query service under TYPE_CHECKING.
    assert "tempo_lite.api.app" in graph["tempo_lite.app"]
    assert "tempo_lite.frontend.service" in graph["tempo_lite.api.http"]
    # Importing a submodule runs its packages: cli/main.py -> cli.capture.command -> the cli.capture package.
    assert "tempo_lite.cli.capture" in graph["tempo_lite.cli.main"]


def test_no_import_cycle_between_modules() -> None:
    new = [c for c in _cycles() if c not in ALLOWED_CYCLES]
    assert not new, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in new)


def test_no_import_runs_up_the_layers() -> None:
    new = [why for pair, why in sorted(_upward().items()) if pair not in ALLOWED_UPWARD]
    assert not new, "upward imports (move the shared code down, or depend on an interface):\n" + "\n".join(new)


def test_allow_lists_only_name_violations_that_still_exist() -> None:
    stale = [pair for pair in ALLOWED_UPWARD if pair not in _upward()]
    stale += [cycle for cycle in ALLOWED_CYCLES if cycle not in _cycles()]
    root = PACKAGE.parent
    stale += [rel for rel in LONG_MODULES_BEING_SPLIT
              if not (root / rel).exists() or (root / rel).read_text().count("\n") <= MAX_MODULE_LINES]
    assert not stale, f"fixed, so remove from the allow-lists in {Path(__file__).name}: {stale}"


def test_the_api_does_not_depend_on_the_process_wiring() -> None:
    graph = _graph()
    offenders = [m for m in graph if m.startswith(("tempo_lite.api", "tempo_lite.ui")) and "tempo_lite.app" in graph[m]]
    assert not offenders, f"{offenders} import tempo_lite.app; depend on frontend.service.QueryService instead"


def test_every_test_file_is_in_a_lane() -> None:
    """Test modules live in tests/unit/ (pure: no sockets, servers, subprocesses, emulators, brokers or browsers)
    or tests/e2e/ (everything else); tests/ itself holds only shared helpers and conftest.py."""
    tests = PACKAGE.parent / "tests"
    stray = sorted(p.name for p in tests.glob("test_*.py"))
    assert not stray, f"move {stray} into tests/unit/ (pure) or tests/e2e/ (see CONTRIBUTING.md)"


def test_test_files_have_unique_names_across_lanes() -> None:
    """The lanes share one module namespace (pytest's `pythonpath` holds both), so a name in tests/unit/ and
    tests/e2e/ at once stops the whole run at collection."""
    tests = PACKAGE.parent / "tests"
    unit = {p.name for p in (tests / "unit").glob("test_*.py")}
    e2e = {p.name for p in (tests / "e2e").glob("test_*.py")}
    assert not unit & e2e, f"rename one of each pair: {sorted(unit & e2e)}"


def test_no_module_is_over_500_lines_without_a_reason_at_its_top() -> None:
    long = []
    for module, path in sorted(MODULES.items()):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        if module.startswith("tempo_lite._gen") or rel in LONG_MODULES_BEING_SPLIT:
            continue
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES and "500 lines" not in (ast.get_docstring(ast.parse(text)) or ""):
            long.append(f"{rel} ({text.count(chr(10))} lines)")
    assert not long, ("split these along their seams, or say at the top why not (naming \"500 lines\"): "
                      + ", ".join(long))
