"""wlm.telemetry and wlm.web import each other's modules one way only, at the top.

An import cycle "broken" by an import inside a function still ties the modules
together: the first call pays for the import, and moving one line at the top
of either file breaks start-up. So every import counts here, including those
under ``TYPE_CHECKING`` and inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import wlm

# Read as text, not imported: the check must not depend on the rest of wlm importing.
PACKAGES = {
    "wlm.telemetry": Path(wlm.__file__).parent / "telemetry",
    "wlm.web": Path(wlm.__file__).parent / "web",
}


def module_files() -> dict[str, Path]:
    files = {}
    for package, directory in PACKAGES.items():
        for path in sorted(directory.glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            files[name] = path
    return files


def imports(path: Path, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``path`` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found & modules


def nested_imports(path: Path) -> list[int]:
    """Lines of import statements inside a function or class."""
    tree = ast.parse(path.read_text(), filename=str(path))
    lines = []
    for scope in ast.walk(tree):
        if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for node in ast.walk(scope):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    lines.append(node.lineno)
    return sorted(set(lines))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path that ends where it starts), or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for target in sorted(graph.get(module, ())):
            cycle = visit(target, [*path, module])
            if cycle:
                return cycle
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module, [])
        if cycle:
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_telemetry_and_web_modules_have_no_import_cycle() -> None:
    files = module_files()
    assert {"wlm.telemetry.analytics", "wlm.telemetry.writer", "wlm.web.data"} <= set(files)
    modules = set(files)
    graph = {name: imports(path, modules) - {name} for name, path in files.items()}
    assert find_cycle(graph) is None


def test_no_import_hides_inside_a_function() -> None:
    nested = {
        name: lines for name, path in module_files().items() if (lines := nested_imports(path))
    }
    assert nested == {}
