"""Fixtures for the local-engine tests: a models directory of tiny GGUFs, managers."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.local.localhelpers import MakeManager, tiny_settings, write_unloadable_gguf
from wlm.local.manager import LocalManager
from wlm.local.testmodel import write_tiny_gguf


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-a, sub/tiny-b, a split set big/tiny-split, a projector-carrying vision/tiny-v,
    plus broken.gguf (not GGUF), bad-arch.gguf (GGUF that llama.cpp rejects) and an
    incomplete split set."""
    root = tmp_path_factory.mktemp("models")
    tiny = write_tiny_gguf(root / "tiny-a.gguf", seed=1)
    write_tiny_gguf(root / "sub" / "tiny-b.gguf", seed=2)
    write_tiny_gguf(root / "big" / "tiny-split.gguf", seed=3, max_tensors_per_file=8)
    (root / "vision").mkdir()
    shutil.copy(tiny, root / "vision" / "tiny-v.gguf")
    (root / "vision" / "mmproj-tiny-v-f16.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(16))
    (root / "broken.gguf").write_bytes(b"this is not a model")
    write_unloadable_gguf(root / "bad-arch.gguf")
    write_tiny_gguf(root / "partial" / "half.gguf", seed=4, max_tensors_per_file=8)
    (root / "partial" / "half-00002-of-00003.gguf").unlink()
    return root


@pytest.fixture
async def make_manager(models_dir: Path) -> AsyncIterator[MakeManager]:
    """Build started managers (tiny settings, 1 thread); all are closed after the test."""
    managers: list[LocalManager] = []

    async def make(**overrides: Any) -> LocalManager:
        manager = LocalManager(tiny_settings(models_dir, **overrides))
        await manager.start()
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        await manager.close()
