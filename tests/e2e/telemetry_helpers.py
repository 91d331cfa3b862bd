"""Reading a server's telemetry the ways a user can: the API, the file, the CLI."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx

from tests.conftest import WlmServer

Rows = list[dict[str, Any]]


def sql_api(http: httpx.Client, sql: str) -> Rows:
    """Rows of ``sql`` as the running server answers ``POST /api/sql``."""
    response = http.post("/api/sql", json={"sql": sql})
    assert response.status_code == 200, response.text
    body = response.json()
    return [dict(zip(body["columns"], row, strict=True)) for row in body["rows"]]


def sql_file(path: Path, sql: str) -> Rows:
    """Rows of ``sql`` from a telemetry file no server holds, JSON-shaped like the API's."""
    with duckdb.connect(str(path), read_only=True) as con:
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description]
        return [
            {
                c: (v.isoformat() if isinstance(v, datetime) else v)
                for c, v in zip(columns, row, strict=True)
            }
            for row in cursor.fetchall()
        ]


def wait_for_rows(http: httpx.Client, n: int, timeout: float = 10.0) -> None:
    """Wait until the server has written ``n`` request rows (the writer flushes every 250 ms)."""
    deadline = time.monotonic() + timeout
    while True:
        count = sql_api(http, "SELECT count(*) AS n FROM requests")[0]["n"]
        if count >= n or time.monotonic() >= deadline:
            assert count == n, f"{count} rows, expected {n}"
            return
        time.sleep(0.05)  # polling the server's state, not synchronising the test


def wlm_cli(server: WlmServer, *args: str) -> subprocess.CompletedProcess[str]:
    """``wlm <args>`` with the server's environment and working directory."""
    return subprocess.run(
        [sys.executable, "-m", "wlm.cli", *args],
        cwd=server.workdir,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def stop(server: WlmServer) -> None:
    """A graceful stop (SIGTERM) that must end cleanly."""
    assert server.stop(signal.SIGTERM) == 0, server.log()[-3000:]


def telemetry_file(server: WlmServer) -> Path:
    """Where the server keeps its telemetry (the default under its data dir)."""
    return Path(server.env["WLM_DATA_DIR"]) / "telemetry.duckdb"
