"""Records for telemetry tests: realistic defaults, any field overridable."""

from __future__ import annotations

import datetime as dt
from typing import Any

from wlm.telemetry.records import BoxSampleRecord, ConversationRecord, RequestRecord


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_record(i: int, *, ago_s: float = 1.0, **overrides: Any) -> RequestRecord:
    """Request number ``i``, started ``ago_s`` seconds ago, ok, 200, with usage."""
    started = utc_now() - dt.timedelta(seconds=ago_s)
    fields: dict[str, Any] = {
        "id": f"req-{i:06d}",
        "started_at": started,
        "ended_at": started + dt.timedelta(milliseconds=500),
        "endpoint": "chat/completions",
        "model": "gpt-4o-mini",
        "provider": "openai",
        "upstream_model": "gpt-4o-mini-2024-07-18",
        "stream": True,
        "status": "ok",
        "http_status": 200,
        "ttft_ms": 100.0,
        "latency_ms": 500.0,
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "total_tokens": 30,
    }
    fields.update(overrides)
    return RequestRecord(**fields)


def make_conversation(record: RequestRecord, text: str = "hello") -> ConversationRecord:
    return ConversationRecord(
        request_id=record.id,
        request_json=f'{{"messages": [{{"role": "user", "content": "{text}"}}]}}',
        response_text=f"reply to {text}",
    )


def make_box_rows(*, ago_s: float = 1.0, host: str = "box1") -> list[BoxSampleRecord]:
    """One sample of a box with a GPU and a local engine: ``box_samples`` rows."""
    at = (utc_now() - dt.timedelta(seconds=ago_s)).replace(tzinfo=None)
    gib = 1024**3
    return [
        BoxSampleRecord(at, host, "cpu", None, None, 42.5, 6 * gib, 16 * gib, None),
        BoxSampleRecord(at, host, "gpu", "NVIDIA RTX 4090", 0, 97.0, 20 * gib, 24 * gib, None),
        BoxSampleRecord(at, host, "engine", "qwen3-0.6b", None, None, 700 * 1024**2, None, 2),
    ]
