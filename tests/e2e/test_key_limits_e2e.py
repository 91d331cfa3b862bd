"""WLM_KEY_LIMITS through a real `wlm serve`: a rate under concurrent load, and a
budget that stays spent across a restart (its spend read back from the DuckDB file)."""

from __future__ import annotations

import concurrent.futures
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import WlmServer
from tests.e2e.telemetry_helpers import sql_file, stop, telemetry_file
from tests.fakes import FakeUpstream

pytestmark = pytest.mark.e2e

StartServer = Callable[..., WlmServer]
ALICE = {"authorization": "Bearer sk-alice-0123456789"}


@pytest.fixture
def start_server(
    wlm_factory: StartServer, openai_fake: FakeUpstream, tmp_path: Path
) -> StartServer:
    workdir = tmp_path / "wlm"
    (workdir / "models").mkdir(parents=True)

    def start(**env: str) -> WlmServer:
        base = {
            "OPENAI_API_KEY": openai_fake.api_key,
            "OPENAI_BASE_URL": openai_fake.base_url,
            "WLM_ROUTES": "gpt-*=openai",
            "WLM_API_KEYS": "alice:sk-alice-0123456789",
        }
        return wlm_factory({**base, **env}, workdir)

    return start


def chat(marker: str) -> dict[str, object]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": marker}]}


def test_200_requests_from_20_threads_let_exactly_the_rate_through(
    start_server: StartServer, openai_fake: FakeUpstream
) -> None:
    server = start_server(WLM_KEY_LIMITS="alice:rpm=50")
    marker = f"rate-{uuid.uuid4().hex[:8]}"

    def one(client: httpx.Client) -> httpx.Response:
        return client.post("/v1/chat/completions", json=chat(marker), headers=ALICE)

    with (
        httpx.Client(base_url=server.base_url, timeout=30) as client,
        concurrent.futures.ThreadPoolExecutor(20) as pool,
    ):
        responses = list(pool.map(lambda _: one(client), range(200)))

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 50, 429: 150}
    for refused in (r for r in responses if r.status_code == 429):
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert refused.headers["x-ratelimit-limit-requests"] == "50"
    reached = [r for r in openai_fake.requests if marker in str(r.json)]
    assert len(reached) == 50  # the refused never left wlm
    stop(server)
    rows = sql_file(
        telemetry_file(server),
        "SELECT http_status, count(*) AS n FROM requests WHERE client = 'alice' GROUP BY ALL",
    )
    assert {r["http_status"]: r["n"] for r in rows} == {200: 50, 429: 150}


def test_a_spent_budget_stays_spent_after_a_restart(
    start_server: StartServer, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('["openai/*"]\ninput_mtok = 1000.0\noutput_mtok = 1000.0\n')
    env = {"WLM_PRICES": str(prices), "WLM_KEY_LIMITS": "alice:usd_per_day=0.01"}

    server = start_server(**env)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        first = client.post("/v1/chat/completions", json=chat("spend"), headers=ALICE)
        assert first.status_code == 200, first.text
        tokens = first.json()["usage"]["total_tokens"]
        assert tokens * 1000.0 / 1e6 >= 0.01  # one request spends the whole budget
        refused = client.post("/v1/chat/completions", json=chat("again"), headers=ALICE)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "insufficient_quota"
    stop(server)

    server = start_server(**env)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        after = client.post("/v1/chat/completions", json=chat("after restart"), headers=ALICE)
    assert after.status_code == 429, after.text
    assert "usd_per_day" in after.json()["error"]["message"]
    stop(server)
    spent = sql_file(
        telemetry_file(server),
        "SELECT sum(cost_usd) AS usd, count(*) FILTER (http_status = 429) AS refused "
        "FROM requests WHERE client = 'alice'",
    )
    assert spent[0]["usd"] >= 0.01 and spent[0]["refused"] == 2
