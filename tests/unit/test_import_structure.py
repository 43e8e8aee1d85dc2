"""The import structure the render package promises (issue 16 item 3): no import cycle between
its modules, and no module imports a sibling inside a function (a hidden cycle). Only optional,
heavy third-party backends (matplotlib, plotly) are imported on first use.

Checked on the source (``ast``), not by importing, so a cycle that happens to resolve at run
time still fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "layerscope"
PACKAGES = ["render", "store"]  # analysis joins once its split lands (issue 16 item 1)


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, here: str, is_pkg: bool) -> list[str]:
    """Absolute names ``from X import a, b`` refers to (modules or names inside a module)."""
    base = here if is_pkg else here.rsplit(".", 1)[0]
    if node.level:
        parts = base.split(".")
        base = ".".join(parts[: len(parts) - (node.level - 1)])
        mod = f"{base}.{node.module}" if node.module else base
    else:
        mod = node.module or ""
    return [mod] + [f"{mod}.{a.name}" for a in node.names]


def _imports(path: Path) -> tuple[set[str], list[tuple[int, str]]]:
    """(module-level imports, function-level imports with their line) of ``path``, as absolute names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here, is_pkg = _module_name(path), path.name == "__init__.py"
    top: set[str] = set()
    inner: list[tuple[int, str]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                names = _resolve(child, here, is_pkg)
            if names:
                if in_function:
                    inner.extend((child.lineno, n) for n in names)
                elif not _type_checking_only(child, tree):
                    top.update(names)
            visit(
                child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            )

    visit(tree, False)
    return top, inner


def _type_checking_only(node: ast.AST, tree: ast.Module) -> bool:
    for stmt in tree.body:
        guarded = (
            isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Name) and stmt.test.id == "TYPE_CHECKING"
        )
        if guarded and any(node is n for n in ast.walk(stmt)):
            return True
    return False


def _package_modules(pkg: str) -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / pkg).glob("*.py"))}


@pytest.mark.parametrize("pkg", PACKAGES)
def test_no_function_level_import_of_a_sibling_module(pkg: str) -> None:
    mods = _package_modules(pkg)
    bad = []
    for path in mods.values():
        _, inner = _imports(path)
        for line, imp in inner:
            if any(imp == m or imp.startswith(m + ".") for m in mods if m != f"layerscope.{pkg}"):
                bad.append(f"{path.relative_to(SRC)}:{line} imports {imp}")
    assert bad == []


@pytest.mark.parametrize("pkg", PACKAGES)
def test_no_import_cycle_inside_the_package(pkg: str) -> None:
    mods = _package_modules(pkg)
    graph = {}
    for name, path in mods.items():
        top, inner = _imports(path)
        deps = top | {n for _, n in inner}
        graph[name] = {m for m in mods if m != name and any(d == m or d.startswith(m + ".") for d in deps)}
        if name == f"layerscope.{pkg}":
            graph[name] = set()  # the package's __init__ re-exports its modules; they never import it back
    cycles = []
    state: dict[str, int] = {}

    def dfs(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*trail[trail.index(dep) :], dep]))
            elif dep not in state:
                dfs(dep, [*trail, dep])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            dfs(m, [m])
    assert cycles == []


def test_the_checker_sees_a_function_level_sibling_import(tmp_path: Path, monkeypatch) -> None:
    pkg = tmp_path / "layerscope" / "render"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n    import matplotlib\n")
    monkeypatch.setattr(__import__(__name__), "SRC", tmp_path / "layerscope")
    with pytest.raises(AssertionError, match=r"b.py:2 imports layerscope.render.a"):
        test_no_function_level_import_of_a_sibling_module("render")
    with pytest.raises(AssertionError, match="cycle|->"):
        test_no_import_cycle_inside_the_package("render")
