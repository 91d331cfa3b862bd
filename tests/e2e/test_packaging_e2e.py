"""A built wheel, installed without the source tree, serves its pages and named queries.

The pages (web/) and the SQL (analytics/) live at the top of the repository, outside the
``wlm`` package; a plain ``pip install`` must still carry them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import WlmServer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_every_wlm_package_on_disk_is_listed_for_the_wheel() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "wlm").rglob("__init__.py")
    }

    assert on_disk <= listed, f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """wlm built as a wheel from a copy of the sources, installed into its own directory."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    for name in ("wlm", "web", "analytics"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"), str(source)],
        check=True,
        cwd=work,
    )
    (wheel,) = (work / "dist").glob("wlm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "wlm/_web/static/htmx.min.js" in names and "wlm/_analytics/timeseries.sql" in names
    target = work / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    return target


def test_installed_wheel_serves_pages_static_files_and_analytics(
    installed: Path, wlm_factory: Callable[..., WlmServer], tmp_path: Path
) -> None:
    server = wlm_factory({"PYTHONPATH": str(installed), "WLM_LOCAL_THREADS": "1"}, tmp_path)
    where = subprocess.run(
        [sys.executable, "-c", "import wlm; print(wlm.__file__)"],
        env={"PYTHONPATH": str(installed)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(installed)), where

    with httpx.Client(base_url=server.base_url, timeout=20) as client:
        htmx = client.get("/static/htmx.min.js")
        analytics = client.get("/analytics")
        models = client.get("/models")

    assert htmx.status_code == 200 and b"htmx" in htmx.content
    assert analytics.status_code == 200 and "Analytics" in analytics.text
    assert models.status_code == 200
