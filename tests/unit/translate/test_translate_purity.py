"""wlm.translate stays pure: no I/O, clock, randomness or config imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import wlm.translate

PACKAGE = Path(wlm.translate.__file__).parent
MODULES = sorted(PACKAGE.glob("*.py"))

FORBIDDEN = (
    "httpx",
    "httpx2",
    "aiohttp",
    "litestar",
    "duckdb",
    "logging",
    "time",
    "datetime",
    "os",
    "random",
    "secrets",
    "socket",
    "uuid",
    "wlm.config",
)


def imported_names(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                names.append(f"wlm.translate.{node.module or ''}".rstrip("."))
            else:
                names.append(node.module or "")
                names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def is_forbidden(name: str) -> bool:
    return any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)


def test_there_are_modules_to_check() -> None:
    assert {p.name for p in MODULES} >= {
        "__init__.py",
        "anthropic_request.py",
        "anthropic_response.py",
        "anthropic_stream.py",
        "anthropic_errors.py",
    }


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_module_imports_nothing_impure(path: Path) -> None:
    bad = [name for name in imported_names(path) if is_forbidden(name)]
    assert bad == []


@pytest.mark.parametrize(
    "source",
    [
        "import time",
        "import os.path",
        "from wlm import config",
        "from wlm.config import Settings",
        "import httpx as h",
        "from logging import getLogger",
    ],
)
def test_the_check_catches_impure_imports(tmp_path: Path, source: str) -> None:
    module = tmp_path / "m.py"
    module.write_text(source + "\n")
    assert any(is_forbidden(name) for name in imported_names(module))


def test_public_names() -> None:
    assert sorted(wlm.translate.__all__) == [
        "ANSWER_ROOM",
        "AnthropicStreamTranslator",
        "FINISH_REASONS",
        "REASONING_BUDGETS",
        "anthropic_error_to_openai",
        "finish_reason_from",
        "from_anthropic_response",
        "stream_error_to_openai",
        "to_anthropic_request",
        "usage_from",
    ]
    for name in wlm.translate.__all__:
        assert getattr(wlm.translate, name) is not None
