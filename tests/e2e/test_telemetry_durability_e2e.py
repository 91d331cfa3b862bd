"""Telemetry that survives load, shutdown and a broken file, and keeps content out when asked.

Each test runs its own `wlm serve` in front of the OpenAI fake: a burst of 2,000
requests stopped at once, content logging off (and on, as the positive control of a
raw-byte scan of the data dir), and a telemetry path that cannot be created.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aiohttp
import httpx
import openai
import pytest

from tests.conftest import WlmServer
from tests.e2e.telemetry_helpers import sql_file, stop, telemetry_file, wlm_cli
from tests.fakes import FakeUpstream

pytestmark = pytest.mark.e2e

StartServer = Callable[..., WlmServer]


def marked_files(root: Path, marker: bytes) -> list[Path]:
    """Every file under ``root`` whose raw bytes contain ``marker``."""
    return [p for p in root.rglob("*") if p.is_file() and marker in p.read_bytes()]


@pytest.fixture
def start_server(
    wlm_factory: StartServer, openai_fake: FakeUpstream, tmp_path: Path
) -> StartServer:
    """Start a server routing ``gpt-*`` to the OpenAI fake, no local models, ``env`` added."""

    def start(**env: str) -> WlmServer:
        workdir = tmp_path / "wlm"
        (workdir / "models").mkdir(parents=True)
        base = {
            "OPENAI_API_KEY": openai_fake.api_key,
            "OPENAI_BASE_URL": openai_fake.base_url,
            "WLM_ROUTES": "gpt-*=openai",
        }
        return wlm_factory({**base, **env}, workdir)

    return start


async def burst(base_url: str, n: int, concurrency: int) -> list[tuple[int, str]]:
    """``n`` non-stream chat requests, ``concurrency`` at a time: (status, x-request-id) each."""
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as session:

        async def one() -> tuple[int, str]:
            async with session.post("/v1/chat/completions", json=body) as response:
                await response.read()
                return response.status, response.headers["x-request-id"]

        return await asyncio.gather(*(one() for _ in range(n)))


def test_a_burst_of_2000_leaves_2000_rows_and_a_stop_right_after_loses_none(
    start_server: StartServer,
) -> None:
    server = start_server()
    answers = asyncio.run(burst(server.base_url, 2000, concurrency=50))
    stop(server)  # at once: records still queued must be written on the way out

    assert Counter(status for status, _ in answers) == {200: 2000}
    ids = {request_id for _, request_id in answers}
    assert len(ids) == 2000
    rows = sql_file(
        telemetry_file(server),
        "SELECT count(*) AS n, count(DISTINCT id) AS ids, "
        "count(*) FILTER (status = 'ok' AND total_tokens = 18) AS ok FROM requests",
    )
    assert rows == [{"n": 2000, "ids": 2000, "ok": 2000}]
    stored = sql_file(telemetry_file(server), "SELECT id FROM requests")
    assert {r["id"] for r in stored} == ids


def send_marked(server: WlmServer, marker: str) -> None:
    """A non-stream, a stream and a failing request, each with ``marker`` in its prompt."""
    sdk = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0, timeout=30)
    messages = [{"role": "user", "content": f"The secret word is {marker}."}]
    with sdk:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=messages)
        list(sdk.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True))
        with pytest.raises(openai.RateLimitError):
            sdk.chat.completions.create(model="openai/error:429", messages=messages)


@pytest.mark.parametrize("log_content", ["false", "true"])
def test_prompts_reach_the_files_only_when_content_logging_is_on(
    start_server: StartServer, log_content: str
) -> None:
    marker = f"wlm-marker-{uuid.uuid4().hex}"
    server = start_server(WLM_LOG_CONTENT=log_content)
    send_marked(server, marker)
    stop(server)

    data_dir = Path(server.env["WLM_DATA_DIR"])
    db = telemetry_file(server)
    statuses = sql_file(db, "SELECT status FROM requests ORDER BY started_at")
    assert [r["status"] for r in statuses] == ["ok", "ok", "error"]  # the rows are there
    conversations = sql_file(db, "SELECT count(*) AS n FROM conversations")[0]["n"]
    found = marked_files(data_dir, marker.encode())
    if log_content == "false":
        assert conversations == 0
        assert found == []
    else:  # the positive control: the same scan does find a logged prompt
        assert conversations == 3
        assert [p.name for p in found] == [db.name]


@pytest.fixture
def blocked(start_server: StartServer, tmp_path: Path) -> tuple[WlmServer, Path]:
    """A server whose WLM_TELEMETRY_PATH lies under a regular file (works as root too)."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a regular file where the telemetry directory should be\n")
    return start_server(WLM_TELEMETRY_PATH=str(blocker / "telemetry.duckdb")), blocker


def test_a_telemetry_file_that_cannot_be_created_degrades_health_not_serving(
    blocked: tuple[WlmServer, Path],
) -> None:
    server, blocker = blocked
    sdk = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0, timeout=30)
    with sdk, httpx.Client(base_url=server.base_url, timeout=30) as http:
        for _ in range(3):
            reply = sdk.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
            assert reply.status_code == 200
            assert reply.parse().choices[0].message.content == "Hello from fake-openai"
        health = http.get("/health")

    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "degraded"
    assert body["telemetry"]["healthy"] is False
    reason = body["telemetry"]["last_error"]
    assert str(blocker) in reason and "cannot open" in reason
    assert blocker.read_text().startswith("a regular file")  # untouched
    # Three records wait for a file that will never open; a graceful stop would retry
    # them for its whole 10 s close timeout (by design), which this test does not need.
    server.stop(signal.SIGKILL)


def test_wlm_sql_while_the_telemetry_file_is_down_says_why(
    blocked: tuple[WlmServer, Path],
) -> None:
    server, blocker = blocked
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        answer = http.post("/api/sql", json={"sql": "SELECT count(*) FROM requests"})
    run = wlm_cli(server, "sql", "SELECT count(*) FROM requests")

    assert answer.status_code == 503, answer.text
    assert str(blocker) in answer.json()["error"]["message"]
    assert run.returncode != 0
    assert str(blocker) in run.stderr, run.stderr


def test_a_stop_with_the_telemetry_file_down_and_nothing_queued_is_prompt(
    blocked: tuple[WlmServer, Path],
) -> None:
    server, _ = blocked
    started = time.monotonic()
    stop(server)
    # Nothing was accepted, so there is nothing to retry for the 10 s close timeout.
    assert time.monotonic() - started < 5
