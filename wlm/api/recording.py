"""Turning a finished exchange into telemetry records (never awaited by the client)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from wlm.errors import GatewayError
from wlm.telemetry.records import ConversationRecord, RequestRecord

if TYPE_CHECKING:
    from wlm.api.proxy import _Exchange

__all__ = ["Outcome", "record_request"]

log = logging.getLogger("wlm.telemetry")

_CONTENT_KEYS = {"chat/completions": "messages", "completions": "prompt", "embeddings": "input"}


class Outcome:
    """How the request ended: ok, error or cancelled, with the error's type and message."""

    __slots__ = ("error_code", "error_message", "error_type", "http_status", "status")

    def __init__(self) -> None:
        self.status = "ok"
        self.http_status: int | None = None
        self.error_type: str | None = None
        self.error_code: str | None = None
        self.error_message: str | None = None

    def error(self, error: GatewayError, redacted_message: str) -> None:
        self.status = "error"
        if self.http_status is None:
            self.http_status = error.status
        self.error_type = error.type
        self.error_code = error.code
        self.error_message = redacted_message[:1000]

    def stream_error(self, error_type: str, error_code: str | None, redacted_message: str) -> None:
        if self.status == "ok":
            self.status = "error"
            self.error_type = error_type
            self.error_code = error_code
            self.error_message = redacted_message[:1000]

    def cancelled(self) -> None:
        self.status = "cancelled"
        if self.http_status is None:
            self.http_status = 499  # nginx's "client closed request"


def _redact(exchange: _Exchange, text: str) -> str:
    """Configured secrets out, and the key this client presented (it may be stored only
    as a hash, which the redactor cannot know)."""
    text = exchange.gateway.redactor.text(text)
    key = exchange.client_key
    if key and len(key) >= 4 and key in text:
        text = text.replace(key, "[redacted]")
    return text


def _stored_model(exchange: _Exchange) -> str:
    """The model as requested, redacted: a client may paste a key into the wrong field."""
    return _redact(exchange, exchange.model or "")


def _request_content(exchange: _Exchange) -> str | None:
    call = exchange.call
    if call is None:
        return None
    key = _CONTENT_KEYS.get(exchange.endpoint, "messages")
    if key not in call.body:
        return None
    text = msgspec.json.encode({key: call.body[key]}).decode()
    return _redact(exchange, text)


def record_request(exchange: _Exchange) -> None:
    """Count the request in the metrics and queue its records; cheap, and never raises."""
    try:
        # One reading of the clock, the usage and the model for both metrics and telemetry.
        elapsed = time.perf_counter() - exchange.started
        counts = exchange.account.token_counts()
        model = _stored_model(exchange)
        _observe(exchange, elapsed, counts, model)
        telemetry = exchange.gateway.telemetry
        if telemetry is not None:
            _submit(exchange, telemetry, elapsed, counts, model)
    except Exception:
        log.exception("could not record request %s", exchange.request_id)


def _observe(exchange: _Exchange, elapsed: float, counts: dict[str, Any], model: str) -> None:
    route = exchange.route
    exchange.gateway.metrics.observe(
        route.provider if route is not None else "none",
        model if route is not None else "(unrouted)",
        exchange.outcome.status,
        elapsed,
        exchange.ttft,
        counts["prompt_tokens"],
        counts["completion_tokens"],
    )


def _submit(
    exchange: _Exchange, telemetry: Any, elapsed: float, counts: dict[str, Any], model: str
) -> None:
    account = exchange.account
    route = exchange.route
    timings = account.timings or {}
    ttft_ms = exchange.ttft * 1000 if exchange.ttft is not None else None
    latency_ms = elapsed * 1000
    tokens_per_s = None
    completion = counts["completion_tokens"]
    if isinstance(timings.get("predicted_per_second"), int | float):
        tokens_per_s = float(timings["predicted_per_second"])
    elif completion and exchange.ttft is not None and elapsed > exchange.ttft:
        tokens_per_s = completion / (elapsed - exchange.ttft) if exchange.stream else None
    outcome = exchange.outcome
    record = RequestRecord(
        id=exchange.record_id,
        started_at=exchange.started_at,
        ended_at=datetime.now(UTC),
        endpoint=exchange.endpoint,
        model=model,
        provider=route.provider if route is not None else None,
        upstream_model=account.upstream_model or (route.upstream_model if route else None),
        stream=exchange.stream,
        status=outcome.status,
        http_status=outcome.http_status,
        client=exchange.client,
        request_id=exchange.request_id,
        error_type=outcome.error_type,
        error_code=outcome.error_code,
        error_message=outcome.error_message,
        ttft_ms=ttft_ms,
        latency_ms=latency_ms,
        tokens_per_s=tokens_per_s,
        finish_reason=account.finish_reason,
        attempts=exchange.attempts,
        bytes_in=exchange.bytes_in,
        bytes_out=exchange.bytes_out,
        local_prompt_n=timings.get("prompt_n"),
        local_prompt_ms=timings.get("prompt_ms"),
        local_predicted_n=timings.get("predicted_n"),
        local_predicted_ms=timings.get("predicted_ms"),
        local_cache_n=timings.get("cache_n"),
        **counts,
    )
    conversation = None
    if exchange.call is not None:
        keep = exchange.gateway.settings.log_content

        def stored(text: str | None) -> str | None:
            return _redact(exchange, text) if keep and text else None

        tool_calls = account.tool_calls
        conversation = ConversationRecord(
            request_id=exchange.record_id,
            request_json=_request_content(exchange) if keep else None,
            response_text=stored(account.text),
            reasoning_text=stored(account.reasoning),
            tool_calls_json=stored(
                msgspec.json.encode(tool_calls).decode() if keep and tool_calls else None
            ),
        )
    telemetry.submit(record, conversation)
