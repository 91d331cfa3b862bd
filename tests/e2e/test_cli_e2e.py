"""`wlm serve` as a user runs it: clear config errors and ports in use, clean shutdown."""

from __future__ import annotations

import os
import signal
import socket
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


def serve_to_exit(
    args: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """``wlm serve <args>``, which must exit by itself within 30 s (then its group is killed)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "wlm.cli", "serve", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"wlm serve {' '.join(args)} kept running on a port in use:\n{stderr}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.parametrize("reuse_port", [True, False], ids=["shared-like-granian", "plain"])
def test_a_port_in_use_stops_start_up_with_one_line(tmp_path: Path, reuse_port: bool) -> None:
    """Granian binds with SO_REUSEPORT: without the check a second server would share the port."""
    with socket.socket() as listener:
        if reuse_port:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "WLM_DATA_DIR": str(tmp_path / "data"),
        }

        result = serve_to_exit(["--port", str(port)], env, tmp_path)

    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"wlm: 127.0.0.1:{port} is already in use (another wlm serve?); choose another with --port"
    ]
    assert not (tmp_path / "data").exists()  # no telemetry file opened, not even its directory


def test_a_second_wlm_serve_on_the_same_port_is_refused(tmp_path: Path) -> None:
    (tmp_path / "first").mkdir()
    first = WlmServer({}, tmp_path / "first").start()
    try:
        second_data = tmp_path / "second" / "data"
        env = {**first.env, "WLM_DATA_DIR": str(second_data)}

        result = serve_to_exit([], env, tmp_path)

        assert result.returncode != 0
        assert result.stderr.strip().splitlines() == [
            f"wlm: 127.0.0.1:{first.port} is already in use (another wlm serve?); "
            "choose another with --port"
        ]
        assert not second_data.exists()
        import httpx

        assert httpx.get(f"{first.base_url}/health", timeout=5).status_code == 200
    finally:
        assert first.stop() == 0
