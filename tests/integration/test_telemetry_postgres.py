"""Telemetry in PostgreSQL (WLM_TELEMETRY_URL) on a throwaway cluster (tests/pg.py):
the writer's rows arrive once, every named query gives what DuckDB gives on the same
rows, user SQL cannot write or reach files, programs or other databases, spend is read
back, and the password shows nowhere."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from litestar.testing import AsyncTestClient

from tests.pg import PASSWORD
from tests.unit.telemetry.factory import make_box_rows, make_conversation, make_record
from tests.unit.telemetry.test_analytics import known_records
from wlm.app import create_app
from wlm.config import load_settings
from wlm.telemetry import schema, store_postgres
from wlm.telemetry.analytics import load_named_queries, run_named
from wlm.telemetry.query import ForbiddenQuery, QueryFailed, QueryTimeout, run_user_sql
from wlm.telemetry.records import AttemptRecord, EngineEventRecord
from wlm.telemetry.spend import read_spend
from wlm.telemetry.store_postgres import MIGRATIONS, PostgresStore
from wlm.telemetry.writer import TelemetryWriter

# The variables each named query is run with (besides its defaults) in the comparison.
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "recent_requests": [
        {},
        {"provider": "local"},
        {"status": "error", "row_limit": 2},
        {"hours": 96, "model": "gpt-4o-mini"},
    ],
    "request_detail": [{"request_id": "req-000042"}, {"request_id": "nope"}],
    "request_by_client_id": [{"request_id": "client-7"}],
    "timeseries": [{}, {"hours": 96, "bucket_hours": 24, "group_by": "model"}],
    "timeseries_minutely": [{}, {"hours": 1, "bucket_minutes": 5, "group_by": "model"}],
    "summary_by_provider": [{}, {"hours": 96}],
    "summary_by_model": [{}, {"hours": 96}],
    "box_timeseries": [{}, {"hours": 1, "bucket_minutes": 2}],
    "engine_crashes": [{}, {"hours": 96}],
}


def rows_of_known_records() -> list[tuple[Any, ...]]:
    items = []
    for record in known_records():
        if record.id == "req-000041":  # tagged by its client, found by request_by_client_id
            record = make_record(
                41,
                ago_s=10,
                provider="local",
                model="llama-3.1-8b",
                request_id="client-7",
                client="alice",
                cost_usd=0.25,
            )
        attempts: tuple[AttemptRecord, ...] = ()
        if record.id == "req-000020":  # a request that took two tries
            attempts = (
                AttemptRecord(
                    record.id,
                    1,
                    "openai",
                    "gpt-4o-mini",
                    record.started_at,
                    20.0,
                    503,
                    "upstream_error",
                    "retry",
                ),
                AttemptRecord(
                    record.id,
                    2,
                    "openai",
                    "gpt-4o-mini",
                    record.started_at,
                    30.0,
                    502,
                    "upstream_error",
                    None,
                ),
            )
        items.append((record, make_conversation(record, text=f"question {record.id}"), attempts))
    return items


def write_all(writer: TelemetryWriter, items: list[tuple[Any, ...]]) -> None:
    writer.start()
    for record, conversation, attempts in items:
        assert writer.submit(record, conversation, attempts)
    assert writer.flush(timeout_s=20)


def write_box(writer: TelemetryWriter) -> None:
    for ago_s in (30, 20, 5000):  # two samples in one bucket, one in another
        assert writer.submit_box(make_box_rows(ago_s=ago_s))
    assert writer.flush(timeout_s=20)


def write_events(writer: TelemetryWriter, now: dt.datetime) -> None:
    for ago_s, model, event in (
        (40, "tiny", "crash"),
        (30, "tiny", "held"),
        (9000, "big", "crash"),
    ):
        at = now - dt.timedelta(seconds=ago_s)
        assert writer.submit_event(EngineEventRecord(at, "box-a", model, event, "killed"))
    assert writer.flush(timeout_s=20)


@pytest.fixture
async def both(
    tmp_path: Path, pg_url: str
) -> AsyncIterator[tuple[TelemetryWriter, TelemetryWriter]]:
    items = rows_of_known_records()
    duck = TelemetryWriter(tmp_path / "t.duckdb", batch_size=7)
    pg = TelemetryWriter(PostgresStore(pg_url), batch_size=7)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for writer in (duck, pg):
        await asyncio.to_thread(write_all, writer, items)
        await asyncio.to_thread(write_box, writer)
        await asyncio.to_thread(write_events, writer, now)
    yield duck, pg
    await duck.aclose()
    await pg.aclose()


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


async def test_every_named_query_gives_the_same_rows_on_duckdb_and_postgresql(
    both: tuple[TelemetryWriter, TelemetryWriter],
) -> None:
    duck, pg = both
    queries = load_named_queries()
    for name in queries:
        for variables in VARIANTS.get(name, [{}]):
            expected = await run_named(duck, name, queries=queries, **variables)
            try:
                got = await run_named(pg, name, queries=queries, **variables)
            except QueryFailed as exc:
                pytest.fail(
                    f"analytics/{name}.sql does not run on PostgreSQL ({exc}): keep to the SQL "
                    "both engines share (docs/telemetry.md, Named queries)"
                )
            where = f"{name} {variables}"
            assert got.columns == expected.columns, where
            assert len(got.rows) == len(expected.rows), where
            for want_row, got_row in zip(expected.rows, got.rows, strict=True):
                assert all(same(w, g) for w, g in zip(want_row, got_row, strict=True)), (
                    where,
                    want_row,
                    got_row,
                )
            if name not in ("request_detail",) and variables == {}:
                assert expected.rows or name in ("resilience_by_provider",), where


async def test_rows_arrive_once_and_a_replayed_batch_counts_once(pg_url: str) -> None:
    writer = TelemetryWriter(PostgresStore(pg_url), batch_size=50)
    items = [(make_record(i), make_conversation(make_record(i)), ()) for i in range(120)]
    await asyncio.to_thread(write_all, writer, items)
    # The same rows again, as a replay after a lost answer would send them.
    for record, conversation, attempts in items[:60]:
        writer.submit(record, conversation, attempts)
    assert await asyncio.to_thread(writer.flush, 20)
    await writer.aclose()
    with psycopg.connect(pg_url) as con:
        assert con.execute("SELECT count(*) FROM requests").fetchone() == (120,)
        assert con.execute("SELECT count(*) FROM conversations").fetchone() == (120,)
        assert con.execute("SELECT sum(requests) FROM requests_hourly").fetchone() == (120,)
        version = con.execute("SELECT max(version) FROM schema_version").fetchone()
        assert version == (schema.SCHEMA_VERSION,)

    # A restart (another replica) finds the schema in place and appends.
    again = TelemetryWriter(PostgresStore(pg_url))
    await asyncio.to_thread(write_all, again, [(make_record(999), None, ())])
    await again.aclose()
    with psycopg.connect(pg_url) as con:
        assert con.execute("SELECT count(*) FROM requests").fetchone() == (121,)
        # One row per migration of a new database (its first creates DuckDB's version 6).
        assert con.execute("SELECT count(*) FROM schema_version").fetchone() == (len(MIGRATIONS),)


async def test_two_writers_at_once_share_the_database(pg_url: str) -> None:
    """Two replicas: both migrate at start (one waits for the other), both write."""
    a = TelemetryWriter(PostgresStore(pg_url), batch_size=20)
    b = TelemetryWriter(PostgresStore(pg_url), batch_size=20)
    await asyncio.gather(
        asyncio.to_thread(write_all, a, [(make_record(i), None, ()) for i in range(200)]),
        asyncio.to_thread(write_all, b, [(make_record(i), None, ()) for i in range(200, 400)]),
    )
    # Both compact the rollups they wrote while the other may write.
    for w in (a, b):
        w._store.compact(dt.datetime(2000, 1, 1))
    counted = await a.read(lambda cur: run_user_sql(cur, "SELECT count(*) FROM requests"))
    assert counted.rows == ((400,),)
    summary = await run_named(b, "summary_by_provider")
    assert summary.as_dicts()[0]["requests"] == 400
    await a.aclose()
    await b.aclose()


@pytest.fixture
async def pg_writer(pg_url: str) -> AsyncIterator[TelemetryWriter]:
    writer = TelemetryWriter(PostgresStore(pg_url))
    await asyncio.to_thread(write_all, writer, [(make_record(i), None, ()) for i in range(5)])
    yield writer
    await writer.aclose()


async def user_sql(writer: TelemetryWriter, sql: str, **kw: Any) -> Any:
    return await writer.read(lambda cur: run_user_sql(cur, sql, **kw))


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT pg_ls_dir('/')",
        "SELECT * FROM pg_stat_file('/etc/passwd')",
        "COPY requests TO PROGRAM 'touch /tmp/wlm-pwned'",
        "COPY (SELECT 1) TO '/tmp/wlm-pwned'",
        "DELETE FROM requests",
        "INSERT INTO requests (id, started_at) VALUES ('x', now())",
        "DROP TABLE requests",
        "SELECT 1; DELETE FROM requests",
        "COMMIT; DELETE FROM requests",
        "WITH gone AS (DELETE FROM requests RETURNING id) SELECT count(*) FROM gone",
        "SELECT * INTO stolen FROM requests",
        "SELECT lo_import('/etc/passwd')",
        "SELECT * FROM dblink('dbname=postgres', 'SELECT 1') AS t(x int)",
        "SELECT dblink_connect('dbname=postgres')",
        "CREATE EXTENSION dblink",
        "SET default_transaction_read_only = off",
        "-- a comment first\nUPDATE requests SET model = 'x'",
    ],
)
async def test_user_sql_cannot_write_or_reach_files_programs_or_other_databases(
    pg_writer: TelemetryWriter, sql: str
) -> None:
    with pytest.raises((ForbiddenQuery, QueryFailed)) as refused:
        await user_sql(pg_writer, sql)
    assert str(refused.value)  # a reason to show, not a stack trace
    assert (await user_sql(pg_writer, "SELECT count(*) FROM requests")).rows == ((5,),)
    assert not await asyncio.to_thread(Path("/tmp/wlm-pwned").exists)


async def test_user_sql_reads_with_a_time_limit_and_a_row_cap(pg_writer: TelemetryWriter) -> None:
    result = await user_sql(pg_writer, "SELECT * FROM generate_series(1, 50)", max_rows=10)
    assert len(result.rows) == 10 and result.truncated
    views = await user_sql(pg_writer, "SELECT count(*) FROM request_log")
    assert views.rows == ((5,),)
    with pytest.raises(QueryTimeout):
        await user_sql(pg_writer, "SELECT pg_sleep(5)", timeout_s=0.3)
    with pytest.raises(QueryFailed, match="nope"):
        await user_sql(pg_writer, "SELECT nope FROM requests")


async def test_a_superuser_role_gets_no_user_sql(pg_cluster: Any, pg_url: str) -> None:
    with pg_cluster.admin() as admin:
        admin.execute("ALTER ROLE wlm SUPERUSER")
    try:
        writer = TelemetryWriter(PostgresStore(pg_url))
        await asyncio.to_thread(write_all, writer, [])
        with pytest.raises(ForbiddenQuery, match="superuser"):
            await user_sql(writer, "SELECT 1")
        await writer.aclose()
    finally:
        with pg_cluster.admin() as admin:
            admin.execute("ALTER ROLE wlm NOSUPERUSER")


async def test_spend_is_read_from_the_shared_database(pg_url: str) -> None:
    now = dt.datetime.now(dt.UTC)
    records = [
        make_record(1, ago_s=5, client="alice", cost_usd=0.5),
        make_record(2, ago_s=5, client="alice", cost_usd=0.25),
        make_record(3, ago_s=5, client=None, cost_usd=1.0),
    ]
    # Two replicas each wrote some of them.
    a, b = TelemetryWriter(PostgresStore(pg_url)), TelemetryWriter(PostgresStore(pg_url))
    await asyncio.to_thread(write_all, a, [(records[0], None, ())])
    await asyncio.to_thread(write_all, b, [(r, None, ()) for r in records[1:]])
    spent = await a.read(lambda cur: read_spend(cur, now))
    assert [(s.client, s.day_usd, s.month_usd) for s in spent] == [
        (None, 1.0, 1.0),
        ("alice", 0.75, 0.75),
    ]
    await a.aclose()
    await b.aclose()


def test_the_password_is_a_secret_and_the_url_is_shown_without_it() -> None:
    url = f"postgresql://wlm:{PASSWORD}@db.internal:5432/wlm"
    settings = load_settings({"WLM_TELEMETRY_URL": url})
    assert PASSWORD in settings.secrets()
    assert settings.telemetry_url_shown == "postgresql://wlm:[redacted]@db.internal:5432/wlm"
    assert PASSWORD not in repr(settings)
    assert PostgresStore(url).name == settings.telemetry_url_shown


async def test_an_unreachable_database_is_reported_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"postgresql://wlm:{PASSWORD}@127.0.0.1:1/wlm"
    writer = TelemetryWriter(PostgresStore(url))
    writer.start()
    await asyncio.sleep(0.2)
    stats = writer.stats()
    assert not stats.healthy
    assert stats.last_error and "127.0.0.1:1" in stats.last_error
    assert PASSWORD not in stats.last_error
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)
    await writer.aclose(timeout_s=0.5)


async def test_postgresql_stopped_and_restarted_under_load_loses_and_doubles_nothing(
    pg_cluster: Any, pg_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "data" / "telemetry-spool"
    writer = TelemetryWriter(
        PostgresStore(pg_url),
        batch_size=20,
        flush_interval_s=0.02,
        retry_max_s=0.2,
        spool_dir=spool,
    )
    writer.start()
    submitted = 0

    async def load(n: int) -> None:
        nonlocal submitted
        for _ in range(n):
            record = make_record(submitted)
            assert writer.submit(record, make_conversation(record))
            submitted += 1
            await asyncio.sleep(0.002)

    await load(150)
    assert (await run_named(writer, "last_hour")).rows  # a reader connection in the pool
    await asyncio.to_thread(pg_cluster.stop, "immediate")  # a crash, mid-batch maybe
    try:
        await load(300)
        await asyncio.sleep(0.5)
        down = writer.stats()
        assert not down.healthy and down.spooled_bytes > 0, down
        assert list(spool.glob("*.journal"))  # on disk, in order, not in memory
    finally:
        await asyncio.to_thread(pg_cluster.start)
    await load(150)
    assert await asyncio.to_thread(writer.flush, 30), writer.stats()
    # The pooled reader the restart cut off is replaced: the first read after works.
    assert (await run_named(writer, "last_hour")).rows
    up = writer.stats()
    assert up.healthy and up.spooled_bytes == 0 and up.dropped == 0 and up.queued == 0, up
    await writer.aclose()
    assert not list(spool.glob("*.journal"))

    with psycopg.connect(pg_url) as con:
        assert con.execute("SELECT count(*), count(DISTINCT id) FROM requests").fetchone() == (
            600,
            600,
        )
        assert con.execute("SELECT count(*) FROM conversations").fetchone() == (600,)
        assert con.execute("SELECT sum(requests) FROM requests_hourly").fetchone() == (600,)


async def test_a_spool_left_by_a_stopped_replica_is_replayed_at_its_next_start(
    pg_cluster: Any, pg_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    await asyncio.to_thread(pg_cluster.stop, "fast")
    try:
        writer = TelemetryWriter(PostgresStore(pg_url), spool_dir=spool, retry_max_s=0.1)
        writer.start()
        for i in range(50):
            writer.submit(make_record(i))
        await writer.aclose(timeout_s=2)  # the database is away: the rows stay on disk
        assert list(spool.glob("*.journal"))
    finally:
        await asyncio.to_thread(pg_cluster.start)
    again = TelemetryWriter(PostgresStore(pg_url), spool_dir=spool)
    again.start()
    assert await asyncio.to_thread(again.flush, 20)
    await again.aclose()
    with psycopg.connect(pg_url) as con:
        assert con.execute("SELECT count(*) FROM requests").fetchone() == (50,)
    assert not list(spool.glob("*.journal"))


# A writer process that submits 120 requests' rows (a conversation and two attempts
# each), flushes after the first 50, says so and waits to be killed; it would write
# the other 70 within the hour.
KILLED_WRITER = """
import sys
from pathlib import Path

from tests.unit.telemetry.factory import make_conversation, make_record
from wlm.telemetry.records import AttemptRecord
from wlm.telemetry.store_postgres import PostgresStore
from wlm.telemetry.writer import TelemetryWriter

writer = TelemetryWriter(
    PostgresStore(sys.argv[1]), spool_dir=Path(sys.argv[2]), flush_interval_s=3600,
    busy_interval_s=3600, batch_size=10**6,
)
writer.start()
for i in range(120):
    record = make_record(i, attempts=2)
    tries = [
        AttemptRecord(record.id, n, "openai", "gpt-4o-mini", record.started_at, 9.5, status, None)
        for n, status in ((1, 503), (2, 200))
    ]
    assert writer.submit(record, make_conversation(record), tries)
    if i == 49:
        assert writer.flush(30)
print("submitted", flush=True)
sys.stdin.read()
"""


def test_rows_submitted_by_a_process_killed_right_after_are_replayed_once_at_its_restart(
    pg_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "data" / "telemetry-spool"
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, pg_url, str(spool)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"submitted\n"
    finally:
        child.kill()  # SIGKILL: no close(), no flush
        child.wait(10)
    with psycopg.connect(pg_url) as con:
        # Only what was flushed made it before the kill; the other 70 are on its disk.
        assert con.execute("SELECT count(*) FROM requests").fetchone() == (50,)

    again = TelemetryWriter(PostgresStore(pg_url), spool_dir=spool)
    again.start()
    try:
        assert again.flush(30), again.stats()
    finally:
        again.close()
    with psycopg.connect(pg_url) as con:
        counts = con.execute(
            "SELECT (SELECT count(*) FROM requests), (SELECT count(DISTINCT id) FROM requests),"
            " (SELECT count(*) FROM conversations), (SELECT count(*) FROM attempt_rows),"
            " (SELECT sum(requests) FROM requests_hourly)"
        ).fetchone()
    assert counts == (120, 120, 120, 240, 120)
    assert not list(spool.glob("*.journal"))


async def test_a_full_spool_drops_and_says_so(
    pg_cluster: Any, pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await asyncio.to_thread(pg_cluster.stop, "fast")
    try:
        writer = TelemetryWriter(
            PostgresStore(pg_url),
            spool_dir=tmp_path / "spool",
            spool_max_bytes=4096,
            retry_max_s=0.1,
            batch_size=10,
        )
        writer.start()
        for i in range(200):
            writer.submit(make_record(i), make_conversation(make_record(i), text="x" * 200))
        await asyncio.sleep(1.0)
        stats = writer.stats()
        assert stats.spool_full and stats.dropped > 0, stats
        assert stats.spooled_bytes <= 4096
        assert any(
            "spool" in r.getMessage() and "DROPPED" in r.getMessage() for r in caplog.records
        )
        await writer.aclose(timeout_s=1)
    finally:
        await asyncio.to_thread(pg_cluster.start)


async def test_budgets_follow_what_the_whole_fleet_spent(pg_url: str) -> None:
    from wlm.gateway import Gateway

    env = {
        "WLM_API_KEYS": "alice:sk-wlm-alice-0123",
        "WLM_KEY_LIMITS": "alice:usd_per_day=1",
        "WLM_TELEMETRY_URL": pg_url,
    }
    settings = load_settings(env)
    gateway = Gateway(settings, local=None, telemetry=TelemetryWriter.for_settings(settings))
    await gateway.start()
    try:
        assert gateway.telemetry is not None
        other = TelemetryWriter(PostgresStore(pg_url))  # another replica
        spent = [(make_record(1, ago_s=5, client="alice", cost_usd=0.75), None, ())]
        await asyncio.to_thread(write_all, other, spent)
        await other.aclose()
        await gateway.catch_up_spend(gateway.telemetry)
        assert gateway.key_limits.usage(["alice"])[0].usd_today == pytest.approx(0.75)
        await gateway.catch_up_spend(gateway.telemetry)  # again: nothing counts twice
        assert gateway.key_limits.usage(["alice"])[0].usd_today == pytest.approx(0.75)
    finally:
        await gateway.close()


async def test_a_query_password_shows_nowhere_on_health(tmp_path: Path) -> None:
    """``?password=`` (libpq takes it): /health's last_error names the database
    without it."""
    url = "postgresql://wlm@127.0.0.1:1/db?password=S3cretPw"
    env = {"WLM_DATA_DIR": str(tmp_path), "WLM_TELEMETRY_URL": url}
    app = create_app(load_settings(env), local=None)
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1") as client:
        deadline = asyncio.get_running_loop().time() + 10
        body: dict[str, Any] = {}
        while asyncio.get_running_loop().time() < deadline:
            body = (await client.get("/health")).json()
            if (body.get("telemetry") or {}).get("last_error"):
                break
            await asyncio.sleep(0.05)
        error = body["telemetry"]["last_error"]
        assert "127.0.0.1:1" in error and "[redacted]" in error
        assert "S3cretPw" not in (await client.get("/health")).text


async def test_user_sql_cannot_keep_wlms_schema_lock(
    pg_cluster: Any, pg_writer: TelemetryWriter, pg_url: str
) -> None:
    """A session-level advisory lock taken by user SQL survives the ROLLBACK; were it
    kept on the pooled connection, every writer's next open would hang on it."""
    lock = store_postgres._SCHEMA_LOCK
    await user_sql(pg_writer, f"SELECT pg_advisory_lock({lock})")
    with pg_cluster.admin() as admin:
        held = admin.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        ).fetchone()
    assert held == (0,), "the reader went back to the pool holding an advisory lock"
    store = PostgresStore(pg_url)
    try:
        await asyncio.wait_for(asyncio.to_thread(store.open), 5)
    finally:
        store.close()


async def test_a_schema_lock_held_elsewhere_fails_the_open_instead_of_hanging_it(
    pg_cluster: Any, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_postgres, "_SCHEMA_LOCK_TIMEOUT_S", 1)
    with pg_cluster.admin(pg_url.rsplit("/", 1)[1]) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [store_postgres._SCHEMA_LOCK])
        store = PostgresStore(pg_url)
        with pytest.raises(psycopg.errors.LockNotAvailable):
            await asyncio.wait_for(asyncio.to_thread(store.open), 10)
    store.close()


async def test_a_frozen_database_does_not_hang_the_stop(
    pg_cluster: Any, pg_writer: TelemetryWriter, pg_url: str
) -> None:
    """PostgreSQL stops answering (SIGSTOP) while a read waits on it: the stop still
    ends by its deadline, and no thread left behind would keep the process from
    exiting."""
    reading = asyncio.ensure_future(user_sql(pg_writer, "SELECT pg_sleep(60)", timeout_s=120))
    frozen: list[psutil.Process] = []
    admin = pg_cluster.admin()
    try:
        assert await poll_until(
            lambda: (
                admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%'"
                ).fetchone()
                == (1,)
            )
        ), "the read never started"
        postmaster = psutil.Process(pg_cluster._postmaster_pid())
        frozen = [postmaster, *postmaster.children(recursive=True)]
        for process in frozen:
            process.suspend()
        started = time.monotonic()
        await asyncio.wait_for(pg_writer.aclose(3), 10)
        assert time.monotonic() - started < 6
        readers = [t for t in threading.enumerate() if t.name.startswith("wlm-telemetry-read")]
        assert all(t.daemon for t in readers), "a stuck reader would block the exit"
    finally:
        for process in frozen:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.resume()
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE 'SELECT pg_sleep(60)%' AND pid <> pg_backend_pid()"
        )
        admin.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reading, 10)


async def poll_until(predicate: Any, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_api_sql_on_postgresql_answers_range_values_as_text(
    pg_url: str, tmp_path: Path
) -> None:
    env = {"WLM_DATA_DIR": str(tmp_path), "WLM_TELEMETRY_URL": pg_url, "WLM_ADMIN_KEY": "adm-k3y"}
    app = create_app(load_settings(env), local=None)
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1") as client:
        response = await client.post(
            "/api/sql",
            json={"sql": "SELECT int4range(1, 5) AS r, 2 AS n"},
            headers={"authorization": "Bearer adm-k3y"},
        )
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == [["[1, 5)", 2]]
