"""Where the pages (``web/``) and the named queries (``analytics/``) are found.

In a source checkout or an editable install they are the repository's top-level
folders; a built wheel carries them inside the package as ``wlm/_web`` and
``wlm/_analytics`` (see ``[tool.setuptools]`` in pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["shipped_dir"]

_PACKAGE = Path(__file__).resolve().parent


def shipped_dir(name: str) -> Path:
    """The directory of the shipped folder ``name`` ("web" or "analytics")."""
    installed = _PACKAGE / f"_{name}"
    return installed if installed.is_dir() else _PACKAGE.parent / name
