"""Helpers for the local-engine tests: settings, an unloadable GGUF, engine pids."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import psutil

from wlm.config import Settings
from wlm.local.manager import LocalManager

MakeManager = Callable[..., Awaitable[LocalManager]]


def write_unloadable_gguf(path: Path) -> Path:
    """A well-formed GGUF that llama.cpp refuses: the llama hyperparameters are missing."""
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_context_length(128)
    writer.add_embedding_length(8)
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def tiny_settings(models_dir: Path, **overrides: Any) -> Settings:
    """Settings for tests: the given models dir, 1 thread, small context, 1 slot."""
    values: dict[str, Any] = {
        "models_dir": models_dir,
        "local_threads": 1,  # see shared/LOCAL_ENGINE.md: 2 threads stall on a busy 2-core box
        "local_ctx_size": 512,
        "local_parallel": 1,
        "local_load_timeout_s": 30.0,
        **overrides,
    }
    return Settings(**values)


def engine_pids() -> set[int]:
    """Engine processes (embedded launchers) that are children of this test process."""
    pids = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if "wlm.local.launcher" in " ".join(child.cmdline()):
                pids.add(child.pid)
        except psutil.Error:
            continue
    return pids


async def gone(pid: int, timeout: float = 10.0) -> bool:
    """Wait until ``pid`` no longer runs (a zombie counts as gone); True if so.

    Polls instead of waiting on the pid: the engine may be our child, and reaping it
    here would steal its exit status from asyncio's child watcher.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        await asyncio.sleep(0.05)
    return False
