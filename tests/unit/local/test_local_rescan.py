"""LocalManager.rescan: what it reports as added and removed, and the periodic rescan.

No engine is started here: only discovery, on a models directory the test changes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from wlm.config import ConfigError, Settings, load_settings
from wlm.local.manager import LocalManager, ScanChanges
from wlm.local.testmodel import write_tiny_gguf


async def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds (checked every 20 ms); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)  # polling an observable condition with a deadline


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_tiny_gguf(tmp_path_factory.mktemp("src") / "tiny.gguf").read_bytes()


@pytest.fixture
def root(tmp_path: Path, tiny_bytes: bytes) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny-a.gguf").write_bytes(tiny_bytes)
    return models


@pytest.fixture
async def manager(root: Path) -> AsyncIterator[LocalManager]:
    """A started manager whose background rescan is off: only explicit rescans."""
    manager = LocalManager(Settings(models_dir=root, local_rescan_s=0))
    await manager.start()
    yield manager
    await manager.close()


async def test_rescan_reports_added_and_removed_ids(
    manager: LocalManager, root: Path, tiny_bytes: bytes
) -> None:
    assert manager.model_ids() == {"tiny-a"}
    (root / "sub").mkdir()
    (root / "sub" / "new.gguf").write_bytes(tiny_bytes)
    (root / "junk.gguf").write_bytes(b"not a model")

    changes = await manager.rescan()

    assert changes == ScanChanges(added=("junk", "sub/new"), removed=())
    assert manager.model_ids() == {"tiny-a", "sub/new"}
    assert manager.routable_ids() == {"tiny-a", "sub/new", "junk"}  # broken: a 503, not a miss
    assert [m.id for m in manager.list_models()] == ["junk", "sub/new", "tiny-a"]

    (root / "tiny-a.gguf").unlink()
    (root / "junk.gguf").unlink()
    changes = await manager.rescan()

    assert changes == ScanChanges(added=(), removed=("junk", "tiny-a"))
    assert manager.model_ids() == {"sub/new"}
    assert manager.routable_ids() == {"sub/new"}
    assert not manager.has_model("tiny-a")


async def test_rescan_without_changes_reports_nothing(manager: LocalManager) -> None:
    ids = manager.model_ids()

    assert await manager.rescan() == ScanChanges()
    assert manager.model_ids() is ids  # the cached set is kept, not rebuilt


async def test_a_file_that_becomes_readable_is_usable_but_not_added_again(
    manager: LocalManager, root: Path, tiny_bytes: bytes
) -> None:
    copying = root / "copying.gguf"
    copying.write_bytes(tiny_bytes[: len(tiny_bytes) // 2])  # a copy still in progress
    assert await manager.rescan() == ScanChanges(added=("copying",))
    assert not manager.has_model("copying")

    copying.write_bytes(tiny_bytes)  # the copy finished
    assert await manager.rescan() == ScanChanges()
    assert manager.has_model("copying")


async def test_the_background_rescan_uses_the_setting(root: Path, tiny_bytes: bytes) -> None:
    manager = LocalManager(Settings(models_dir=root, local_rescan_s=0.05))
    await manager.start()
    try:
        (root / "late.gguf").write_bytes(tiny_bytes)
        await eventually(lambda: manager.has_model("late"))
        (root / "late.gguf").unlink()
        await eventually(lambda: "late" not in manager.routable_ids())
    finally:
        await manager.close()


def test_rescan_setting_defaults_and_validation() -> None:
    assert load_settings({}).local_rescan_s == 3.0
    assert load_settings({"WLM_LOCAL_RESCAN_S": "0"}).local_rescan_s == 0
    assert load_settings({"WLM_LOCAL_RESCAN_S": "0.5"}).local_rescan_s == 0.5
    for bad in ("-1", "inf", "nan", "soon"):
        with pytest.raises(ConfigError, match="WLM_LOCAL_RESCAN_S"):
            load_settings({"WLM_LOCAL_RESCAN_S": bad})
