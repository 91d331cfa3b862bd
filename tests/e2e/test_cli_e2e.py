"""`wlm serve` as a user runs it: clear config errors, clean shutdown on SIGINT/SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import WlmServer

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WLM_ROUTES": "gpt-*"}, "WLM_ROUTES: expected pattern=provider, got 'gpt-*'"),
        ({"WLM_PORT": "eighty"}, "WLM_PORT: expected a whole number, got 'eighty'"),
        (
            {"WLM_ROUTES": "gpt-*=nosuch"},
            "WLM_ROUTES: route 'gpt-*' names unknown provider 'nosuch'",
        ),
    ],
)
def test_malformed_settings_stop_start_up_with_one_line(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wlm.cli", "serve"],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_env_file_option_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text("WLM_ROUTES=broken\n")
    result = subprocess.run(
        [sys.executable, "-m", "wlm.cli", "serve", "--env-file", str(env_file)],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "WLM_ROUTES" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_cleanly_on_a_signal(tmp_path: Path, sig: int) -> None:
    server = WlmServer({}, tmp_path).start()
    assert server.process is not None
    code = server.stop(sig, timeout=30)
    assert code == 0
    assert "Traceback" not in server.log()
    # The telemetry file was flushed and closed: it opens read-only at once.
    import duckdb

    with duckdb.connect(str(tmp_path / "data" / "telemetry.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM requests").fetchone() == (0,)


def test_more_than_one_worker_is_refused_clearly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wlm.cli", "serve", "--workers", "2"],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--workers" in result.stderr
    assert "one process" in result.stderr


def test_request_body_over_the_limit_is_413(tmp_path: Path) -> None:
    """Client sees 413 with an OpenAI error naming the setting; the server stays healthy."""
    import httpx

    server = WlmServer({"WLM_MAX_BODY_BYTES": "2000", "WLM_DEFAULT_PROVIDER": "openai"}, tmp_path)
    server.start()
    try:
        big = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 5000}]}
        response = httpx.post(f"{server.base_url}/v1/chat/completions", json=big, timeout=10)
        assert response.status_code == 413
        error = response.json()["error"]
        assert error["code"] == "request_too_large"
        assert "WLM_MAX_BODY_BYTES" in error["message"]
        sql = httpx.post(
            f"{server.base_url}/api/sql", json={"sql": "SELECT 1", "pad": "x" * 5000}, timeout=10
        )
        assert sql.status_code == 413 and sql.json()["error"]["type"] == "invalid_request_error"
        assert httpx.get(f"{server.base_url}/health", timeout=5).status_code == 200
    finally:
        assert server.stop() == 0
