"""Named queries give the right numbers on a known set of records, in wlm and as plain SQL."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import duckdb
import pytest

from tests.unit.telemetry.factory import make_conversation, make_record
from wlm.telemetry.analytics import default_dir, load_named_queries, run_named
from wlm.telemetry.records import RequestRecord
from wlm.telemetry.writer import TelemetryWriter

HOUR = 3600.0


def known_records() -> list[RequestRecord]:
    """openai: 10 ok (latency 100..1000 ms), 2 errors, 1 cancelled; local: 5 ok, 1 error;
    anthropic: 3 ok two hours ago; one openai request three days ago."""
    records = []
    for i in range(10):
        records.append(
            make_record(i, ago_s=60 + i, latency_ms=100.0 * (i + 1), ttft_ms=10.0 * (i + 1))
        )
    records += [
        make_record(
            20 + i,
            ago_s=30,
            status="error",
            http_status=502,
            error_type="upstream_error",
            latency_ms=50.0,
            ttft_ms=None,
            completion_tokens=None,
            total_tokens=10,
        )
        for i in range(2)
    ]
    records.append(make_record(30, ago_s=20, status="cancelled", http_status=499))
    records += [
        make_record(40 + i, ago_s=10, provider="local", model="llama-3.1-8b", prompt_tokens=100)
        for i in range(5)
    ]
    records.append(
        make_record(
            50,
            ago_s=5,
            provider="local",
            model="llama-3.1-8b",
            status="error",
            http_status=400,
            error_type="invalid_request_error",
        )
    )
    records += [
        make_record(60 + i, ago_s=2 * HOUR, provider="anthropic", model="claude-haiku-4")
        for i in range(3)
    ]
    records.append(make_record(70, ago_s=72 * HOUR))
    return records


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[TelemetryWriter]:
    w = TelemetryWriter(tmp_path / "t.duckdb", batch_size=7)  # several batches
    w.start()
    for record in known_records():
        w.submit(record, make_conversation(record, text=f"question {record.id}"))
    assert w.flush(timeout_s=10)
    yield w
    w.close()


def by(rows: list[dict], *keys: str) -> dict:
    return {tuple(r[k] for k in keys) if len(keys) > 1 else r[keys[0]]: r for r in rows}


async def named(writer: TelemetryWriter, name: str, **params: object) -> list[dict]:
    return (await run_named(writer, name, **params)).as_dicts()


async def test_summary_by_provider(writer: TelemetryWriter) -> None:
    rows = by(await named(writer, "summary_by_provider"), "provider")
    assert set(rows) == {"openai", "local", "anthropic"}  # the 3-day-old one is outside 24h
    openai = rows["openai"]
    assert (openai["requests"], openai["errors"], openai["cancelled"]) == (13, 2, 1)
    assert openai["error_rate"] == pytest.approx(2 / 13, abs=1e-4)
    assert openai["prompt_tokens"] == 130
    assert openai["completion_tokens"] == 11 * 20  # the errors reported none
    # Ok latencies are 100..1000 ms: the median request is the 5th (500 ms), p95 the 10th.
    assert openai["latency_p50_ms"] == pytest.approx(500, rel=0.025)
    assert openai["latency_p95_ms"] == pytest.approx(1000, rel=0.025)
    assert openai["ttft_p50_ms"] == pytest.approx(50, rel=0.025)
    local = rows["local"]
    assert (local["requests"], local["errors"], local["prompt_tokens"]) == (6, 1, 510)
    assert local["latency_p99_ms"] == pytest.approx(500, rel=0.025)
    assert rows["anthropic"]["requests"] == 3
    wide = by(await named(writer, "summary_by_provider", hours=96), "provider")
    assert wide["openai"]["requests"] == 14


async def test_summary_by_model(writer: TelemetryWriter) -> None:
    rows = by(await named(writer, "summary_by_model"), "provider", "model")
    assert rows["local", "llama-3.1-8b"]["requests"] == 6
    assert rows["anthropic", "claude-haiku-4"]["requests"] == 3
    assert rows["openai", "gpt-4o-mini"]["errors"] == 2
    # tokens/s: 20 completion tokens over 400 ms after the first token = 50/s.
    assert rows["local", "llama-3.1-8b"]["gen_tokens_per_s"] == pytest.approx(50)
    assert rows["local", "llama-3.1-8b"]["tokens_per_s_p50"] == pytest.approx(50, rel=0.025)


async def test_the_two_summaries_give_the_same_figures_for_a_one_model_provider(
    writer: TelemetryWriter,
) -> None:
    # Each provider in the last 24h serves one model, so its model row is its provider row.
    providers = await run_named(writer, "summary_by_provider")
    models = await run_named(writer, "summary_by_model")
    assert providers.columns == tuple(c for c in models.columns if c != "model")
    per_model = {
        r["provider"]: {k: v for k, v in r.items() if k != "model"} for r in models.as_dicts()
    }
    assert per_model == by(providers.as_dicts(), "provider")
    assert [r["provider"] for r in providers.as_dicts()] == ["openai", "local", "anthropic"]


async def test_errors_by_status(writer: TelemetryWriter) -> None:
    rows = [
        (r["provider"], r["status"], r["http_status"], r["error_type"], r["requests"])
        for r in await named(writer, "errors_by_status")
    ]
    assert rows == [
        ("openai", "error", 502, "upstream_error", 2),
        ("local", "error", 400, "invalid_request_error", 1),
        ("openai", "cancelled", 499, None, 1),
    ]


async def test_a_client_that_left_is_499_and_a_broken_stream_a_failure(tmp_path: Path) -> None:
    writer = TelemetryWriter(tmp_path / "t.duckdb")
    writer.start()
    try:
        writer.submit(make_record(1))
        # Rows stored before cancellations were recorded as 499 kept the stream's 200.
        writer.submit(make_record(2, status="cancelled", http_status=200))
        writer.submit(make_record(3, status="cancelled", http_status=499))
        writer.submit(make_record(4, status="error", http_status=200, error_type="upstream_error"))
        assert writer.flush(timeout_s=10)
        errors = [
            (r["status"], r["http_status"], r["requests"])
            for r in await named(writer, "errors_by_status")
        ]
        outcomes = {r["outcome"]: r["requests"] for r in await named(writer, "outcomes_by_status")}
    finally:
        writer.close()
    assert errors == [("cancelled", 499, 2), ("error", 200, 1)]
    assert outcomes == {"ok": 1, "499": 2, "error after 200": 1}


async def test_timeseries_buckets_add_up(writer: TelemetryWriter) -> None:
    rows = await named(writer, "timeseries", hours=24)
    assert sum(r["requests"] for r in rows) == 22
    assert {r["series"] for r in rows} == {"openai", "local", "anthropic"}
    for row in rows:
        assert row["error_rate"] == round(row["errors"] / row["requests"], 4)
        if row["latency_p99_ms"] is not None:
            assert row["latency_p50_ms"] <= row["latency_p95_ms"] <= row["latency_p99_ms"]
    assert any(r["errors"] for r in rows) and any(r["latency_p99_ms"] for r in rows)
    models = await named(writer, "timeseries", hours=96, bucket_hours=24, group_by="model")
    assert sum(r["requests"] for r in models) == 23
    assert "claude-haiku-4" in {r["series"] for r in models}
    minutely = await named(writer, "timeseries_minutely", hours=1, bucket_minutes=5)
    assert sum(r["requests"] for r in minutely) == 19


async def test_recent_requests_filters(writer: TelemetryWriter) -> None:
    rows = await named(writer, "recent_requests")
    assert len(rows) == 22
    assert [r["started_at"] for r in rows] == sorted((r["started_at"] for r in rows), reverse=True)
    assert {r["id"] for r in await named(writer, "recent_requests", provider="local")} == {
        f"req-{i:06d}" for i in (40, 41, 42, 43, 44, 50)
    }
    errors = await named(writer, "recent_requests", status="error")
    assert sorted(r["id"] for r in errors) == ["req-000020", "req-000021", "req-000050"]
    assert len(await named(writer, "recent_requests", model="claude-haiku-4")) == 3
    page = await named(writer, "recent_requests", row_limit=5)
    assert [r["id"] for r in page] == [r["id"] for r in rows[:5]]
    cut = page[-1]["started_at"]
    older = await named(writer, "recent_requests", before=cut)
    assert [r["id"] for r in older] == [r["id"] for r in rows if r["started_at"] < cut]


async def test_request_detail_has_the_conversation(writer: TelemetryWriter) -> None:
    rows = await named(writer, "request_detail", request_id="req-000042")
    assert len(rows) == 1
    row = rows[0]
    assert (row["id"], row["provider"], row["prompt_tokens"]) == ("req-000042", "local", 100)
    assert "question req-000042" in row["request_json"]
    assert row["response_text"] == "reply to question req-000042"
    assert await named(writer, "request_detail", request_id="nope") == []


async def test_last_hour(writer: TelemetryWriter) -> None:
    rows = await named(writer, "last_hour")
    total = by(rows, "scope")["total"]
    assert (total["requests"], total["errors"], total["cancelled"]) == (19, 3, 1)
    openai = next(r for r in rows if r["provider"] == "openai")
    assert openai["requests"] == 13


async def test_every_named_query_runs_on_an_empty_file(tmp_path: Path) -> None:
    w = TelemetryWriter(tmp_path / "empty.duckdb")
    w.start()
    try:
        for name in load_named_queries():
            result = await run_named(w, name, request_id="x")
            assert result.columns, name
        total = (await run_named(w, "last_hour")).as_dicts()
        assert total == [
            {
                "scope": "total",
                "provider": None,
                "requests": 0,
                "errors": 0,
                "cancelled": 0,
                "error_rate": None,
                "latency_p95_ms": None,
                "prompt_tokens": None,
                "completion_tokens": None,
            }
        ]
    finally:
        w.close()


def test_the_sql_files_run_as_they_are_on_a_copy_of_the_file(tmp_path: Path) -> None:
    # What a person does with the duckdb CLI: copy the file, set variables, run the file.
    path = tmp_path / "t.duckdb"
    writer = TelemetryWriter(path)
    writer.start()
    for record in known_records():
        writer.submit(record)
    writer.close()
    copy = tmp_path / "copy.duckdb"
    shutil.copy(path, copy)
    con = duckdb.connect(str(copy))
    con.execute("SET VARIABLE hours = 96")
    text = (default_dir() / "summary_by_provider.sql").read_text()
    rows = {r[0]: r[1] for r in con.execute(text).fetchall()}
    assert rows == {"openai": 14, "local": 6, "anthropic": 3}
    con.execute("RESET VARIABLE hours")
    for path in sorted(default_dir().glob("*.sql")):
        con.execute("SET VARIABLE request_id = 'req-000001'")
        con.execute(path.read_text()).fetchall()


def test_load_named_queries_skips_setup_files() -> None:
    queries = load_named_queries()
    assert "_views" not in queries
    assert {
        "summary_by_provider",
        "summary_by_model",
        "timeseries",
        "timeseries_minutely",
        "errors_by_status",
        "outcomes_by_status",
        "recent_requests",
        "request_detail",
        "last_hour",
    } <= set(queries)


async def test_run_named_rejects_bad_variable_names(writer: TelemetryWriter) -> None:
    with pytest.raises(ValueError, match="bad variable name"):
        await run_named(writer, "last_hour", **{"x; DROP TABLE requests": 1})
    with pytest.raises(KeyError):
        await run_named(writer, "no_such_query")
