"""Schema and migrations: a new wlm opens an old file and upgrades it, keeping its rows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import attrs
import duckdb
import pytest

from wlm.telemetry import schema
from wlm.telemetry.records import ConversationRecord, RequestRecord


def columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]


def test_fresh_file_gets_every_record_field_as_a_column(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    assert schema.migrate(con) == 0
    assert schema.current_version(con) == schema.SCHEMA_VERSION
    request_columns = columns(con, "requests")
    for field in attrs.fields(RequestRecord):
        assert field.name in request_columns
    conversation_columns = columns(con, "conversations")
    for field in attrs.fields(ConversationRecord):
        assert field.name in conversation_columns
    # The contract names (docs/telemetry.md) are all there.
    for name in [
        "id",
        "started_at",
        "provider",
        "model",
        "upstream_model",
        "stream",
        "status",
        "http_status",
        "error_type",
        "ttft_ms",
        "latency_ms",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
    ]:
        assert name in request_columns


def test_v1_file_made_by_hand_is_upgraded_and_its_row_survives(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    # Version 1 as an early wlm wrote it: fewer columns, no rollups.
    for statement in schema.MIGRATIONS[0].statements:
        con.execute(statement)
    con.execute(
        "CREATE TABLE schema_version (version INTEGER NOT NULL, "
        "applied_at TIMESTAMP NOT NULL, description VARCHAR)"
    )
    con.execute("INSERT INTO schema_version VALUES (1, now()::TIMESTAMP, 'v1')")
    started = dt.datetime(2026, 1, 2, 3, 4, 5)
    con.execute(
        "INSERT INTO requests (id, started_at, provider, model, status, http_status, "
        "latency_ms, ttft_ms, prompt_tokens, completion_tokens, total_tokens) "
        "VALUES ('old-1', ?, 'openai', 'gpt-4o', 'ok', 200, 900, 90, 5, 7, 12)",
        [started],
    )
    con.execute("INSERT INTO conversations VALUES ('old-1', '{\"messages\": []}', 'hi')")
    con.close()

    con = duckdb.connect(str(path))
    assert schema.migrate(con) == 1
    assert schema.current_version(con) == schema.SCHEMA_VERSION
    row = con.execute(
        "SELECT id, started_at, provider, latency_ms, total_tokens, attempts, client, "
        "id_key = md5_number_lower(id) FROM requests"
    ).fetchall()
    # attempts takes its default (1) on old rows; other new columns are NULL.
    assert row == [("old-1", started, "openai", 900.0, 12, 1, None, True)]
    conv = con.execute(
        "SELECT request_id, response_text, started_at, tool_calls_json FROM conversations"
    ).fetchall()
    assert conv == [("old-1", "hi", started, None)]
    # The old row is in the rollups too, so the pages count it.
    hourly = con.execute("SELECT hour, provider, requests FROM requests_hourly").fetchall()
    assert hourly == [(dt.datetime(2026, 1, 2, 3), "openai", 1)]
    versions = [
        r[0] for r in con.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()
    ]
    assert versions == [m.version for m in schema.MIGRATIONS]


def test_migrating_twice_changes_nothing(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    schema.migrate(con)
    assert schema.migrate(con) == schema.SCHEMA_VERSION
    assert con.execute("SELECT count(*) FROM schema_version").fetchone() == (
        len(schema.MIGRATIONS),
    )


def test_a_file_from_a_newer_wlm_is_refused(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    schema.migrate(con)
    con.execute("INSERT INTO schema_version VALUES (99, now()::TIMESTAMP, 'future')")
    with pytest.raises(RuntimeError, match="schema version 99"):
        schema.migrate(con)


def test_compaction_merges_partial_rollup_rows_and_keeps_the_sums(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    schema.migrate(con)
    hour = dt.datetime(2026, 5, 1, 10)
    # Three batches' worth of partial rows for one key, as the writer appends them.
    for n in (1, 2, 3):
        con.execute(
            "INSERT INTO requests_hourly (hour, provider, model, status, requests, "
            "prompt_tokens) VALUES (?, 'openai', 'm', 'ok', ?, ?)",
            [hour, n, 10 * n],
        )
        con.execute(
            "INSERT INTO latency_hourly VALUES (?, 'openai', 'm', 'latency_ms', 100, ?)",
            [hour, n],
        )
    for statement in schema.compact_statements():
        con.execute(statement, {"since": hour} if "$since" in statement else None)
    assert con.execute("SELECT requests, prompt_tokens FROM requests_hourly").fetchall() == [
        (6, 60)
    ]
    assert con.execute("SELECT n FROM latency_hourly").fetchall() == [(6,)]


def test_histogram_buckets_read_back_within_two_and_a_half_percent() -> None:
    con = duckdb.connect()
    schema.migrate(con)
    worst = con.execute(
        "SELECT max(abs(wlm_bucket_value(wlm_bucket(x)) - x) / x) "
        "FROM (SELECT 0.05 * pow(1.0007, i) AS x FROM range(30000) t(i))"
    ).fetchone()[0]
    assert worst <= 0.025


def test_old_histogram_hours_are_merged_into_days(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    schema.migrate(con)
    for hour in (1, 5, 23):
        con.execute(
            "INSERT INTO latency_hourly VALUES (?, 'openai', 'm', 'latency_ms', 100, 2)",
            [dt.datetime(2026, 5, 1, hour)],
        )
    recent = dt.datetime(2026, 5, 3, 7)
    con.execute(
        "INSERT INTO latency_hourly VALUES (?, 'openai', 'm', 'latency_ms', 100, 5)", [recent]
    )
    for _ in range(2):  # merging twice changes nothing more
        for statement in schema.coarsen_statements():
            params = {"before": dt.datetime(2026, 5, 3)} if "$before" in statement else None
            con.execute(statement, params)
    assert con.execute("SELECT hour, n FROM latency_hourly ORDER BY hour").fetchall() == [
        (dt.datetime(2026, 5, 1), 6),
        (recent, 5),
    ]
