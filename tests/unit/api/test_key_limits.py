"""WLM_KEY_LIMITS on the request path: rates and budgets per client key, refusals in the
client's dialect with the headers that say when to come back, spend priced from usage
and read back after a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wlm.api.observability import metrics_text
from wlm.config import load_settings
from wlm.gateway import Gateway
from wlm.telemetry.writer import TelemetryWriter
from wlm.transport import MockResponse, MockTransport, UpstreamRequest

from .pipeline import ENV, body, completion, drive, make_gateway

ALICE = [(b"authorization", b"Bearer sk-alice-0123456789")]
BOB = [(b"authorization", b"Bearer sk-bob-0123456789")]
KEYS = {"WLM_API_KEYS": "alice:sk-alice-0123456789,bob:sk-bob-0123456789"}
CHAT = body(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])


def answered(request: UpstreamRequest) -> MockResponse:
    return completion("hello")


async def test_a_key_over_its_requests_per_minute_gets_429_with_when_to_retry() -> None:
    gateway, transport, sink = make_gateway(answered, {**KEYS, "WLM_KEY_LIMITS": "alice:rpm=2"})
    first = await drive(gateway, CHAT, headers=ALICE)
    second = await drive(gateway, CHAT, headers=ALICE)
    third = await drive(gateway, CHAT, headers=ALICE)
    other = await drive(gateway, CHAT, headers=BOB)

    assert (first.status, second.status, third.status, other.status) == (200, 200, 429, 200)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    assert third.error["code"] == "rate_limit_exceeded"
    assert "alice" in third.error["message"] and "rpm" in third.error["message"]
    assert 55 <= int(third.headers["retry-after"]) <= 60
    assert "x-ratelimit-limit-requests" not in other.headers  # bob has no limits
    assert len(transport.requests) == 3  # the refused one never left
    refused = sink.rows[2][0]
    assert (refused.status, refused.http_status, refused.client) == ("error", 429, "alice")
    assert refused.error_code == "rate_limit_exceeded"
    assert gateway.key_limits.refusals[("alice", "rpm")] == 1


async def test_refusals_speak_the_anthropic_dialect_on_messages() -> None:
    gateway, _, _ = make_gateway(answered, {**KEYS, "WLM_KEY_LIMITS": "*:rpm=1"})
    payload = body(model="gpt-4o", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    await drive(gateway, payload, endpoint="messages", headers=ALICE)
    refused = await drive(gateway, payload, endpoint="messages", headers=ALICE)
    assert refused.status == 429
    assert refused.json()["type"] == "error"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert "retry-after" in refused.headers


def _priced(tmp_path: Path) -> dict[str, str]:
    prices = tmp_path / "prices.toml"
    # 100 prompt + 50 completion tokens at $10/$20 per MTok = $0.002 a request
    prices.write_text('["openai/gpt-4o"]\ninput_mtok = 10.0\noutput_mtok = 20.0\n')
    return {**KEYS, "WLM_PRICES": str(prices), "WLM_KEY_LIMITS": "alice:usd_per_day=0.003"}


def with_usage(request: UpstreamRequest) -> MockResponse:
    answer: dict[str, Any] = {
        "id": "x",
        "object": "chat.completion",
        "model": "gpt-4o",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
    }
    return MockResponse.json(answer)


async def test_a_spent_budget_refuses_the_next_request_until_it_resets(tmp_path: Path) -> None:
    gateway, _, sink = make_gateway(with_usage, _priced(tmp_path))
    statuses = [(await drive(gateway, CHAT, headers=ALICE)).status for _ in range(2)]
    assert statuses == [200, 200]  # $0.002 spent after the first: still under $0.003
    assert sink.rows[0][0].cost_usd is not None
    assert abs(sink.rows[0][0].cost_usd - 0.002) < 1e-9  # priced from usage
    refused = await drive(gateway, CHAT, headers=ALICE)
    assert refused.status == 429
    assert refused.error["code"] == "insufficient_quota"
    assert "usd_per_day" in refused.error["message"] and "resets at" in refused.error["message"]
    assert int(refused.headers["retry-after"]) <= 86400
    assert (await drive(gateway, CHAT, headers=BOB)).status == 200


async def test_spend_survives_a_restart(tmp_path: Path) -> None:
    env = {**ENV, **_priced(tmp_path)}
    path = tmp_path / "telemetry.duckdb"

    async def serve_once() -> tuple[int, int]:
        telemetry = TelemetryWriter(path)
        transport = MockTransport(with_usage)
        gateway = Gateway(load_settings(env), telemetry=telemetry, transports=transport.factory)
        await gateway.start()
        try:
            first = await drive(gateway, CHAT, headers=ALICE)
            second = await drive(gateway, CHAT, headers=ALICE)
            assert telemetry.flush(timeout_s=10)
            return first.status, second.status
        finally:
            await gateway.close()

    assert await serve_once() == (200, 200)  # $0.004 spent: over the $0.003 budget now
    assert await serve_once() == (429, 429)  # read back at start: still spent


async def test_metrics_count_refusals_by_key_and_limit() -> None:
    gateway, _, _ = make_gateway(answered, {**KEYS, "WLM_KEY_LIMITS": "alice:rpm=1"})
    for _ in range(3):
        await drive(gateway, CHAT, headers=ALICE)
    gateway.telemetry = None  # the list sink keeps no writer stats
    text = metrics_text(gateway)
    assert "# TYPE wlm_key_limit_refusals_total counter" in text
    assert 'wlm_key_limit_refusals_total{key="alice",reason="rpm"} 2' in text.split("\n")
