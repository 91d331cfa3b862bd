"""A request's records as one OpenTelemetry span: its name, attributes, events, status.

Pure functions of the records the proxy already hands to telemetry (no SDK import, no
I/O), so the mapping is tested on its own; :mod:`wlm.telemetry.otlp` turns them into
SDK spans off the request path. Attributes follow the OpenTelemetry GenAI semantic
conventions (``gen_ai.*``: https://opentelemetry.io/docs/specs/semconv/gen-ai/), and
wlm's own go under ``wlm.*``. Every text in a record was redacted when it was built;
a value that is None (unknown) is left out, never sent as 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from attrs import frozen

from wlm.telemetry.records import AttemptRecord, RequestRecord
from wlm.tracecontext import TraceContext

__all__ = [
    "AttributeValue",
    "SpanEvent",
    "TracedRecord",
    "attempt_events",
    "operation_name",
    "provider_name",
    "span_attributes",
    "span_name",
    "span_status",
    "to_nanos",
]

AttributeValue = str | bool | int | float | tuple[str, ...]

# wlm's endpoints as GenAI operations (gen_ai.operation.name); the ones the conventions
# do not name keep wlm's own word.
_OPERATIONS = {
    "chat/completions": "chat",
    "messages": "chat",
    "responses": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
    "messages/count_tokens": "count_tokens",
    "rerank": "rerank",
}
# wlm's provider names that differ from the conventions' (gen_ai.provider.name); any
# other name (openai, anthropic, openrouter, groq, ...) is used as configured.
_PROVIDERS = {"local": "llama.cpp"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@frozen
class TracedRecord(RequestRecord):
    """A ``requests`` row plus the span the request had on the wire (its trace, its own
    id, the client's span as parent): set when OTLP is on, so the exported span is the
    one whose id went upstream in ``traceparent``. Only the span uses ``trace``; the
    stores write the row's columns."""

    trace: TraceContext | None = None


@frozen
class SpanEvent:
    """One event on the span: a time (ns since the epoch), a name, attributes."""

    name: str
    timestamp_ns: int
    attributes: dict[str, AttributeValue]


def to_nanos(moment: datetime) -> int:
    """A UTC datetime as OpenTelemetry's nanoseconds since the epoch (exact to the us)."""
    return ((moment - _EPOCH) // timedelta(microseconds=1)) * 1000


def operation_name(endpoint: str) -> str:
    return _OPERATIONS.get(endpoint, endpoint)


def provider_name(provider: str) -> str:
    return _PROVIDERS.get(provider, provider)


def span_name(record: RequestRecord) -> str:
    """``{operation} {model}``, as the GenAI conventions name an inference span."""
    operation = operation_name(record.endpoint)
    return f"{operation} {record.model}" if record.model else operation


def span_attributes(record: RequestRecord) -> dict[str, AttributeValue]:
    """The span's attributes: the GenAI conventions' first, then wlm's own.

    >>> from datetime import datetime, UTC
    >>> now = datetime.now(UTC)
    >>> r = RequestRecord("req_1", now, now, "chat/completions", "gpt-4o-mini", "openai",
    ...                   "gpt-4o-mini-2024-07-18", False, "ok", 200, prompt_tokens=3)
    >>> span_attributes(r)["gen_ai.usage.input_tokens"]
    3
    """
    provider = record.provider
    candidates: list[tuple[str, AttributeValue | None]] = [
        ("gen_ai.operation.name", operation_name(record.endpoint)),
        ("gen_ai.provider.name", provider_name(provider) if provider else None),
        # The name before gen_ai.provider.name replaced it, which many backends still read.
        ("gen_ai.system", provider_name(provider) if provider else None),
        ("gen_ai.request.model", record.model or None),
        ("gen_ai.request.stream", record.stream),
        ("gen_ai.response.model", record.upstream_model),
        (
            "gen_ai.response.finish_reasons",
            (record.finish_reason,) if record.finish_reason else None,
        ),
        ("gen_ai.usage.input_tokens", record.prompt_tokens),
        ("gen_ai.usage.output_tokens", record.completion_tokens),
        ("gen_ai.usage.cache_read.input_tokens", record.cached_tokens),
        ("gen_ai.usage.cache_creation.input_tokens", record.cache_write_tokens),
        ("gen_ai.usage.reasoning.output_tokens", record.reasoning_tokens),
        (
            "gen_ai.response.time_to_first_chunk",
            record.ttft_ms / 1000 if record.ttft_ms is not None else None,
        ),
        ("http.response.status_code", record.http_status),
        ("error.type", _error_type(record)),
        ("wlm.record_id", record.id),
        ("wlm.request_id", record.request_id),
        ("wlm.endpoint", record.endpoint),
        ("wlm.upstream_endpoint", record.upstream_endpoint),
        ("wlm.provider", provider),
        ("wlm.model", record.model or None),
        ("wlm.upstream_model", record.upstream_model),
        ("wlm.stream", record.stream),
        ("wlm.status", record.status),
        ("wlm.http_status", record.http_status),
        ("wlm.client", record.client),
        ("wlm.attempts", record.attempts),
        ("wlm.fallback_from", record.fallback_from),
        ("wlm.ttft_ms", record.ttft_ms),
        ("wlm.latency_ms", record.latency_ms),
        ("wlm.total_tokens", record.total_tokens),
        ("wlm.tokens_per_s", record.tokens_per_s),
        ("wlm.cost_usd", record.cost_usd),
        ("wlm.finish_reason", record.finish_reason),
        ("wlm.error_type", record.error_type),
        ("wlm.error_code", record.error_code),
        ("wlm.error_message", record.error_message),
        ("wlm.bytes_in", record.bytes_in),
        ("wlm.bytes_out", record.bytes_out),
        ("wlm.local.prompt_n", record.local_prompt_n),
        ("wlm.local.prompt_ms", record.local_prompt_ms),
        ("wlm.local.predicted_n", record.local_predicted_n),
        ("wlm.local.predicted_ms", record.local_predicted_ms),
        ("wlm.local.cache_n", record.local_cache_n),
    ]
    return {name: value for name, value in candidates if value is not None}


def _error_type(record: RequestRecord) -> str | None:
    """``error.type``: low cardinality, the error's code or type, else its status."""
    if record.status != "error":
        return None
    return record.error_code or record.error_type or str(record.http_status or "_OTHER")


def span_status(record: RequestRecord) -> tuple[bool, str | None]:
    """``(is_error, description)``: an error is the span's error; a client that left
    (``cancelled``) is not."""
    if record.status != "error":
        return False, None
    return True, record.error_message or record.error_type


def attempt_events(attempts: Sequence[AttemptRecord]) -> list[SpanEvent]:
    """One ``wlm.attempt`` event per upstream try, at its start (there are attempt
    records only when a request took more than one plain successful try)."""
    events = []
    for attempt in attempts:
        candidates: list[tuple[str, AttributeValue | None]] = [
            ("wlm.attempt.number", attempt.number),
            ("wlm.provider", attempt.provider),
            ("gen_ai.provider.name", provider_name(attempt.provider) if attempt.provider else None),
            ("wlm.upstream_model", attempt.upstream_model),
            ("wlm.attempt.latency_ms", attempt.latency_ms),
            ("http.response.status_code", attempt.http_status),
            ("error.type", attempt.error_type),
            ("wlm.attempt.moved_on", attempt.moved_on),
        ]
        events.append(
            SpanEvent(
                "wlm.attempt",
                to_nanos(attempt.started_at),
                {name: value for name, value in candidates if value is not None},
            )
        )
    return events
