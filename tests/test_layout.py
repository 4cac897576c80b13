"""The shape of app/, checked the way import-linter checks napari: layers, no circles, no Qt
in the engine, no module too long to read without a reason at its top.

The graph is read with `ast`, so it costs nothing to run and needs no dependency. Every import
counts, also one inside a function (a lazy import is still a dependency); only imports under
`if TYPE_CHECKING:` are left out, because they never run.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app"

# Lowest first. A module may import from its own layer and the layers below it, never above.
# Packages that share a layer (a tuple) are independent: neither imports the other.
LAYERS: list[tuple[str, ...]] = [
    ("app.core.base", "app.core"),  # app.core: the package's docstring only
    ("app",),  # the package itself: the version, and the malloc cap every entry point needs
    ("app.core.documents",),
    ("app.core.index", "app.core.models"),
    ("app.core.llm", "app.core.tools"),  # tools: declared, validated and run for the chat
    ("app.core.chat",),
    ("app.core.settings", "app.core.service"),
    ("app.selftest",),
    ("app.server",),  # the local API and MCP server: the engine from outside
    ("app.ui",),
    ("app.cli",),
    ("app.__main__",),
]
QT = ("PySide6", "shiboken6", "PyQt6", "qasync")
EXACT = {"app", "app.core"}  # these name one module, not a package and everything in it
MAX_LINES = 1000


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _imports(path: Path) -> set[str]:
    """Every module `path` imports (absolute names), except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text("utf-8"), str(path))
    me = _module_name(path)
    here = me if _is_package(path) else me.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = here.split(".")[: len(here.split(".")) - (child.level - 1)]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module or ""
                found.add(module)
                # `from app.core.index import lock` imports the module app.core.index.lock
                found.update(f"{module}.{a.name}" for a in child.names)
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in APP.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        graph[name] = {m for m in _imports(path) if m in files and m != name}
    return graph


def _layer(module: str) -> tuple[int, str]:
    best = None
    for i, group in enumerate(LAYERS):
        for prefix in group:
            if module == prefix or (prefix not in EXACT and module.startswith(prefix + ".")):
                if best is None or len(prefix) > len(best[1]):
                    best = (i, prefix)
    assert best is not None, f"{module} is in no layer: add it to LAYERS in {__file__}"
    return best


def test_every_module_has_a_layer():
    for module in _graph():
        _layer(module)


def test_layers_import_only_downwards():
    broken = []
    for module, deps in _graph().items():
        level, group = _layer(module)
        for dep in deps:
            dep_level, dep_group = _layer(dep)
            if dep_level > level or (dep_level == level and dep_group != group):
                broken.append(f"{module} ({group}) imports {dep} ({dep_group})")
    assert not broken, "\n".join(sorted(broken))


def test_no_import_circles():
    graph = _graph()
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            # A package's __init__ is imported with any of its modules; an __init__ importing
            # its own children is not a circle of the kind that hurts, a child back is.
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*path[path.index(dep):], dep]))
            elif dep not in state:
                walk(dep)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    assert not cycles, "import circles:\n" + "\n".join(cycles)


def test_core_never_imports_qt_the_ui_or_the_cli():
    """app/core stays Qt-free: the CLI and the window drive the same engine."""
    for path in (APP / "core").rglob("*.py"):
        for module in _imports(path):
            top = module.split(".")[0]
            assert top not in QT, f"{path} imports {module}"
            assert not module.startswith(("app.ui", "app.cli")), f"{path} imports {module}"


def test_importing_all_of_core_loads_no_qt():
    modules = sorted(_module_name(p) for p in (APP / "core").rglob("*.py"))
    code = f"import sys, {', '.join(modules)}; " + (
        f"sys.exit(any(m.split('.')[0] in {QT!r} for m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                          timeout=300).returncode == 0


def test_long_modules_say_why_at_the_top():
    """A module over about 1,000 lines is hard to hold in one's head; one that has to be that
    long says why in its docstring (a paragraph with "lines" in it)."""
    too_long = []
    for path in APP.rglob("*.py"):
        lines = path.read_text("utf-8").count("\n")
        if lines <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text("utf-8"))) or ""
        if "lines" not in doc:
            too_long.append(f"{path.relative_to(ROOT)}: {lines} lines, no reason in its docstring")
    assert not too_long, "\n".join(too_long)


def test_the_checker_sees_a_circle(tmp_path):
    """The checks above would pass on an empty graph; make sure they read real imports."""
    graph = _graph()
    assert "app.core.index.library" in graph["app.core.index.ingest"]
    assert "app.core.base.memory" in graph["app"]
