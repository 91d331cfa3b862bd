"""What a request that took several tries leaves in telemetry: one requests row with
its attempts and fallback_from, and one attempt row per try (none for a plain answer)."""

from __future__ import annotations

from .pipeline import body, completion, drive, make_gateway
from .test_resilience import ANTHROPIC, HELLO, OPENAI, anthropic_message, error, scripted


async def test_a_fallback_leaves_each_try_and_names_the_first_target() -> None:
    gateway, _, sink = make_gateway(
        scripted({OPENAI: [error(503), error(503)], ANTHROPIC: [anthropic_message("hi")]}),
        {
            "WLM_FALLBACKS": "gpt-4o=claude-sonnet-4-5",
            "WLM_RETRIES": "1",
            "WLM_RETRY_MAX_WAIT_S": "0",
        },
    )
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO))
    assert reply.status == 200
    record = sink.only
    assert (record.provider, record.attempts, record.fallback_from) == ("anthropic", 3, "gpt-4o")
    rows = [(a.number, a.provider, a.http_status, a.moved_on) for a in sink.attempts]
    assert rows == [
        (1, "openai", 503, "retry"),
        (2, "openai", 503, "fallback"),
        (3, "anthropic", 200, None),
    ]
    assert all(a.request_id == record.id for a in sink.attempts)
    assert all(a.latency_ms is not None and a.latency_ms >= 0 for a in sink.attempts)


async def test_a_plain_answer_stores_no_attempt_rows() -> None:
    gateway, _, sink = make_gateway(scripted({OPENAI: [completion("hi")]}))
    assert (await drive(gateway, body(model="gpt-4o", messages=HELLO))).status == 200
    assert sink.only.attempts == 1 and sink.only.fallback_from is None
    assert sink.attempts == []  # the attempts view derives the one try from the row
