"""The writer: never blocks the caller, loses nothing on a graceful stop, survives a bad disk."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from tests.unit.telemetry.factory import make_conversation, make_record
from wlm.telemetry.query import QueryTimeout, TelemetryUnavailable
from wlm.telemetry.writer import TelemetryWriter


def count_rows(path: Path, table: str = "requests") -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


def wait_for(predicate, timeout_s: float = 10.0) -> bool:
    """Poll a condition of another thread's making (the writer exposes no event for it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        threading.Event().wait(0.02)
    return predicate()


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[TelemetryWriter]:
    w = TelemetryWriter(tmp_path / "data" / "telemetry.duckdb")
    w.start()
    yield w
    w.close()


def test_start_creates_the_directory_and_reports_healthy(writer: TelemetryWriter) -> None:
    assert writer.path.parent.is_dir()
    stats = writer.stats()
    assert stats.healthy
    assert stats.last_error is None
    assert (stats.queued, stats.written, stats.dropped) == (0, 0, 0)


def test_records_from_several_threads_all_land(tmp_path: Path) -> None:
    path = tmp_path / "t.duckdb"
    writer = TelemetryWriter(path, batch_size=128)
    writer.start()
    results: list[bool] = []
    lock = threading.Lock()

    def produce(thread: int) -> None:
        accepted = [writer.submit(make_record(thread * 1000 + i)) for i in range(250)]
        with lock:
            results.extend(accepted)

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    assert results.count(True) == 2000
    assert count_rows(path) == 2000
    assert writer.stats().written == 2000


def test_graceful_close_right_after_a_burst_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "t.duckdb"
    # A long flush interval: nothing is written before close() unless close() does it.
    writer = TelemetryWriter(path, batch_size=1000, flush_interval_s=30)
    writer.start()
    for i in range(5500):
        record = make_record(i)
        assert writer.submit(record, make_conversation(record))
    writer.close()
    assert count_rows(path) == 5500
    assert count_rows(path, "conversations") == 5500
    assert writer.stats().queued == 0


def test_submit_never_waits_for_the_database(tmp_path: Path) -> None:
    """With the writer stuck inside a DuckDB write, the request path keeps queueing."""
    path = tmp_path / "t.duckdb"
    writer = TelemetryWriter(path, queue_max=1_000_000)
    writer.start()
    entered, release = threading.Event(), threading.Event()
    write_batch = writer._write_batch

    def stuck_write(batch):  # type: ignore[no-untyped-def]
        entered.set()
        assert release.wait(30)
        write_batch(batch)

    writer._write_batch = stuck_write  # type: ignore[method-assign]
    assert writer.submit(make_record(0))
    writer._wake.set()
    assert entered.wait(10), "the writer never started writing"

    accepted = [writer.submit(make_record(i)) for i in range(1, 20_001)]

    assert all(accepted) and not release.is_set()
    assert writer.stats().queued == 20_001
    release.set()
    writer.close()
    assert count_rows(path) == 20_001


async def test_duckdb_memory_is_capped_as_configured(tmp_path: Path) -> None:
    """DuckDB would otherwise let its buffer pool grow to 80% of RAM beside llama.cpp."""
    writer = TelemetryWriter(tmp_path / "t.duckdb", memory_limit="64MB")
    writer.start()
    try:
        limit = await writer.read(
            lambda cur: cur.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        )
    finally:
        writer.close()
    assert limit in ("64.0 MiB", "61.0 MiB", "64.0 MB")


def test_flushes_within_the_interval_without_reaching_the_batch_size(
    writer: TelemetryWriter,
) -> None:
    for i in range(3):
        writer.submit(make_record(i))
    assert wait_for(lambda: writer.stats().written == 3, timeout_s=5)


def test_without_content_logging_no_text_reaches_the_file(tmp_path: Path) -> None:
    for log_content, expect in ((True, True), (False, False)):
        folder = tmp_path / str(log_content)
        writer = TelemetryWriter(folder / "t.duckdb", log_content=log_content)
        writer.start()
        for i in range(50):
            record = make_record(i)
            writer.submit(record, make_conversation(record, text=f"PROMPT-MARKER-{i}-ZQX"))
        writer.close()
        raw = b"".join(f.read_bytes() for f in folder.rglob("*") if f.is_file())
        # With content on, the marker is there: the scan can see text in the file.
        assert (b"PROMPT-MARKER" in raw) is expect
        assert (b"reply to PROMPT" in raw) is expect
        assert count_rows(folder / "t.duckdb") == 50
        assert count_rows(folder / "t.duckdb", "conversations") == (50 if log_content else 0)


def test_unwritable_path_is_reported_queued_and_recovered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A regular file where the data directory should be: unwritable even for root.
    blocker = tmp_path / "data"
    blocker.write_text("not a directory")
    writer = TelemetryWriter(blocker / "t.duckdb", queue_max=20, retry_max_s=0.1)
    with caplog.at_level(logging.WARNING, logger="wlm.telemetry.writer"):
        writer.start()
        stats = writer.stats()
        assert not stats.healthy
        assert stats.last_error and "cannot open" in stats.last_error
        assert all(writer.submit(make_record(i)) for i in range(20))
        assert not writer.submit(make_record(99))  # the queue is full: dropped, counted
        assert writer.stats().dropped == 1
        assert writer.stats().queued == 20
        assert any("dropped" in r.getMessage() for r in caplog.records)
        with pytest.raises(TelemetryUnavailable):
            writer.cursor()

        blocker.unlink()  # the disk is back
        assert writer.flush(timeout_s=10)
        assert writer.stats().healthy
        assert writer.stats().written == 20
    writer.close()
    assert count_rows(blocker / "t.duckdb") == 20


def test_a_file_that_is_not_a_database_is_reported_and_retried(tmp_path: Path) -> None:
    path = tmp_path / "t.duckdb"
    path.write_bytes(b"garbage" * 1000)
    writer = TelemetryWriter(path, retry_max_s=0.1)
    writer.start()
    assert writer.submit(make_record(1))
    assert not writer.stats().healthy
    assert "cannot open" in (writer.stats().last_error or "")
    path.unlink()  # an operator moved the broken file away
    assert writer.flush(timeout_s=10)
    writer.close()
    assert count_rows(path) == 1


def test_a_value_duckdb_refuses_drops_that_record_only(writer: TelemetryWriter) -> None:
    good = [make_record(i) for i in range(5)]
    bad = make_record(99, http_status=2**40)  # does not fit the INTEGER column
    for record in good[:2]:
        writer.submit(record)
    writer.submit(bad)
    for record in good[2:]:
        writer.submit(record)
    assert writer.flush(timeout_s=10)
    stats = writer.stats()
    assert (stats.written, stats.dropped) == (5, 1)
    assert stats.healthy


def test_submit_after_close_is_refused(tmp_path: Path) -> None:
    writer = TelemetryWriter(tmp_path / "t.duckdb")
    writer.start()
    writer.close()
    assert not writer.submit(make_record(1))
    assert writer.stats().dropped == 1


def test_retention_deletes_old_rows_from_every_table_on_start(tmp_path: Path) -> None:
    path = tmp_path / "t.duckdb"
    writer = TelemetryWriter(path)
    writer.start()
    old = make_record(1, ago_s=10 * 86400)
    new = make_record(2)
    for record in (old, new):
        writer.submit(record, make_conversation(record))
    writer.close()
    assert count_rows(path) == 2

    writer = TelemetryWriter(path, retention_days=7)
    writer.start()  # retention runs as the file is opened
    assert count_rows_live(writer) == 1
    writer.close()
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT id FROM requests").fetchall() == [(new.id,)]
    assert con.execute("SELECT request_id FROM conversations").fetchall() == [(new.id,)]
    assert con.execute("SELECT sum(requests) FROM requests_hourly").fetchone() == (1,)
    assert con.execute(
        "SELECT count(*) FROM latency_hourly WHERE hour < now()::TIMESTAMP - INTERVAL 7 DAY"
    ).fetchone() == (0,)
    con.close()


def count_rows_live(writer: TelemetryWriter) -> int:
    cur = writer.cursor()
    try:
        return cur.execute("SELECT count(*) FROM requests").fetchone()[0]
    finally:
        cur.close()


async def test_query_reads_through_a_cursor_with_limits(writer: TelemetryWriter) -> None:
    for i in range(30):
        writer.submit(make_record(i))
    assert writer.flush(timeout_s=10)
    result = await writer.query("SELECT id FROM requests ORDER BY id", max_rows=10)
    assert len(result.rows) == 10 and result.truncated
    assert result.rows[0] == ("req-000000",)
    assert result.as_dicts()[0] == {"id": "req-000000"}
    with pytest.raises(QueryTimeout):
        await writer.query("SELECT count(*) FROM range(1000000000000) a", timeout_s=0.2)


async def test_timestamps_are_stored_as_utc(writer: TelemetryWriter) -> None:
    aware = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=5)))
    writer.submit(make_record(1, started_at=aware, ended_at=aware))
    assert writer.flush(timeout_s=10)
    result = await writer.query("SELECT started_at FROM requests")
    assert result.rows == ((dt.datetime(2026, 3, 1, 7, 0),),)


async def test_many_batches_of_every_shape_land_whole_and_rolled_up(tmp_path: Path) -> None:
    # Batches reuse the statements prepared when the file opened: batch after batch,
    # with and without conversations, every row lands once and the rollups agree.
    writer = TelemetryWriter(tmp_path / "t.duckdb", batch_size=7, log_content=True)
    writer.start()
    try:
        for i in range(60):
            record = make_record(i)
            writer.submit(record, make_conversation(record) if i % 3 == 0 else None)
            if i % 10 == 9:
                assert writer.flush(timeout_s=10)
        assert writer.flush(timeout_s=10)
        result = await writer.query(
            "SELECT (SELECT count(*) FROM requests), (SELECT count(DISTINCT id) FROM requests), "
            "(SELECT sum(requests) FROM requests_hourly), (SELECT count(*) FROM conversations)"
        )
        assert result.rows == ((60, 60, 60, 20),)
    finally:
        writer.close()


async def test_readers_and_maintenance_keep_duckdbs_optimizer(writer: TelemetryWriter) -> None:
    # Only the batch writes run without it; a user's query over millions of rows needs it.
    result = await writer.query("SELECT current_setting('enable_optimizer')")
    assert result.rows == ((True,),)
    writer.submit(make_record(1))
    assert writer.flush(timeout_s=10)
    result = await writer.query("SELECT current_setting('enable_optimizer')")
    assert result.rows == ((True,),)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory_is_reported_and_recovered(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    writer = TelemetryWriter(folder / "t.duckdb", retry_max_s=0.1)
    try:
        writer.start()
        assert not writer.stats().healthy
        assert writer.submit(make_record(1))
        folder.chmod(0o700)
        assert writer.flush(timeout_s=10)
    finally:
        folder.chmod(0o700)
        writer.close()
    assert count_rows(folder / "t.duckdb") == 1
