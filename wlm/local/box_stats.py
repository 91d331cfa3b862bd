"""The box's resources: CPU, memory, each local engine's RSS and slots, the GPUs.

:class:`BoxSampler` takes one :class:`BoxSample` when asked; the gateway asks every
``WLM_STATS_EVERY_S`` seconds in a background task, never on the request path. CPU
and memory come from psutil; the engines from :meth:`LocalModels.instances` (their
RSS and the requests the manager counts on them); the GPUs from ``nvidia-smi`` or
``rocm-smi`` when one is on ``PATH``, run as a child with a timeout and killed past
it. What those tools print is parsed by pure functions (:func:`parse_nvidia_smi`,
:func:`parse_rocm_smi`): output they cannot read is no GPU, logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from typing import Any

import psutil
from attrs import frozen

from wlm.local.protocol import LocalModels

__all__ = [
    "NVIDIA_SMI_ARGS",
    "ROCM_SMI_ARGS",
    "BoxSample",
    "BoxSampler",
    "EngineUsage",
    "GpuUsage",
    "parse_nvidia_smi",
    "parse_rocm_smi",
    "sample_json",
]

log = logging.getLogger(__name__)

NVIDIA_SMI_ARGS = (
    "--query-gpu=index,name,memory.used,memory.total,utilization.gpu",
    "--format=csv,noheader,nounits",
)
ROCM_SMI_ARGS = ("--showmeminfo", "vram", "--showuse", "--json")
GPU_TOOL_TIMEOUT_S = 3.0
_MIB = 1024 * 1024


@frozen
class GpuUsage:
    """One GPU: its memory in bytes and its utilisation (None when the tool says N/A)."""

    index: int
    name: str
    mem_used_bytes: int | None
    mem_total_bytes: int | None
    util_percent: float | None


@frozen
class EngineUsage:
    """One running local engine: its resident memory and the requests on its slots."""

    model: str
    pid: int | None
    rss_bytes: int | None
    slots_busy: int


@frozen
class BoxSample:
    """The box at one moment (``at``: epoch seconds)."""

    at: float
    cpu_percent: float  # all cores together, 0-100
    cpu_count: int
    per_core_percent: tuple[float, ...]
    mem_total_bytes: int
    mem_used_bytes: int
    mem_available_bytes: int
    engines: tuple[EngineUsage, ...]
    gpus: tuple[GpuUsage, ...]
    gpu_tool: str | None  # "nvidia-smi", "rocm-smi" or None (no GPU tool on PATH)


def _number(text: str) -> float | None:
    """A figure the tools print; None for ``[N/A]``, ``N/A`` and the like."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


def _mib(text: str) -> int | None:
    value = _number(text)
    return int(value * _MIB) if value is not None else None


def parse_nvidia_smi(text: str) -> tuple[GpuUsage, ...]:
    """``nvidia-smi`` with :data:`NVIDIA_SMI_ARGS`: one CSV line per GPU, memory in MiB.

    Raises ValueError on a line that is not ``index, name, used, total, util``."""
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 5 or not cells[0].isdigit():
            raise ValueError(f"not an nvidia-smi line: {line[:120]!r}")
        # A name may hold a comma: everything between the index and the last three.
        name = ", ".join(cells[1:-3])
        used, total, util = cells[-3:]
        gpus.append(GpuUsage(int(cells[0]), name, _mib(used), _mib(total), _number(util)))
    return tuple(gpus)


def parse_rocm_smi(text: str) -> tuple[GpuUsage, ...]:
    """``rocm-smi`` with :data:`ROCM_SMI_ARGS`: ``{"card0": {"VRAM Total Memory (B)": ...,
    "VRAM Total Used Memory (B)": ..., "GPU use (%)": ...}, ...}``.

    Raises ValueError when the text is not that JSON."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"rocm-smi printed no JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("rocm-smi's JSON is not an object")
    gpus = []
    for card, fields in data.items():
        if not (card.startswith("card") and card[4:].isdigit() and isinstance(fields, dict)):
            continue  # "system" and the like
        values = {str(k).lower(): str(v) for k, v in fields.items()}
        total = _number(values.get("vram total memory (b)", ""))
        used = _number(values.get("vram total used memory (b)", ""))
        name = values.get("card series") or values.get("card model") or card
        gpus.append(
            GpuUsage(
                int(card[4:]),
                name,
                int(used) if used is not None else None,
                int(total) if total is not None else None,
                _number(values.get("gpu use (%)", "")),
            )
        )
    if not gpus:
        raise ValueError("rocm-smi's JSON names no card")
    return tuple(sorted(gpus, key=lambda g: g.index))


_PARSERS = {
    "nvidia-smi": (NVIDIA_SMI_ARGS, parse_nvidia_smi),
    "rocm-smi": (ROCM_SMI_ARGS, parse_rocm_smi),
}


class BoxSampler:
    """Takes :class:`BoxSample` s; one per gateway, used by one task at a time.

    ``path`` is the ``PATH`` searched for the GPU tools (the process's own by default),
    looked up at each sample so a tool installed later is found.
    """

    def __init__(
        self,
        local: LocalModels | None,
        *,
        path: str | None = None,
        timeout_s: float = GPU_TOOL_TIMEOUT_S,
    ) -> None:
        self._local = local
        self._path = path
        self._timeout_s = timeout_s
        # A tool whose output could not be read is said once, not every few seconds.
        self._complained: set[str] = set()
        # CPU use is measured between two samples: the times each core has spent so far.
        self._cpu_times = psutil.cpu_times(percpu=True)

    async def sample(self) -> BoxSample:
        """The box now; the GPU tool's child is killed past the timeout."""
        per_core = self._cpu_percent()
        memory = psutil.virtual_memory()
        tool, gpus = await self._gpus()
        return BoxSample(
            at=time.time(),
            cpu_percent=round(sum(per_core) / len(per_core), 1) if per_core else 0.0,
            cpu_count=len(per_core) or (os.cpu_count() or 1),
            per_core_percent=per_core,
            mem_total_bytes=int(memory.total),
            mem_used_bytes=int(memory.total - memory.available),
            mem_available_bytes=int(memory.available),
            engines=self._engines(),
            gpus=gpus,
            gpu_tool=tool,
        )

    def _cpu_percent(self) -> tuple[float, ...]:
        """Each core's busy share since the last sample, 0-100."""
        before, after = self._cpu_times, psutil.cpu_times(percpu=True)
        self._cpu_times = after
        return tuple(_busy_percent(a, b) for a, b in zip(before, after, strict=False))

    def _engines(self) -> tuple[EngineUsage, ...]:
        if self._local is None:
            return ()
        return tuple(
            EngineUsage(info.model_id, info.pid, info.rss_bytes, info.in_flight)
            for info in self._local.instances()
            if info.pid is not None
        )

    async def _gpus(self) -> tuple[str | None, tuple[GpuUsage, ...]]:
        path = self._path if self._path is not None else os.environ.get("PATH", os.defpath)
        for tool, (args, parse) in _PARSERS.items():
            found = shutil.which(tool, path=path)
            if found is None:
                continue
            output = await self._run(tool, found, args)
            if output is None:
                return tool, ()
            try:
                return tool, parse(output)
            except ValueError as exc:
                self._complain(tool, f"its output could not be read ({exc})")
                return tool, ()
        return None, ()

    async def _run(self, tool: str, executable: str, args: Sequence[str]) -> str | None:
        try:
            child = await asyncio.create_subprocess_exec(
                executable,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            self._complain(tool, f"it could not be run ({exc})")
            return None
        try:
            async with asyncio.timeout(self._timeout_s):
                out, _ = await child.communicate()
        except BaseException as exc:  # the timeout, or the server stopping: no orphan
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            with contextlib.suppress(BaseException):
                await asyncio.shield(child.wait())
            if isinstance(exc, TimeoutError):
                self._complain(tool, f"it did not answer within {self._timeout_s:g} s")
                return None
            raise
        if child.returncode != 0:
            self._complain(tool, f"it exited with status {child.returncode}")
            return None
        return out.decode("utf-8", "replace")

    def _complain(self, tool: str, why: str) -> None:
        if tool not in self._complained:
            self._complained.add(tool)
            log.warning("box stats: no GPU figures from %s: %s", tool, why)


def _busy_percent(before: Any, after: Any) -> float:
    """The share of the time between two ``cpu_times`` a core was not idle (nor waiting
    for I/O, which psutil counts as idle too)."""
    total = float(sum(after) - sum(before))
    idle = float(after.idle - before.idle) + float(
        getattr(after, "iowait", 0.0) - getattr(before, "iowait", 0.0)
    )
    if total <= 0:
        return 0.0
    return round(min(100.0, max(0.0, 100.0 * (total - idle) / total)), 1)


def sample_json(sample: BoxSample) -> dict[str, Any]:
    """A sample as ``GET /api/stats`` answers it (no GPU section without a GPU)."""
    body: dict[str, Any] = {
        "at": sample.at,
        "cpu": {
            "percent": sample.cpu_percent,
            "count": sample.cpu_count,
            "per_core_percent": list(sample.per_core_percent),
        },
        "memory": {
            "total_bytes": sample.mem_total_bytes,
            "used_bytes": sample.mem_used_bytes,
            "available_bytes": sample.mem_available_bytes,
        },
        "engines": [
            {
                "model": e.model,
                "pid": e.pid,
                "rss_bytes": e.rss_bytes,
                "slots_busy": e.slots_busy,
            }
            for e in sample.engines
        ],
    }
    if sample.gpus:
        body["gpus"] = [
            {
                "index": g.index,
                "name": g.name,
                "memory_used_bytes": g.mem_used_bytes,
                "memory_total_bytes": g.mem_total_bytes,
                "utilization_percent": g.util_percent,
            }
            for g in sample.gpus
        ]
        body["gpu_tool"] = sample.gpu_tool
    return body
