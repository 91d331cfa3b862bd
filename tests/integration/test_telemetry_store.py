"""The telemetry store as the server uses it: submits from the event loop while pages
read, user SQL and exports run, then a restart and the offline tools on the same file;
and a disk that fills up and frees again."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from wlm.telemetry import schema
from wlm.telemetry.analytics import load_named_queries, run_named
from wlm.telemetry.export import export_parquet
from wlm.telemetry.query import (
    ForbiddenQuery,
    TelemetryUnavailable,
    open_readonly,
    run_user_sql,
)
from wlm.telemetry.records import ConversationRecord, RequestRecord
from wlm.telemetry.writer import TelemetryWriter

PROVIDERS = ("openai", "anthropic", "local")


def record(i: int) -> tuple[RequestRecord, ConversationRecord]:
    started = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    req = RequestRecord(
        id=f"it-{i:05d}",
        started_at=started,
        ended_at=started + dt.timedelta(milliseconds=300),
        endpoint="chat/completions",
        model=f"model-{i % 3}",
        provider=PROVIDERS[i % 3],
        upstream_model=f"upstream-{i % 3}",
        stream=bool(i % 2),
        status="error" if i % 10 == 0 else "ok",
        http_status=502 if i % 10 == 0 else 200,
        error_type="upstream_error" if i % 10 == 0 else None,
        ttft_ms=20.0 + i % 50,
        latency_ms=300.0 + i % 700,
        prompt_tokens=50,
        completion_tokens=25,
        total_tokens=75,
    )
    return req, ConversationRecord(req.id, f'{{"messages": ["q{i}"]}}', f"a{i}")


def scalar(path_or_con: Path | duckdb.DuckDBPyConnection, sql: str) -> object:
    if isinstance(path_or_con, Path):
        con = duckdb.connect(str(path_or_con))
        try:
            return con.execute(sql).fetchone()[0]
        finally:
            con.close()
    return path_or_con.execute(sql).fetchone()[0]


async def test_serving_reading_exporting_and_restarting(tmp_path: Path) -> None:
    path = tmp_path / "data" / "telemetry.duckdb"
    writer = TelemetryWriter(path, batch_size=100)
    writer.start()
    queries = load_named_queries()
    stop_reading = asyncio.Event()
    reads = 0

    async def request_path(worker: int) -> None:
        # 10 "handlers" finishing requests: submit, then let others run.
        for n in range(300):
            assert writer.submit(*record(worker * 300 + n))
            await asyncio.sleep(0)

    async def pages() -> None:
        nonlocal reads
        while not stop_reading.is_set():
            await run_named(writer, "summary_by_provider", queries=queries)
            await run_named(writer, "recent_requests", queries=queries, status="error")
            reads += 1

    reader = asyncio.create_task(pages())
    await asyncio.gather(*(request_path(w) for w in range(10)))
    assert await asyncio.to_thread(writer.flush, 20)
    stop_reading.set()
    await reader
    assert reads > 0  # pages were read while requests were being recorded

    summary = {
        r["provider"]: r for r in (await run_named(writer, "summary_by_provider")).as_dicts()
    }
    assert sum(r["requests"] for r in summary.values()) == 3000
    assert sum(r["errors"] for r in summary.values()) == 300

    # User SQL through the server's cursors: allowed and refused.
    counted = await writer.read(lambda cur: run_user_sql(cur, "SELECT count(*) FROM requests"))
    assert counted.rows == ((3000,),)
    with pytest.raises(ForbiddenQuery):
        await writer.read(lambda cur: run_user_sql(cur, "SELECT * FROM read_text('/etc/passwd')"))

    # Export while serving: the locked database writes only to its exports directory.
    out = tmp_path / "exports" / "requests.parquet"
    assert await asyncio.to_thread(export_parquet, writer, out) == 3000
    assert scalar(duckdb.connect(), f"SELECT count(*) FROM '{out}'") == 3000
    conv_out = tmp_path / "conversations.parquet"
    assert await asyncio.to_thread(export_parquet, writer, conv_out, table="conversations") == 3000
    assert not list(path.parent.glob("*.exports/*"))  # nothing left behind

    # While the server holds the file, offline tools say so instead of failing obscurely.
    with pytest.raises(TelemetryUnavailable):
        open_readonly(path)
    with pytest.raises(TelemetryUnavailable):
        export_parquet(path, tmp_path / "offline.parquet")

    await writer.aclose()
    assert writer.stats().written == 3000

    # Offline: `wlm sql` and `wlm telemetry export` without a server.
    ro = open_readonly(path)
    try:
        result = run_user_sql(ro, "SELECT provider, count(*) FROM requests GROUP BY 1 ORDER BY 1")
        assert result.rows == (("anthropic", 1000), ("local", 1000), ("openai", 1000))
    finally:
        ro.close()
    assert export_parquet(path, tmp_path / "offline.parquet") == 3000

    # A restart opens the same file (no migration needed) and keeps appending.
    again = TelemetryWriter(path)
    again.start()
    again.submit(*record(99_999))
    await again.aclose()
    assert scalar(path, "SELECT count(*) FROM requests") == 3001
    assert scalar(path, "SELECT max(version) FROM schema_version") == schema.SCHEMA_VERSION


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (needs root and mount rights; skipped where there are none)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3M", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_keeps_serving_and_the_rows_land_when_space_returns(
    small_disk: Path,
) -> None:
    writer = TelemetryWriter(small_disk / "t.duckdb", retry_max_s=0.1)
    writer.start()
    submitted = 0
    try:
        while writer.stats().healthy and submitted < 20_000:
            for _ in range(200):
                req, _ = record(submitted)
                conversation = ConversationRecord(req.id, "x" * 2000, "y" * 2000)
                assert writer.submit(req, conversation)
                submitted += 1
            writer.flush(timeout_s=2)
        stats = writer.stats()
        assert not stats.healthy
        assert "No space left on device" in (stats.last_error or "")
        for _ in range(50):  # serving goes on: records are still accepted
            assert writer.submit(*record(submitted))
            submitted += 1
        subprocess.run(["mount", "-o", "remount,size=256M", str(small_disk)], check=True)
        assert writer.flush(timeout_s=20)
        assert writer.stats().healthy
    finally:
        writer.close()
    assert writer.stats().written == submitted
    assert scalar(small_disk / "t.duckdb", "SELECT count(*) FROM requests") == submitted
