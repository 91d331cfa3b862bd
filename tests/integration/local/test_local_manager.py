"""LocalManager discovery and options behaviour, on a models directory the test changes."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.local.localhelpers import engine_pids, gone, tiny_settings
from wlm.errors import ModelNotFound, ModelUnavailable
from wlm.local.manager import LocalManager
from wlm.local.options import OptionsError


async def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds (checked every 20 ms); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


@pytest.fixture
def own_models(tmp_path: Path, models_dir: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    shutil.copy(models_dir / "tiny-a.gguf", root / "tiny-a.gguf")
    (root / "junk.gguf").write_bytes(b"junk")
    return root


async def test_lists_models_with_metadata_and_caches_usable_ids(own_models: Path) -> None:
    manager = LocalManager(tiny_settings(own_models))
    await manager.start()
    try:
        ids = manager.model_ids()
        listed = {m.id: m for m in manager.list_models()}
    finally:
        await manager.close()

    assert ids == frozenset({"tiny-a"})
    assert manager.model_ids() is ids  # the same cached object on every call
    assert set(listed) == {"junk", "tiny-a"}
    assert listed["junk"].broken_reason
    assert "not a GGUF file" in listed["junk"].broken_reason
    tiny = listed["tiny-a"]
    assert (tiny.architecture, tiny.context_length, tiny.quantization) == ("llama", 2048, "F32")
    assert tiny.has_chat_template
    assert tiny.state == "stopped"
    assert tiny.parameters


async def test_directory_changes_are_picked_up_by_polling(own_models: Path) -> None:
    manager = LocalManager(tiny_settings(own_models), scan_interval_s=0.05)
    await manager.start()
    try:
        shutil.copy(own_models / "tiny-a.gguf", own_models / "new.gguf")
        await eventually(lambda: manager.has_model("new"))
        (own_models / "new.gguf").unlink()
        await eventually(lambda: not manager.has_model("new"))
    finally:
        await manager.close()


async def test_unknown_id_triggers_a_rescan(own_models: Path) -> None:
    manager = LocalManager(tiny_settings(own_models), scan_interval_s=3600, unknown_rescan_s=0)
    await manager.start()
    try:
        with pytest.raises(ModelNotFound):
            await manager.load("later")
        (own_models / "later.gguf").write_bytes(b"still junk")

        # Found by the rescan (not "not found"), and refused for the file's own reason.
        with pytest.raises(ModelUnavailable, match="not a GGUF file"):
            await manager.load("later")
    finally:
        await manager.close()


async def test_bad_options_file_fails_start_and_later_fails_the_load(
    own_models: Path, tmp_path: Path
) -> None:
    options = tmp_path / "local.toml"
    options.write_text('[models."tiny-a"]\nctx = 1\n')
    with pytest.raises(OptionsError, match="unknown option 'ctx'"):
        await LocalManager(tiny_settings(own_models, local_options_file=options)).start()

    options.write_text('[models."tiny-a"]\nctx_size = 1024\n')
    manager = LocalManager(tiny_settings(own_models, local_options_file=options))
    await manager.start()
    try:
        assert manager.engine_options("tiny-a").ctx_size == 1024
        options.write_text('[models."tiny-a"]\nctx_size = "big"\n')
        with pytest.raises(ModelUnavailable, match="ctx_size must be a whole number"):
            await manager.load("tiny-a")
    finally:
        await manager.close()


@pytest.mark.local
async def test_deleted_model_is_unloaded(own_models: Path) -> None:
    manager = LocalManager(tiny_settings(own_models))
    await manager.start()
    try:
        await manager.load("tiny-a")
        [info] = manager.instances()
        assert info.pid in engine_pids()

        (own_models / "tiny-a.gguf").unlink()
        await manager.rescan()

        await manager.wait_for_state("tiny-a", "stopped", timeout=10)
        assert info.pid is not None
        assert await gone(info.pid)
        assert not manager.has_model("tiny-a")
    finally:
        await manager.close()
