"""The import contract: imports point one way (DESIGN.md, "One photo pipeline, three drivers").

Read from the source with ``ast`` (every import, also those inside functions, as import-linter counts them),
so a circle or an upward import fails here before it can grow. Layers, highest first: a module may import its
own layer and those below, never one above.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "photocluster"

LAYERS: list[tuple[str, ...]] = [
    # the entry point: the ``photocluster`` command opens the app, or runs a headless driver
    ("photocluster.cli", "photocluster.__main__"),
    ("photocluster.gui",),
    ("photocluster.folder_mode", "photocluster.benchmarks", "photocluster.training_process"),
    ("photocluster.pipeline", "photocluster.result_check", "photocluster.estimate"),
    ("photocluster.library", "photocluster.methods"),
    ("photocluster.models", "photocluster.features", "photocluster.data", "photocluster.metrics"),
    ("photocluster.errors", "photocluster.progress", "photocluster.config", "photocluster.devices",
     "photocluster.checkpoints", "photocluster.cuda_graph", "photocluster"),
]
QT_PACKAGES = ("PySide6", "shiboken6", "superqt", "pytestqt")


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, package: Path = PACKAGE) -> set[str]:
    """Every module ``path`` imports (absolute names; ``from pkg import mod`` counts as ``pkg.mod``)."""
    this = module_name(path, package)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = this.split(".")[: -node.level] if path.name != "__init__.py" else this.split(".")[: len(this.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = {module_name(p, package): p for p in package.rglob("*.py")}
    return {name: {m for m in imports_of(path, package) if m in modules and m != name} for name, path in modules.items()}


def layer_of(module: str) -> int:
    best, best_len = len(LAYERS), -1
    for index, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if layer_of(b) < layer_of(a))


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), i.e. import circles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            # a package's __init__ importing its own submodules is how packages re-export: not a circle
            if node == nxt.rsplit(".", 1)[0]:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer():
    graph = import_graph()
    assert [m for m in graph if layer_of(m) == len(LAYERS)] == []


def test_no_import_points_up_a_layer():
    assert upward_imports(import_graph()) == []


def test_no_import_circle():
    assert circles(import_graph()) == []


def test_qt_only_in_the_gui():
    offenders = sorted(
        name for name, path in ((module_name(p), p) for p in PACKAGE.rglob("*.py"))
        if not name.startswith("photocluster.gui") and any(m.split(".")[0] in QT_PACKAGES for m in imports_of(path))
    )
    assert offenders == []


@pytest.fixture
def scratch_package(tmp_path):
    """A tiny package laid out like ours, to show each check fails on the defect it guards against."""
    root = tmp_path / "photocluster"
    for rel, text in {
        "__init__.py": "",
        "pipeline.py": "from photocluster.library import scan\n",
        "library/__init__.py": "",
        "library/scan.py": "def f():\n    from photocluster.pipeline import g\n",
        "methods/__init__.py": "",
        "methods/qtish.py": "import PySide6.QtCore\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_the_checks_fail_on_a_circle_an_upward_import_and_qt_in_the_core(scratch_package):
    graph = import_graph(scratch_package)
    assert upward_imports(graph) == ["photocluster.library.scan -> photocluster.pipeline"]
    assert circles(graph) == [["photocluster.library.scan", "photocluster.pipeline"]]
    qt = [p for p in scratch_package.rglob("*.py") if "PySide6.QtCore" in imports_of(p, scratch_package)]
    assert [module_name(p, scratch_package) for p in qt] == ["photocluster.methods.qtish"]
