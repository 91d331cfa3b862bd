"""Retries and fallbacks in telemetry: one ``requests`` row per request, and the
``attempts`` view with one row per upstream try (stored only when there were several)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.telemetry.factory import make_record
from wlm.telemetry.records import AttemptRecord
from wlm.telemetry.writer import TelemetryWriter


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[TelemetryWriter]:
    w = TelemetryWriter(tmp_path / "telemetry.duckdb")
    w.start()
    yield w
    w.close()


def _try(request_id: str, number: int, provider: str, **fields: object) -> AttemptRecord:
    values: dict[str, object] = {
        "request_id": request_id,
        "number": number,
        "provider": provider,
        "upstream_model": "gpt-4o",
        "started_at": dt.datetime.now(dt.UTC),
        "latency_ms": 12.5,
        "http_status": 200,
        "error_type": None,
        "moved_on": None,
    }
    values.update(fields)
    return AttemptRecord(**values)  # type: ignore[arg-type]


async def test_every_try_of_a_fallen_back_request_and_one_of_each_other(
    writer: TelemetryWriter,
) -> None:
    plain = make_record(1, upstream_endpoint="chat/completions")
    chained = make_record(
        2,
        provider="openrouter",
        attempts=3,
        fallback_from="gpt-4o",
        upstream_endpoint="chat/completions",
    )
    refused = make_record(3, provider=None, status="error", http_status=429)
    writer.submit(plain)
    writer.submit(
        chained,
        None,
        (
            _try(
                chained.id,
                1,
                "openai",
                http_status=429,
                error_type="rate_limit_error",
                moved_on="retry",
            ),
            _try(
                chained.id,
                2,
                "openai",
                http_status=429,
                error_type="rate_limit_error",
                moved_on="fallback",
            ),
            _try(chained.id, 3, "openrouter", upstream_model="openai/gpt-4o"),
        ),
    )
    writer.submit(refused)
    assert writer.flush(timeout_s=10)

    result = await writer.query(
        "SELECT request_id, number, provider, http_status, moved_on FROM attempts "
        "ORDER BY request_id, number"
    )
    assert result.rows == (
        (plain.id, 1, "openai", 200, None),
        (chained.id, 1, "openai", 429, "retry"),
        (chained.id, 2, "openai", 429, "fallback"),
        (chained.id, 3, "openrouter", 200, None),
    )  # the refused request never reached an upstream: no try
    rows = await writer.query("SELECT id, attempts, fallback_from FROM requests ORDER BY id")
    assert rows.rows == ((plain.id, 1, None), (chained.id, 3, "gpt-4o"), (refused.id, 1, None))


def test_retention_drops_old_tries_too(tmp_path: Path) -> None:
    path = tmp_path / "t.duckdb"
    writer = TelemetryWriter(path)
    writer.start()
    old = make_record(1, ago_s=10 * 86400, attempts=2, upstream_endpoint="chat/completions")
    started = old.started_at
    writer.submit(
        old,
        None,
        (
            _try(old.id, 1, "openai", started_at=started, http_status=503, moved_on="fallback"),
            _try(old.id, 2, "anthropic", started_at=started),
        ),
    )
    writer.close()

    writer = TelemetryWriter(path, retention_days=7)
    writer.start()
    cur = writer.cursor()
    try:
        assert cur.execute("SELECT count(*) FROM attempt_rows").fetchone() == (0,)
        assert cur.execute("SELECT count(*) FROM attempts").fetchone() == (0,)
    finally:
        cur.close()
        writer.close()
