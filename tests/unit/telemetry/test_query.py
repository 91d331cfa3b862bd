"""User SQL reads the telemetry and nothing else; every query has a time limit and a row cap."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from wlm.telemetry import schema
from wlm.telemetry.analytics import apply_views
from wlm.telemetry.query import (
    ForbiddenQuery,
    QueryTimeout,
    TelemetryUnavailable,
    check_user_sql,
    execute_limited,
    lock_down,
    open_readonly,
    run_user_sql,
)

PASSWD_MARKER = "root:"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A telemetry file set up as the server sets it up, with one row; yields a cursor."""
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    lock_down(con)
    schema.migrate(con)
    apply_views(con)
    con.execute(
        "INSERT INTO requests (id, started_at, provider, model, status) "
        "VALUES ('r1', now()::TIMESTAMP, 'openai', 'gpt-4o', 'ok')"
    )
    cur = con.cursor()
    yield cur
    cur.close()
    con.close()


def snapshot(con: duckdb.DuckDBPyConnection) -> tuple[object, ...]:
    """What a forbidden statement must not change: tables, rows, settings."""
    return (
        con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall(),
        con.execute("SELECT count(*), min(id) FROM requests").fetchall(),
        con.execute(
            "SELECT name, value FROM duckdb_settings() "
            "WHERE name IN ('threads', 'memory_limit', 'enable_external_access') ORDER BY 1"
        ).fetchall(),
    )


def files_state() -> list[tuple[str, float | None]]:
    """Whether (and when last) the files the forbidden statements name were written."""
    paths = ("/tmp/x", "/tmp/x.csv", "/tmp/dump", "/tmp/other.duckdb")
    return [(p, Path(p).stat().st_mtime if Path(p).exists() else None) for p in paths]


FORBIDDEN = {
    "read_text": "SELECT * FROM read_text('/etc/passwd')",
    "read_text scalar use": "SELECT content FROM read_text('/etc/passwd') LIMIT 1",
    "read_csv": "SELECT * FROM read_csv('/etc/passwd')",
    "read_csv_auto": "SELECT * FROM read_csv_auto('/etc/passwd')",
    "read_blob in lambda": "SELECT list_transform([1], x -> read_blob('/etc/passwd'))",
    "file as a table": "SELECT * FROM '/etc/passwd'",
    "csv file as a table": "FROM 'secrets.csv'",
    "copy": "COPY requests TO '/tmp/x'",
    "copy query": "COPY (SELECT 1) TO '/tmp/x.csv'",
    "attach": "ATTACH '/tmp/other.duckdb' AS other",
    "detach": "DETACH telemetry",
    "install": "INSTALL httpfs",
    "load": "LOAD httpfs",
    "export database": "EXPORT DATABASE '/tmp/dump'",
    "set": "SET threads = 1",
    "set variable": "SET VARIABLE x = 1",
    "reset": "RESET memory_limit",
    "pragma": "PRAGMA database_list",
    "pragma function": "SELECT * FROM pragma_database_list()",
    "call": "CALL pragma_version()",
    "create table": "CREATE TABLE t AS SELECT 1",
    "create view": "CREATE VIEW v AS SELECT 1",
    "create macro": "CREATE MACRO m(x) AS x",
    "drop": "DROP TABLE requests",
    "alter": "ALTER TABLE requests ADD COLUMN x INT",
    "delete": "DELETE FROM requests",
    "update": "UPDATE requests SET model = 'x'",
    "insert": "INSERT INTO requests (id, started_at) VALUES ('x', now()::TIMESTAMP)",
    "checkpoint": "CHECKPOINT",
    "vacuum": "VACUUM",
    "two statements": "SELECT 1; DROP TABLE requests",
    "select then select": "SELECT 1; SELECT 2",
    "subquery hiding read_text": (
        "SELECT * FROM requests WHERE id IN (SELECT content FROM read_text('/etc/passwd'))"
    ),
    "cte hiding read_csv": "WITH x AS (SELECT * FROM read_csv('/etc/passwd')) SELECT * FROM x",
    "glob": "SELECT * FROM glob('*')",
    "getenv": "SELECT getenv('HOME')",
    "current_setting": "SELECT current_setting('temp_directory')",
    "query table function": "SELECT * FROM query('DELETE FROM requests')",
    "parquet_scan": "SELECT * FROM parquet_scan('/tmp/x.parquet')",
    "sniff_csv": "SELECT * FROM sniff_csv('/etc/passwd')",
    "duckdb_settings": "SELECT * FROM duckdb_settings()",
    "other catalog": "SELECT * FROM system.main.requests",
    "explain": "EXPLAIN SELECT 1",
    "pivot statement": "PIVOT requests ON status USING count(*)",
    "transaction": "BEGIN TRANSACTION",
    "parameters": "SELECT * FROM requests WHERE id = ?",
    "not sql": "this is not sql",
}


@pytest.mark.parametrize("sql", FORBIDDEN.values(), ids=FORBIDDEN.keys())
def test_forbidden_sql_is_refused_and_reads_or_changes_nothing(
    db: duckdb.DuckDBPyConnection, sql: str, tmp_path: Path
) -> None:
    before = snapshot(db), files_state()
    with pytest.raises(ForbiddenQuery) as refused:
        run_user_sql(db, sql)
    assert str(refused.value)  # a reason a person can read
    assert PASSWD_MARKER not in str(refused.value)
    assert (snapshot(db), files_state()) == before


ALLOWED = {
    "plain": ("SELECT id FROM requests", [("r1",)]),
    "from first": ("FROM requests SELECT provider", [("openai",)]),
    "qualified": ("SELECT count(*) FROM main.requests", [(1,)]),
    "cte": ("WITH x AS (SELECT id FROM requests) SELECT * FROM x", [("r1",)]),
    "view": ("SELECT id, is_error FROM request_facts", [("r1", False)]),
    "join view": ("SELECT id, response_text FROM request_log", [("r1", None)]),
    "range": ("SELECT sum(range) FROM range(4)", [(6,)]),
    "unnest": ("SELECT * FROM unnest([1, 2])", [(1,), (2,)]),
    "rollup": ("SELECT count(*) FROM requests_hourly", [(0,)]),
    "information_schema": (
        "SELECT count(*) > 10 FROM information_schema.columns WHERE table_name = 'requests'",
        [(True,)],
    ),
    "duckdb_tables": (
        "SELECT count(*) > 0 FROM duckdb_tables() WHERE table_name = 'requests'",
        [(True,)],
    ),
    "macro": ("SELECT wlm_bucket(1.0)", [(0,)]),
    "summary table macro": ("SELECT count(*) FROM wlm_summary(24, true)", [(0,)]),
    "trailing semicolon": ("SELECT 1 AS one;", [(1,)]),
}


@pytest.mark.parametrize(("sql", "rows"), ALLOWED.values(), ids=ALLOWED.keys())
def test_read_only_selects_run(db: duckdb.DuckDBPyConnection, sql: str, rows: list) -> None:
    assert list(run_user_sql(db, sql).rows) == rows


def test_describe_and_show_tables_work(db: duckdb.DuckDBPyConnection) -> None:
    described = run_user_sql(db, "DESCRIBE requests")
    assert "started_at" in [row[0] for row in described.rows]
    tables = run_user_sql(db, "SHOW TABLES")
    assert ("requests",) in tables.rows


def test_the_check_names_the_tables_when_one_is_unknown(db: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(ForbiddenQuery, match="requests"):
        check_user_sql(db, "SELECT * FROM nosuchtable")


def test_file_access_fails_even_without_the_check(db: duckdb.DuckDBPyConnection) -> None:
    # The second wall: the database itself refuses files, settings and extensions.
    for sql in (
        "SELECT * FROM read_text('/etc/passwd')",
        "COPY requests TO '/tmp/wlm-should-not-exist.csv'",
        "SET enable_external_access = true",
        "SET threads = 1",
        "LOAD httpfs",
    ):
        with pytest.raises(duckdb.Error):
            execute_limited(db, sql)
    assert not Path("/tmp/wlm-should-not-exist.csv").exists()


def test_row_cap_reports_truncation(db: duckdb.DuckDBPyConnection) -> None:
    result = run_user_sql(db, "SELECT * FROM range(50)", max_rows=10)
    assert len(result.rows) == 10
    assert result.truncated
    assert result.columns == ("range",)
    assert not run_user_sql(db, "SELECT * FROM range(10)", max_rows=10).truncated


def test_a_slow_query_is_interrupted(db: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(QueryTimeout):
        run_user_sql(db, "SELECT count(*) FROM range(1000000000000) a", timeout_s=0.2)
    # The cursor is usable afterwards.
    assert run_user_sql(db, "SELECT 1").rows == ((1,),)


def test_open_readonly_reads_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "t.duckdb"
    con = duckdb.connect(str(path))
    schema.migrate(con)
    con.execute("INSERT INTO requests (id, started_at) VALUES ('r1', now()::TIMESTAMP)")
    con.close()
    ro = open_readonly(path)
    try:
        assert run_user_sql(ro, "SELECT id FROM requests").rows == (("r1",),)
        with pytest.raises(ForbiddenQuery):
            run_user_sql(ro, "SELECT * FROM read_text('/etc/passwd')")
        with pytest.raises(duckdb.Error):
            execute_limited(ro, "DELETE FROM requests")
        with pytest.raises(duckdb.Error):
            execute_limited(ro, "SELECT * FROM read_text('/etc/passwd')")
    finally:
        ro.close()


def test_open_readonly_of_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_readonly(tmp_path / "nothing.duckdb")


def test_open_readonly_of_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.duckdb"
    path.write_bytes(b"not a database" * 1000)
    with pytest.raises(TelemetryUnavailable):
        open_readonly(path)
