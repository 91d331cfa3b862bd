"""Safe by default: wlm refuses to listen beyond loopback without client keys AND an
admin key (client keys alone would leave /api/*, /api/sql and the pages open).

- client (the person running ``wlm serve``): a non-zero exit and one clear line naming
  the missing setting(s); with WLM_ALLOW_OPEN=1 it starts and the log warns, naming
  what is open; with both keys it starts without a warning;
- left running: nothing after a refusal; a started server is stopped at once (it is
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
from tests.faults.helpers import KEYS, Ledger

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


CLIENT_KEYS = {"WLM_API_KEYS": f"alice:{KEYS.alice}"}
ADMIN_KEY = {"WLM_ADMIN_KEY": KEYS.admin}


def refusal(workdir: Path, args: list[str], env: dict[str, str]) -> str:
    """Run ``wlm serve`` expecting a refusal; its one stderr line."""
    result = subprocess.run(
        [sys.executable, "-m", "wlm.cli", "serve", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    return lines[0]


@pytest.mark.parametrize("how", ["flag", "env"])
def test_listening_beyond_loopback_without_keys_is_refused(tmp_path: Path, how: str) -> None:
    port = free_port()
    args = ["--host", "0.0.0.0", "--port", str(port)] if how == "flag" else []
    env = bare_env(tmp_path)
    if how == "env":
        env |= {"WLM_HOST": "0.0.0.0", "WLM_PORT": str(port)}

    line = refusal(tmp_path, args, env)

    assert line.startswith("wlm: configuration error: WLM_HOST: refusing to listen on 0.0.0.0")
    assert "set WLM_API_KEYS and WLM_ADMIN_KEY, or WLM_ALLOW_OPEN=1" in line
    assert port_is_free(port), "something was left listening"


@pytest.mark.parametrize(
    ("keys", "missing", "present"),
    [
        (CLIENT_KEYS, "WLM_ADMIN_KEY", "WLM_API_KEYS"),  # /api/* and the pages would be open
        (ADMIN_KEY, "WLM_API_KEYS", "WLM_ADMIN_KEY"),  # the provider keys would be open
    ],
)
def test_listening_beyond_loopback_with_one_kind_of_key_is_refused(
    tmp_path: Path, keys: dict[str, str], missing: str, present: str
) -> None:
    port = free_port()

    line = refusal(tmp_path, ["--host", "0.0.0.0", "--port", str(port)], bare_env(tmp_path, **keys))

    assert f"set {missing}, or WLM_ALLOW_OPEN=1" in line
    assert present not in line
    if missing == "WLM_ADMIN_KEY":
        assert "/api/sql" in line
    assert KEYS.alice not in line and KEYS.admin not in line
    assert port_is_free(port), "something was left listening"


def start_stop(server: WlmServer) -> list[str]:
    """Start ``server`` (health through 127.0.0.1 only), stop it; its WARNING lines."""
    try:
        server.start()
        assert httpx.get(f"{server.base_url}/health", timeout=5).status_code == 200
    finally:
        assert server.stop() == 0
    return [line for line in server.log().splitlines() if "WARNING" in line]


@pytest.mark.parametrize(
    ("keys", "open_"),
    [({}, "WLM_API_KEYS and WLM_ADMIN_KEY"), (CLIENT_KEYS, "WLM_ADMIN_KEY")],
)
def test_allow_open_starts_and_warns(
    tmp_path: Path, ledger: Ledger, keys: dict[str, str], open_: str
) -> None:
    env = bare_env(tmp_path, WLM_HOST="0.0.0.0", WLM_ALLOW_OPEN="1", **keys)
    server = ledger.register(WlmServer(env, tmp_path))

    warnings = start_stop(server)

    assert any(f"0.0.0.0 without {open_} (WLM_ALLOW_OPEN=1)" in line for line in warnings), (
        server.log()
    )


def test_both_keys_start_beyond_loopback_without_a_warning(tmp_path: Path, ledger: Ledger) -> None:
    env = bare_env(tmp_path, WLM_HOST="0.0.0.0", **CLIENT_KEYS, **ADMIN_KEY)
    server = ledger.register(WlmServer(env, tmp_path))

    warnings = start_stop(server)

    assert f"wlm serving on http://0.0.0.0:{server.port}/v1" in server.log()
    assert not any("WLM_ALLOW_OPEN" in line for line in warnings), server.log()
