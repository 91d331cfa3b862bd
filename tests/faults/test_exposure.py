"""Safe by default: wlm refuses to listen beyond loopback without client keys.

- client (the person running ``wlm serve``): a non-zero exit and one clear line naming
  the setting to change; with WLM_ALLOW_OPEN=1 it starts and the log warns;
- left running: nothing after a refusal; the open server is stopped at once (it is
  only checked through 127.0.0.1, and it has no provider key to expose).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import WlmServer, free_port
from tests.faults.helpers import Ledger

pytestmark = pytest.mark.e2e


def bare_env(workdir: Path, **extra: str) -> dict[str, str]:
    """No keys of any kind, so an exposed server could give nothing away."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(workdir),
        "WLM_DATA_DIR": str(workdir / "data"),
        "WLM_MODELS_DIR": str(workdir / "models"),
        **extra,
    }


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


@pytest.mark.parametrize("how", ["flag", "env"])
def test_listening_beyond_loopback_without_keys_is_refused(tmp_path: Path, how: str) -> None:
    port = free_port()
    args = ["--host", "0.0.0.0", "--port", str(port)] if how == "flag" else []
    env = bare_env(tmp_path)
    if how == "env":
        env |= {"WLM_HOST": "0.0.0.0", "WLM_PORT": str(port)}

    result = subprocess.run(
        [sys.executable, "-m", "wlm.cli", "serve", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "0.0.0.0" in lines[0] and "WLM_API_KEYS" in lines[0] and "WLM_ALLOW_OPEN" in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert port_is_free(port), "something was left listening"


def test_allow_open_starts_and_warns(tmp_path: Path, ledger: Ledger) -> None:
    server = ledger.register(
        WlmServer(bare_env(tmp_path, WLM_HOST="0.0.0.0", WLM_ALLOW_OPEN="1"), tmp_path)
    )
    try:
        server.start()  # polls /health on 127.0.0.1 only
        assert httpx.get(f"{server.base_url}/health", timeout=5).status_code == 200
    finally:
        assert server.stop() == 0
    warnings = [line for line in server.log().splitlines() if "WARNING" in line]
    assert any("0.0.0.0" in line and "WLM_ALLOW_OPEN" in line for line in warnings), server.log()
