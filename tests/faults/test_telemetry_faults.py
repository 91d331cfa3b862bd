"""Telemetry storage failures: serving goes on, /health says why, nothing accepted is lost.

The tests run as root, so ``chmod`` cannot make a directory read-only for wlm, and
mounting a tiny or read-only filesystem needs privileges CI does not have. Two honest
stand-ins instead (docs/reliability.md says the same):

- "disk full" while serving: a file-size limit (RLIMIT_FSIZE, set on the running wlm
  with prlimit) below the size of the DuckDB write-ahead log, so every write that
  grows a telemetry file fails with EFBIG, the way it fails with ENOSPC on a full disk;
- an unusable location at start: WLM_TELEMETRY_PATH inside a path whose parent is a
  regular file, so the database can be neither created nor opened.

In both, requests keep getting 200s, /health says ``degraded`` with the reason, and
once the fault is cleared the writer catches up: every accepted record is written.
"""

from __future__ import annotations

import resource
from pathlib import Path

import duckdb
import httpx
import psutil
import pytest

from tests.conftest import WlmServer
from tests.faults.conftest import StartWlm
from tests.faults.helpers import (
    KEYS,
    Ledger,
    RecordingTransport,
    chat,
    error_of,
    new_request_id,
    server_processes,
    telemetry_rows,
    wait_for,
)

pytestmark = pytest.mark.e2e

UNLIMITED = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)


def clients(server: WlmServer, ledger: Ledger) -> tuple[httpx.Client, httpx.Client]:
    def make(key: str) -> httpx.Client:
        return httpx.Client(
            base_url=server.base_url,
            headers={"authorization": f"Bearer {key}"},
            timeout=20,
            transport=RecordingTransport(ledger),
        )

    return make(KEYS.alice), make(KEYS.admin)


def health(http: httpx.Client) -> dict:
    response = http.get("/health")
    assert response.status_code == 200
    return response.json()


def send(http: httpx.Client, n: int, content: str = "hello") -> list[str]:
    """``n`` ordinary chat calls; all must succeed. Their request ids."""
    ids = []
    for _ in range(n):
        request_id = new_request_id()
        response = http.post(
            "/v1/chat/completions",
            json=chat("openai/gpt-4o-mini", marker=f"{request_id} {content}"),
            headers={"x-request-id": request_id},
        )
        assert response.status_code == 200, response.text
        ids.append(request_id)
    return ids


def count_rows(admin: httpx.Client, ids: list[str]) -> int:
    where = "request_id IN ({})".format(", ".join(f"'{i}'" for i in ids))
    return len(telemetry_rows(admin, where))


def test_disk_full_while_serving_degrades_then_recovers_without_losing_rows(
    start_wlm: StartWlm, ledger: Ledger
) -> None:
    """Client: 200 for every request, during the fault too.
    Telemetry: /health degraded with the write error; one log line, not one per batch;
    after the limit is lifted every accepted row is written (0 lost), also on disk.
    Left: wlm healthy; a graceful stop exits 0."""
    server = start_wlm({}, "disk-full")
    http, admin = clients(server, ledger)
    # Big prompts grow the write-ahead log well past the log file's size.
    before = send(http, 5, content="x" * 20_000)
    wait_for(lambda: health(http)["telemetry"]["written"] >= 5, 5, "the first rows")
    wal = server.workdir / "data" / "telemetry.duckdb.wal"
    limit = server.log_path.stat().st_size + 32_768
    assert wal.stat().st_size > limit, "the WAL is too small for the size limit to bite"
    for process in server_processes(server):
        process.rlimit(psutil.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    during = send(http, 20)

    state = wait_for(
        lambda: (h := health(http))["status"] == "degraded" and h, 10, "/health to degrade"
    )
    assert state["telemetry"]["healthy"] is False
    assert "File too large" in state["telemetry"]["last_error"]
    assert state["telemetry"]["dropped"] == 0
    for process in server_processes(server):
        process.rlimit(psutil.RLIMIT_FSIZE, UNLIMITED)
    after = send(http, 5)
    wait_for(
        lambda: (h := health(http))["status"] == "ok" and h["telemetry"]["queued"] == 0,
        15,
        "the writer to catch up",
    )
    assert health(http)["telemetry"]["last_error"] is None, "a recovered writer shows no error"
    ids = before + during + after
    assert count_rows(admin, ids) == len(ids), "rows were lost"
    failures = [line for line in server.log().splitlines() if "ERROR wlm.telemetry" in line]
    assert 1 <= len(failures) <= 3, failures  # reported, not once per retry
    http.close()
    admin.close()
    assert server.stop() == 0
    with duckdb.connect(str(server.workdir / "data" / "telemetry.duckdb"), read_only=True) as con:
        where = "request_id IN ({})".format(", ".join(f"'{i}'" for i in ids))
        assert con.execute(f"SELECT count(*) FROM requests WHERE {where}").fetchone() == (len(ids),)


@pytest.fixture(scope="module")
def unusable(start_wlm: StartWlm, ledger: Ledger) -> tuple[WlmServer, Path]:
    """A wlm whose WLM_TELEMETRY_PATH lies under a regular file."""
    blocker_env = "WLM_TELEMETRY_PATH"
    server = start_wlm({}, "unusable", wait=False)
    blocker = server.workdir / "telemetry"
    blocker.write_text("a file where the telemetry directory should be\n")
    server.env[blocker_env] = str(blocker / "telemetry.duckdb")
    return server.start(), blocker


def test_unusable_location_at_start_serves_and_reports_degraded(
    unusable: tuple[WlmServer, Path], ledger: Ledger
) -> None:
    """Client: 200s. Telemetry: /health degraded naming the path and the OS error.
    Left: wlm running and healthy otherwise."""
    server, blocker = unusable
    http, _ = clients(server, ledger)

    send(http, 3)

    state = health(http)
    assert state["status"] == "degraded"
    assert state["telemetry"]["healthy"] is False
    assert str(blocker) in state["telemetry"]["last_error"]
    assert state["telemetry"]["queued"] >= 3 and state["telemetry"]["dropped"] == 0


def test_sql_while_telemetry_is_unavailable_is_a_clear_503(
    unusable: tuple[WlmServer, Path], ledger: Ledger
) -> None:
    """Client of /api/sql: a 503 saying telemetry is unavailable, not a 500."""
    server, _ = unusable
    _, admin = clients(server, ledger)

    response = admin.post("/api/sql", json={"sql": "SELECT count(*) FROM requests"})

    assert response.status_code == 503, f"{response.status_code}: {response.text}"
    assert "telemetry" in error_of(response)["message"].lower()


def test_unusable_location_fixed_while_serving_recovers_every_row(
    unusable: tuple[WlmServer, Path], ledger: Ledger
) -> None:
    """The blocking file is replaced by a directory while wlm runs.
    Telemetry: the writer opens the file on its next retry and writes every record
    accepted meanwhile (0 lost); /health is ok again. Left: a graceful stop exits 0."""
    server, blocker = unusable
    http, admin = clients(server, ledger)
    ids = send(http, 3)
    accepted = ledger.proxied[server.port]  # every proxied request of this server so far
    wait_for(lambda: health(http)["telemetry"]["queued"] == accepted, 5, "all records queued")

    blocker.unlink()
    blocker.mkdir()

    wait_for(
        lambda: (h := health(http))["status"] == "ok" and h["telemetry"]["queued"] == 0,
        15,
        "the writer to open the file and catch up",
    )
    assert health(http)["telemetry"]["written"] == accepted
    assert count_rows(admin, ids) == len(ids)
    http.close()
    admin.close()
    assert server.stop() == 0
