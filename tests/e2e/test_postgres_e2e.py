"""A real `wlm serve` with WLM_TELEMETRY_URL on a throwaway PostgreSQL (tests/pg.py):
every answered request has its row there, `/api/sql` and `wlm sql` read it (and refuse
what they must with a clear error), and the password shows nowhere."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import WlmServer
from tests.e2e.telemetry_helpers import wlm_cli
from tests.e2e.test_telemetry_durability_e2e import burst
from tests.fakes import FakeUpstream
from tests.pg import PASSWORD, wait_until

pytestmark = pytest.mark.e2e


def test_a_server_writes_to_postgresql_and_reads_it_back(
    wlm_factory: Callable[..., WlmServer],
    openai_fake: FakeUpstream,
    pg_url: str,
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "wlm"
    (workdir / "models").mkdir(parents=True)
    server = wlm_factory(
        {
            "OPENAI_API_KEY": openai_fake.api_key,
            "OPENAI_BASE_URL": openai_fake.base_url,
            "WLM_ROUTES": "gpt-*=openai",
            "WLM_TELEMETRY_URL": pg_url,
        },
        workdir,
    )
    answers = asyncio.run(burst(server.base_url, 300, concurrency=20))
    assert Counter(status for status, _ in answers) == {200: 300}

    http = httpx.Client(base_url=server.base_url, timeout=10)
    health = http.get("/health").json()
    assert health["telemetry"]["healthy"], health

    # /api/sql reads PostgreSQL (once the writer has flushed).
    def count() -> int:
        body = http.post("/api/sql", json={"sql": "SELECT count(*) AS n FROM requests"}).json()
        return int(body["rows"][0][0])

    for _ in range(100):
        if count() == 300:
            break
        asyncio.run(asyncio.sleep(0.05))
    assert count() == 300
    for sql in (
        "SELECT pg_read_file('/etc/passwd')",
        "COPY requests TO PROGRAM 'id'",
        "DELETE FROM requests",
        "SELECT * FROM dblink('dbname=postgres', 'SELECT 1') AS t(x int)",
    ):
        refused = http.post("/api/sql", json={"sql": sql})
        assert refused.status_code == 400, (sql, refused.text)
        assert refused.json()["error"]["message"], refused.text
    # The pages read it too: the dashboard, the request log, one request.
    for path in ("/", "/requests.json", f"/requests/{answers[0][1]}"):
        page = http.get(path)
        assert page.status_code == 200, (path, page.text[:500])
    listed = http.get("/requests.json").json()
    assert "gpt-4o-mini" in str(listed)

    # The settings page shows the URL without the password.
    settings = http.get("/settings").text
    assert "[redacted]@127.0.0.1" in settings
    assert PASSWORD not in settings

    # `wlm sql` through the server, then straight to PostgreSQL with --file.
    via_server = wlm_cli(server, "sql", "SELECT count(*) AS n FROM requests", "--format", "csv")
    assert via_server.stdout.splitlines() == ["n", "300"], via_server.stderr
    server.stop()
    direct = wlm_cli(server, "sql", "SELECT count(*) AS n FROM requests", "--format", "csv")
    assert direct.stdout.splitlines() == ["n", "300"], direct.stderr
    refused_cli = wlm_cli(server, "sql", "DELETE FROM requests")
    assert refused_cli.returncode == 1 and "only SELECT" in refused_cli.stderr

    with psycopg.connect(pg_url) as con:
        ids = {row[0] for row in con.execute("SELECT request_id FROM requests")}
    assert ids == {request_id for _, request_id in answers}
    assert not (workdir / "data" / "telemetry.duckdb").exists()
    assert PASSWORD not in server.log()


def test_postgresql_away_and_back_under_a_running_server(
    wlm_factory: Callable[..., WlmServer],
    openai_fake: FakeUpstream,
    pg_cluster: Any,
    pg_url: str,
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "wlm"
    (workdir / "models").mkdir(parents=True)
    server = wlm_factory(
        {
            "OPENAI_API_KEY": openai_fake.api_key,
            "OPENAI_BASE_URL": openai_fake.base_url,
            "WLM_ROUTES": "gpt-*=openai",
            "WLM_TELEMETRY_URL": pg_url,
        },
        workdir,
    )
    http = httpx.Client(base_url=server.base_url, timeout=10)
    answers = asyncio.run(burst(server.base_url, 100, concurrency=10))
    pg_cluster.stop("immediate")
    try:
        answers += asyncio.run(burst(server.base_url, 200, concurrency=10))  # still served
        assert wait_until(lambda: http.get("/health").json()["telemetry"]["spooled_bytes"] > 0)
        health = http.get("/health").json()
        assert health["status"] == "degraded" and health["degraded"] == ["telemetry"]
        assert list((workdir / "data" / "telemetry-spool").glob("*.journal"))
        dashboard = http.get("/").text
        assert "the database is unreachable" in dashboard
    finally:
        pg_cluster.start()
    answers += asyncio.run(burst(server.base_url, 100, concurrency=10))
    assert Counter(status for status, _ in answers) == {200: 400}
    assert wait_until(lambda: "degraded" not in http.get("/health").json(), timeout=30)

    def written() -> list[tuple[str]]:
        with psycopg.connect(pg_url) as con:
            return con.execute("SELECT request_id FROM requests").fetchall()

    assert wait_until(lambda: len(written()) >= 400, timeout=10)
    rows = written()
    assert sorted(r[0] for r in rows) == sorted(request_id for _, request_id in answers)
    assert PASSWORD not in server.log()


def test_postgresql_stopped_and_restarted_under_load_every_row_once(
    wlm_factory: Callable[..., WlmServer],
    openai_fake: FakeUpstream,
    pg_cluster: Any,
    pg_url: str,
    tmp_path: Path,
) -> None:
    """PostgreSQL crashes and comes back while a burst runs through a real server: every
    request is served, and its row arrives once, from the spool or not."""
    workdir = tmp_path / "wlm"
    (workdir / "models").mkdir(parents=True)
    server = wlm_factory(
        {
            "OPENAI_API_KEY": openai_fake.api_key,
            "OPENAI_BASE_URL": openai_fake.base_url,
            "WLM_ROUTES": "gpt-*=openai",
            "WLM_TELEMETRY_URL": pg_url,
        },
        workdir,
    )
    http = httpx.Client(base_url=server.base_url, timeout=10)
    answers: list[tuple[int, str]] = []
    load = threading.Thread(
        target=lambda: answers.extend(asyncio.run(burst(server.base_url, 3000, concurrency=10)))
    )

    def written() -> list[str]:
        with psycopg.connect(pg_url) as con:
            return [row[0] for row in con.execute("SELECT request_id FROM requests")]

    load.start()
    try:
        assert wait_until(lambda: len(written()) >= 100, timeout=30)
        pg_cluster.stop("immediate")
        spooling = wait_until(lambda: http.get("/health").json()["telemetry"]["spooled_bytes"])
    finally:
        pg_cluster.start()
    assert spooling, "the rows did not go to the spool"
    assert load.is_alive(), "the burst ended before PostgreSQL came back"
    load.join(120)
    assert Counter(status for status, _ in answers) == {200: 3000}
    assert wait_until(lambda: "degraded" not in http.get("/health").json(), timeout=30)
    assert wait_until(lambda: len(written()) >= 3000, timeout=10)
    assert sorted(written()) == sorted(request_id for _, request_id in answers)
