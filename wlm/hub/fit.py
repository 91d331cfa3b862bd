"""Will a model fit in this machine's memory? A hint for choosing a quantization.

llama.cpp maps the whole file and adds its context (KV cache) and compute buffers, so
a model needs a little more than its file: about a tenth more plus half a GiB here.
"""

from __future__ import annotations

import psutil
from attrs import frozen

__all__ = ["Memory", "fit_hint", "machine_memory"]

_OVERHEAD_FACTOR = 1.1
_OVERHEAD_BYTES = 512 * 1024 * 1024


@frozen
class Memory:
    """This machine's RAM in bytes: all of it, and what is free for a new engine now."""

    total: int
    available: int


def machine_memory() -> Memory:
    memory = psutil.virtual_memory()
    return Memory(total=int(memory.total), available=int(memory.available))


def fit_hint(size_bytes: int | None, memory: Memory) -> tuple[str, str]:
    """``(level, text)``: ``fits`` (in the free memory), ``tight`` (only in the total:
    other programs or engines would have to give way) or ``too_big``; ``unknown`` without
    a size."""
    if size_bytes is None:
        return "unknown", "size unknown"
    need = size_bytes * _OVERHEAD_FACTOR + _OVERHEAD_BYTES
    if need <= memory.available:
        return "fits", "fits in free memory"
    if need <= memory.total:
        return "tight", "fits only if other programs give memory back"
    return "too_big", "larger than this machine's memory"
