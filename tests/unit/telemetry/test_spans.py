"""The record -> span mapping (wlm/telemetry/spans.py): names, attributes, events, status."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.unit.telemetry.factory import make_record, utc_now
from wlm.telemetry.records import AttemptRecord
from wlm.telemetry.spans import (
    attempt_events,
    operation_name,
    span_attributes,
    span_name,
    span_status,
    to_nanos,
)


def test_an_ok_chat_record_maps_to_the_genai_conventions_and_wlm_attributes() -> None:
    record = make_record(
        1,
        request_id="client-rid",
        client="alice",
        cost_usd=0.0012,
        finish_reason="stop",
        cached_tokens=4,
        reasoning_tokens=2,
        cache_write_tokens=1,
        upstream_endpoint="chat/completions",
    )
    attributes = span_attributes(record)
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.stream": True,
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 20,
        "gen_ai.usage.cache_read.input_tokens": 4,
        "gen_ai.usage.cache_creation.input_tokens": 1,
        "gen_ai.usage.reasoning.output_tokens": 2,
        "gen_ai.response.time_to_first_chunk": 0.1,
        "http.response.status_code": 200,
        "wlm.record_id": "req-000001",
        "wlm.request_id": "client-rid",
        "wlm.endpoint": "chat/completions",
        "wlm.upstream_endpoint": "chat/completions",
        "wlm.provider": "openai",
        "wlm.model": "gpt-4o-mini",
        "wlm.upstream_model": "gpt-4o-mini-2024-07-18",
        "wlm.stream": True,
        "wlm.status": "ok",
        "wlm.http_status": 200,
        "wlm.client": "alice",
        "wlm.attempts": 1,
        "wlm.ttft_ms": 100.0,
        "wlm.latency_ms": 500.0,
        "wlm.total_tokens": 30,
        "wlm.cost_usd": 0.0012,
        "wlm.finish_reason": "stop",
    }
    assert span_name(record) == "chat gpt-4o-mini"
    assert span_status(record) == (False, None)


def test_unknown_values_are_left_out_never_zero() -> None:
    record = make_record(
        2,
        prompt_tokens=None,
        completion_tokens=None,
        total_tokens=None,
        ttft_ms=None,
        upstream_model=None,
    )
    attributes = span_attributes(record)
    for name in (
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.response.time_to_first_chunk",
        "gen_ai.response.model",
        "wlm.cost_usd",
        "error.type",
    ):
        assert name not in attributes
    assert None not in attributes.values()


def test_an_error_is_an_error_span_with_a_low_cardinality_error_type() -> None:
    record = make_record(
        3,
        status="error",
        http_status=429,
        error_type="rate_limit_error",
        error_code="rate_limited",
        error_message="Provider 'openai' answered 429: slow down",
    )
    attributes = span_attributes(record)
    assert attributes["error.type"] == "rate_limited"
    assert attributes["wlm.error_type"] == "rate_limit_error"
    assert attributes["wlm.error_message"] == "Provider 'openai' answered 429: slow down"
    assert span_status(record) == (True, "Provider 'openai' answered 429: slow down")
    unrouted = make_record(4, status="error", http_status=404, provider=None, error_type=None)
    assert span_attributes(unrouted)["error.type"] == "404"
    assert "gen_ai.provider.name" not in span_attributes(unrouted)


def test_a_client_that_left_is_not_an_error() -> None:
    record = make_record(5, status="cancelled", http_status=499)
    assert span_status(record) == (False, None)
    assert span_attributes(record)["wlm.status"] == "cancelled"
    assert "error.type" not in span_attributes(record)


@pytest.mark.parametrize(
    ("endpoint", "operation"),
    [
        ("chat/completions", "chat"),
        ("messages", "chat"),
        ("responses", "chat"),
        ("completions", "text_completion"),
        ("embeddings", "embeddings"),
        ("messages/count_tokens", "count_tokens"),
        ("something/new", "something/new"),
    ],
)
def test_endpoints_map_to_genai_operations(endpoint: str, operation: str) -> None:
    assert operation_name(endpoint) == operation
    assert span_attributes(make_record(6, endpoint=endpoint))["wlm.endpoint"] == endpoint


def test_local_models_name_llama_cpp_as_the_provider() -> None:
    attributes = span_attributes(make_record(7, provider="local", local_prompt_n=12))
    assert attributes["gen_ai.provider.name"] == "llama.cpp"
    assert attributes["wlm.provider"] == "local"
    assert attributes["wlm.local.prompt_n"] == 12


def test_a_request_refused_before_its_body_has_an_operation_for_a_name() -> None:
    assert span_name(make_record(8, model="")) == "chat"
    assert "gen_ai.request.model" not in span_attributes(make_record(8, model=""))


def test_each_attempt_is_an_event_at_its_start() -> None:
    started = utc_now()
    attempts = [
        AttemptRecord("r", 1, "openai", "gpt-4o", started, 12.5, 503, "server_error", "retry"),
        AttemptRecord("r", 2, None, "nowhere", started, None, None, None, "fallback"),
        AttemptRecord("r", 3, "local", "qwen", started + dt.timedelta(seconds=1), 40.0, 200, None),
    ]
    events = attempt_events(attempts)
    assert [e.name for e in events] == ["wlm.attempt"] * 3
    assert events[0].attributes == {
        "wlm.attempt.number": 1,
        "wlm.provider": "openai",
        "gen_ai.provider.name": "openai",
        "wlm.upstream_model": "gpt-4o",
        "wlm.attempt.latency_ms": 12.5,
        "http.response.status_code": 503,
        "error.type": "server_error",
        "wlm.attempt.moved_on": "retry",
    }
    assert events[1].attributes == {
        "wlm.attempt.number": 2,
        "wlm.upstream_model": "nowhere",
        "wlm.attempt.moved_on": "fallback",
    }
    assert events[2].attributes["gen_ai.provider.name"] == "llama.cpp"
    assert events[2].timestamp_ns - events[0].timestamp_ns == 1_000_000_000


def test_nanoseconds_are_exact_to_the_microsecond() -> None:
    moment = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
    assert to_nanos(moment) == 1767323045_678901_000
    assert to_nanos(dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) == 0
