"""The llama-server engine path (WLM_LLAMA_SERVER): command line, health polling, timeouts.

No llama-server binary is installed here, so a stand-in script execs the embedded
launcher, which accepts llama-server's flags and serves the same HTTP API on the port
it is given.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from tests.integration.local.localhelpers import MakeManager, gone
from wlm.errors import ModelUnavailable

pytestmark = pytest.mark.local

ROOT = Path(__file__).resolve().parents[3]


def _script(path: Path, body: str) -> str:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


async def test_llama_server_is_run_with_its_flags_and_polled_for_health(
    make_manager: MakeManager, tmp_path: Path
) -> None:
    binary = _script(
        tmp_path / "llama-server",
        f'PYTHONPATH="{ROOT}" exec "{sys.executable}" -m wlm.local.launcher "$@"',
    )
    manager = await make_manager(llama_server=binary)

    async with manager.use("tiny-a") as base_url, httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{base_url}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        )
        metrics = await client.get(f"{base_url}/metrics")

    [info] = manager.instances()
    assert info.engine == "llama-server"
    assert base_url == f"http://127.0.0.1:{info.port}"
    assert response.json()["usage"]["completion_tokens"] == 4
    assert metrics.status_code == 200  # --metrics was passed
    assert manager.logs("tiny-a")[0].startswith(f"wlm: starting llama-server: {binary} -m ")


async def test_engine_that_never_gets_healthy_times_out_and_is_killed(
    make_manager: MakeManager, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    binary = _script(
        tmp_path / "llama-server",
        f'echo $$ > "{pid_file}"; echo "pretending to load"; exec sleep 60',
    )
    manager = await make_manager(llama_server=binary, local_load_timeout_s=0.5)

    with pytest.raises(ModelUnavailable, match=r"not ready after 0\.5 s: pretending to load"):
        await manager.load("tiny-a")

    assert await gone(int(pid_file.read_text()))
    [info] = manager.instances()
    assert info.state == "failed"
    assert info.pid is None


async def test_engine_that_exits_at_once_reports_its_last_words(
    make_manager: MakeManager, tmp_path: Path
) -> None:
    binary = _script(
        tmp_path / "llama-server", 'echo "error: unknown argument: --jinja" >&2; exit 1'
    )
    manager = await make_manager(llama_server=binary)

    with pytest.raises(ModelUnavailable, match="exited with code 1: error: unknown argument"):
        await manager.load("tiny-a")


async def test_missing_configured_binary_is_a_clear_error(
    make_manager: MakeManager, tmp_path: Path
) -> None:
    manager = await make_manager(llama_server=str(tmp_path / "nope" / "llama-server"))

    with pytest.raises(ModelUnavailable, match="WLM_LLAMA_SERVER"):
        await manager.load("tiny-a")
