"""The box sampler: what nvidia-smi and rocm-smi print, parsed; a sample of this box."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from wlm.local.box_stats import (
    BoxSampler,
    GpuUsage,
    parse_nvidia_smi,
    parse_rocm_smi,
    sample_json,
)
from wlm.local.supervisor import InstanceInfo

MIB = 1024 * 1024
NVIDIA_CSV = (
    "0, NVIDIA GeForce RTX 4090, 1234, 24564, 37\n1, NVIDIA A100-SXM4-80GB, 0, 81920, [N/A]\n"
)


def test_nvidia_smi_csv_is_one_gpu_per_line_in_bytes() -> None:
    assert parse_nvidia_smi(NVIDIA_CSV) == (
        GpuUsage(0, "NVIDIA GeForce RTX 4090", 1234 * MIB, 24564 * MIB, 37.0),
        GpuUsage(1, "NVIDIA A100-SXM4-80GB", 0, 81920 * MIB, None),
    )


def test_a_gpu_name_with_a_comma_is_kept_whole() -> None:
    (gpu,) = parse_nvidia_smi("2, Tesla T4, rev 2, 100, 15360, 5\n")
    assert (gpu.index, gpu.name, gpu.util_percent) == (2, "Tesla T4, rev 2", 5.0)


def test_rocm_smi_json_cards_in_order() -> None:
    text = json.dumps(
        {
            "card1": {
                "VRAM Total Memory (B)": "17163091968",
                "VRAM Total Used Memory (B)": "10412032",
                "GPU use (%)": "3",
            },
            "card0": {
                "VRAM Total Memory (B)": "68702699520",
                "VRAM Total Used Memory (B)": "2147483648",
                "GPU use (%)": "99",
                "Card Series": "AMD Instinct MI210",
            },
            "system": {"Driver version": "6.8"},
        }
    )
    assert parse_rocm_smi(text) == (
        GpuUsage(0, "AMD Instinct MI210", 2147483648, 68702699520, 99.0),
        GpuUsage(1, "card1", 10412032, 17163091968, 3.0),
    )


def test_nvidia_smi_printing_nothing_is_no_gpu() -> None:
    assert parse_nvidia_smi("\n") == ()


@pytest.mark.parametrize("text", ["garbage", "NVIDIA-SMI has failed\n", "0, x, 1\n"])
def test_garbage_from_nvidia_smi_is_an_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_nvidia_smi(text)


@pytest.mark.parametrize("text", ["", "garbage", "[]", '{"system": {}}'])
def test_garbage_from_rocm_smi_is_an_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rocm_smi(text)


def _tool(directory: Path, name: str, script: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


async def test_a_fake_nvidia_smi_on_path_gives_the_gpus(tmp_path: Path) -> None:
    _tool(tmp_path, "nvidia-smi", f"printf '{NVIDIA_CSV}'\n")
    sample = await BoxSampler(None, path=str(tmp_path)).sample()
    assert sample.gpu_tool == "nvidia-smi"
    assert [g.name for g in sample.gpus] == ["NVIDIA GeForce RTX 4090", "NVIDIA A100-SXM4-80GB"]
    body = sample_json(sample)
    assert body["gpus"][0]["memory_used_bytes"] == 1234 * MIB
    assert body["gpus"][0]["utilization_percent"] == 37.0


async def test_without_a_gpu_tool_the_sample_has_no_gpu_section(tmp_path: Path) -> None:
    sample = await BoxSampler(None, path=str(tmp_path)).sample()
    assert sample.gpus == () and sample.gpu_tool is None
    assert "gpus" not in sample_json(sample)
    # the box itself is always there
    memory = psutil.virtual_memory()
    assert sample.mem_total_bytes == memory.total
    assert 0 < sample.mem_used_bytes < sample.mem_total_bytes
    assert sample.cpu_count == len(sample.per_core_percent) == psutil.cpu_count()
    assert 0.0 <= sample.cpu_percent <= 100.0


async def test_garbage_from_the_tool_is_no_gpu_and_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _tool(tmp_path, "nvidia-smi", "echo 'Failed to initialize NVML: Driver/library mismatch'\n")
    sampler = BoxSampler(None, path=str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="wlm.local.box_stats"):
        first = await sampler.sample()
        second = await sampler.sample()
    assert first.gpus == second.gpus == ()
    said = [r.getMessage() for r in caplog.records if "nvidia-smi" in r.getMessage()]
    assert len(said) == 1, said
    assert "could not be read" in said[0]


async def test_a_tool_that_hangs_is_killed_at_the_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    _tool(tmp_path, "nvidia-smi", f"echo $$ > {pid_file}\nexec sleep 60\n")
    sampler = BoxSampler(None, path=str(tmp_path), timeout_s=0.5)
    started = time.monotonic()
    sample = await sampler.sample()
    assert time.monotonic() - started < 5
    assert sample.gpus == ()
    pid = int(pid_file.read_text())
    assert not psutil.pid_exists(pid)  # killed and reaped: nothing left behind


async def test_a_tool_running_when_the_server_stops_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    _tool(
        tmp_path,
        "nvidia-smi",
        f"echo $$ > {pid_file}.tmp\nmv {pid_file}.tmp {pid_file}\nexec sleep 60\n",
    )
    sampling = asyncio.create_task(BoxSampler(None, path=str(tmp_path), timeout_s=60).sample())
    deadline = time.monotonic() + 10
    while not pid_file.exists():  # the tool is running
        assert time.monotonic() < deadline, "the tool never started"
        await asyncio.sleep(0.01)
    pid = int(pid_file.read_text())
    assert psutil.pid_exists(pid)
    sampling.cancel()  # what Gateway.close does to the sampling task
    with pytest.raises(asyncio.CancelledError):
        await sampling
    assert not psutil.pid_exists(pid)  # killed and reaped before the cancel finished


class _Engines:
    """What the sampler reads of LocalModels: the instances."""

    def __init__(self, infos: list[InstanceInfo]) -> None:
        self.infos = infos

    def instances(self) -> list[InstanceInfo]:
        return self.infos


def _info(model: str, pid: int | None, rss: int | None, in_flight: int) -> InstanceInfo:
    return InstanceInfo(
        model_id=model,
        state="ready" if pid else "stopped",
        pid=pid,
        port=None,
        engine="llama-server",
        started_at=None,
        uptime_s=None,
        rss_bytes=rss,
        in_flight=in_flight,
        last_used=None,
        restarts=0,
        last_error=None,
    )


async def test_running_engines_are_sampled_with_their_rss_and_busy_slots(tmp_path: Path) -> None:
    local: Any = _Engines([_info("qwen", os.getpid(), 123 * MIB, 2), _info("gone", None, None, 0)])
    sample = await BoxSampler(local, path=str(tmp_path)).sample()
    assert sample_json(sample)["engines"] == [
        {"model": "qwen", "pid": os.getpid(), "rss_bytes": 123 * MIB, "slots_busy": 2}
    ]
