"""`wlm sql` / `wlm models` against a server whose keys are configured as sha256: hashes.

A hash is not the key: sending it gets 401. The CLI then needs the clear key in
WLM_CLI_KEY, and says so in one line when it is missing; without a server running it
works offline and needs no key.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import WlmServer

pytestmark = pytest.mark.e2e

ADMIN = "wlm-cli-admin-5c2e9a1f7b3d"
ALICE = "wlm-cli-alice-8d4b6f0e2a9c"


def hashed(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


HASHED_KEYS = {"WLM_ADMIN_KEY": hashed(ADMIN), "WLM_API_KEYS": f"alice:{hashed(ALICE)}"}


def wlm(server: WlmServer, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``wlm <args>`` with the server's environment (and ``env`` on top)."""
    return subprocess.run(
        [sys.executable, "-m", "wlm.cli", *args],
        cwd=server.workdir,
        env={**server.env, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line(run: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr
    return lines[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WlmServer]:
    server = WlmServer(HASHED_KEYS, tmp_path_factory.mktemp("wlm-cli-keys")).start()
    yield server
    assert server.stop() == 0


@pytest.mark.parametrize("command", [["sql", "SELECT 1 AS one"], ["models"]])
def test_a_hashed_key_without_wlm_cli_key_fails_with_one_line(
    server: WlmServer, command: list[str]
) -> None:
    run = wlm(server, *command)

    assert run.returncode == 2 and run.stdout == ""
    line = one_line(run)
    assert line.startswith("wlm: configuration error: WLM_CLI_KEY: WLM_ADMIN_KEY is set as")
    assert "sha256: hash" in line and server.base_url in line
    assert hashed(ADMIN) not in line


def test_wlm_sql_sends_the_clear_key_from_wlm_cli_key(server: WlmServer) -> None:
    run = wlm(server, "sql", "SELECT 41 + 1 AS answer", "--format", "json", WLM_CLI_KEY=ADMIN)

    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [{"answer": 42}]


def test_wlm_models_sends_the_clear_key_from_wlm_cli_key(server: WlmServer) -> None:
    run = wlm(server, "models", "--format", "json", WLM_CLI_KEY=ALICE)

    assert run.returncode == 0, run.stderr
    assert isinstance(json.loads(run.stdout), list)


def test_a_wrong_wlm_cli_key_is_reported_not_hidden_by_the_offline_list(
    server: WlmServer,
) -> None:
    models = wlm(server, "models", WLM_CLI_KEY="not-the-key")
    sql = wlm(server, "sql", "SELECT 1", WLM_CLI_KEY="not-the-key")

    assert models.returncode == 1 and models.stdout == ""
    assert "refused the key (HTTP 401)" in one_line(models)
    assert "WLM_CLI_KEY" in one_line(models)
    assert sql.returncode == 1 and sql.stdout == ""
    assert "admin key" in one_line(sql)


def test_without_a_server_a_hashed_key_needs_no_wlm_cli_key(tmp_path: Path) -> None:
    server = WlmServer(HASHED_KEYS, tmp_path).start()
    assert server.stop(signal.SIGTERM) == 0

    run = wlm(server, "sql", "SELECT count(*) AS n FROM requests", "--format", "json")

    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [{"n": 0}]
