"""The box in-process: GET /api/stats, the dashboard's panel, the samples in the
telemetry file and their charts on /analytics, with a fake nvidia-smi on PATH and a
real engine on the tiny model."""

from __future__ import annotations

import asyncio
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.integration.test_pages import ADMIN_KEY, settings_env
from wlm.app import create_app
from wlm.config import load_settings
from wlm.local.testmodel import write_tiny_gguf

Client = AsyncTestClient[Any]
BEARER = {"authorization": f"Bearer {ADMIN_KEY}"}
MIB = 1024 * 1024
NVIDIA_CSV = "0, NVIDIA GeForce RTX 4090, 20480, 24564, 87\n"


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty directory that is the whole PATH: no GPU tool unless a test writes one."""
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))
    return directory


def fake_nvidia_smi(directory: Path) -> None:
    tool = directory / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\nprintf '{NVIDIA_CSV}'\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def make_client(tmp_path: Path) -> Callable[..., Client]:
    def make(local: bool = False, **extra: str) -> Client:
        extra = {"WLM_ADMIN_KEY": ADMIN_KEY, "WLM_STATS_EVERY_S": "0.2", **extra}
        env = settings_env(tmp_path, **extra)
        app = create_app(load_settings(env), local="default" if local else None)
        return AsyncTestClient(app=app, base_url="http://127.0.0.1")

    return make


async def stats_until(
    c: Client, done: Callable[[dict[str, Any]], bool], timeout_s: float = 30.0
) -> dict[str, Any]:
    """Poll GET /api/stats until ``done(body)``, with a deadline."""
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        answer = await c.get("/api/stats", headers=BEARER)
        if answer.status_code == 200:
            body = answer.json()
            if done(body):
                return body
        else:
            assert answer.status_code == 503, answer.text  # only before the first sample
        await asyncio.sleep(0.05)  # a poll interval, not a synchronisation
    raise AssertionError(f"no such sample within {timeout_s} s; last: {body}")


async def test_a_fake_nvidia_smi_shows_its_gpu_in_stats_dashboard_and_analytics(
    make_client: Callable[..., Client], bin_dir: Path
) -> None:
    fake_nvidia_smi(bin_dir)
    async with make_client() as c:
        assert (await c.get("/api/stats")).status_code == 401  # admin only
        body = await stats_until(c, lambda b: "gpus" in b)
        assert body["gpus"] == [
            {
                "index": 0,
                "name": "NVIDIA GeForce RTX 4090",
                "memory_used_bytes": 20480 * MIB,
                "memory_total_bytes": 24564 * MIB,
                "utilization_percent": 87.0,
            }
        ]
        assert body["gpu_tool"] == "nvidia-smi"
        assert body["cpu"]["count"] >= 1 and 0 <= body["cpu"]["percent"] <= 100
        assert 0 < body["memory"]["used_bytes"] < body["memory"]["total_bytes"]

        live = await c.get(
            "/", params={"fragment": "live"}, headers={"hx-request": "true", **BEARER}
        )
        assert 'id="box-cpu"' in live.text and 'id="box-memory"' in live.text
        assert "GPU 0, NVIDIA GeForce RTX 4090" in live.text
        assert "20.0 GiB of 24.0 GiB" in live.text

        # The samples land in the telemetry file and /analytics charts them.
        telemetry = c.app.state.gateway.telemetry
        assert await asyncio.to_thread(telemetry.flush, 10)
        stored = await telemetry.query(
            "SELECT kind, name, gpu_index, util_percent, mem_used_bytes FROM box_samples "
            "WHERE kind = 'gpu' LIMIT 1"
        )
        assert stored.rows == (("gpu", "NVIDIA GeForce RTX 4090", 0, 87.0, 20480 * MIB),)
        page = await c.get("/analytics", params={"range": "1h"}, headers=BEARER)
        assert page.status_code == 200
        for figure in ("box-use", "box-memory", "box-slots"):
            assert f'id="figure-{figure}"' in page.text
        use = page.text.split('id="figure-box-use"')[1].split("</figure>")[0]
        assert 'data-series="gpu 0"' in use and 'data-series="cpu"' in use
        assert "87%" in use  # the GPU's use, in a point's title
        twin = (await c.get("/analytics.json", params={"range": "1h"}, headers=BEARER)).json()
        assert {r["device"] for r in twin["box_timeseries"]} >= {"cpu", "gpu 0"}


async def test_without_a_gpu_tool_there_is_no_gpu_section(
    make_client: Callable[..., Client], bin_dir: Path
) -> None:
    async with make_client() as c:
        body = await stats_until(c, lambda b: True)
        assert "gpus" not in body and "gpu_tool" not in body
        live = await c.get(
            "/", params={"fragment": "live"}, headers={"hx-request": "true", **BEARER}
        )
        assert 'id="box-cpu"' in live.text and "box-gpu" not in live.text
        twin = (await c.get("/index.json", headers=BEARER)).json()["box"]
        assert twin["memory"]["total_bytes"] == body["memory"]["total_bytes"]
        assert "gpus" not in twin


async def test_stats_off_is_a_clear_404(make_client: Callable[..., Client], bin_dir: Path) -> None:
    async with make_client(WLM_STATS_EVERY_S="0") as c:
        answer = await c.get("/api/stats", headers=BEARER)
        assert answer.status_code == 404
        assert "WLM_STATS_EVERY_S" in answer.json()["error"]["message"]
        live = await c.get(
            "/", params={"fragment": "live"}, headers={"hx-request": "true", **BEARER}
        )
        assert 'id="box-cpu"' not in live.text


@pytest.mark.local
async def test_a_running_engine_shows_its_rss_and_slots(
    make_client: Callable[..., Client], tmp_path: Path, bin_dir: Path
) -> None:
    write_tiny_gguf(tmp_path / "models" / "tiny.gguf")
    async with make_client(local=True) as c:
        loaded = await c.post("/api/models/tiny/load", headers=BEARER)
        assert loaded.status_code == 200, loaded.text
        ready_at = time.time()  # a sample taken while it loaded may count the load's hold
        body = await stats_until(c, lambda b: b["at"] > ready_at and bool(b["engines"]))
        (engine,) = body["engines"]
        assert engine["rss_bytes"] > MIB and engine["pid"] > 0
        assert engine["slots_busy"] == 0  # loaded, nothing running
        live = await c.get(
            "/", params={"fragment": "live"}, headers={"hx-request": "true", **BEARER}
        )
        assert 'id="box-engines"' in live.text and 'data-model="tiny"' in live.text
