"""Reading the telemetry: a time limit and a row cap on every query, and safe SQL for users.

Two kinds of SQL reach the file:

- wlm's own (the named queries in ``analytics/``): run with
  :func:`execute_limited`, which only adds the time limit and the row cap;
- a user's (``wlm sql``, the SQL box of the pages): run with
  :func:`run_user_sql`, which first proves the text is one read-only SELECT over
  the telemetry tables and refuses anything else with :class:`ForbiddenQuery`
  before a byte is read.

The proof uses DuckDB's own parser (``extract_statements`` for the statement
type, ``json_serialize_sql`` for the syntax tree), so what is checked is exactly
what will run. As a second wall, every connection wlm opens has
``enable_external_access`` off and its configuration locked
(:func:`lock_down`): even SQL that slipped past the checks could not read a
file, attach a database, load an extension or change a setting.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeAlias, runtime_checkable

import duckdb
from attrs import frozen

__all__ = [
    "ALLOWED_TABLE_FUNCTIONS",
    "DENIED_FUNCTIONS",
    "Cursor",
    "ForbiddenQuery",
    "QueryFailed",
    "QueryResult",
    "QueryTimeout",
    "Session",
    "TelemetryUnavailable",
    "check_user_sql",
    "execute_limited",
    "lock_down",
    "open_readonly",
    "run_user_sql",
]

# Table functions a user may call; every other one is refused (read_csv, glob,
# query, pragma_*, parquet_scan, ... all read files or run other SQL). wlm_summary
# is wlm's own table macro over the rollups (analytics/_summary.sql).
ALLOWED_TABLE_FUNCTIONS = frozenset(
    {
        "range",
        "generate_series",
        "unnest",
        "duckdb_tables",
        "duckdb_columns",
        "duckdb_views",
        "wlm_summary",
    }
)
# Scalar functions that reveal the environment or settings, touch files, or change state.
DENIED_FUNCTIONS = frozenset(
    {
        "getenv",
        "current_setting",
        "glob",
        "sniff_csv",
        "nextval",
        "setseed",
        "which_secret",
        "query",
        "query_table",
        "duckdb_secrets",
        "duckdb_settings",
    }
)
_DENIED_PREFIXES = ("read_", "parquet_", "iceberg_", "delta_", "sqlite_", "postgres_", "mysql_")
# Catalog views any DuckDB has; they describe the schema, nothing else.
_OPEN_SCHEMAS = ("information_schema",)


class ForbiddenQuery(Exception):
    """The SQL is not a single read-only SELECT over the telemetry; nothing was run."""


class QueryFailed(Exception):
    """The SQL was allowed but the database refused it (syntax, unknown column, types)."""


class QueryTimeout(Exception):
    """The query ran past its time limit and was interrupted."""


class TelemetryUnavailable(Exception):
    """The telemetry file is not open (not started, closed, or failing)."""


@frozen
class QueryResult:
    """Rows of a query, capped: ``truncated`` is True when more rows existed."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: bool

    def as_dicts(self) -> list[dict[str, Any]]:
        """The rows as ``{column: value}`` dicts (for ``--format json`` and pages)."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


@runtime_checkable
class Session(Protocol):
    """A reader of a store other than DuckDB (PostgreSQL: ``store_postgres``), handed to
    the functions here instead of a DuckDB cursor; each brings its engine's way of
    running them. Raises :class:`ForbiddenQuery`, :class:`QueryTimeout`,
    :class:`QueryFailed` or :class:`TelemetryUnavailable`."""

    def execute_limited(
        self,
        sql: str,
        params: Sequence[Any] | dict[str, Any] | None,
        *,
        max_rows: int,
        timeout_s: float,
        variables: dict[str, Any] | None = None,
    ) -> QueryResult: ...

    def run_user_sql(self, sql: str, *, max_rows: int, timeout_s: float) -> QueryResult: ...


# What a reader function gets: a DuckDB cursor, or a Session of another store.
Cursor: TypeAlias = duckdb.DuckDBPyConnection | Session


def lock_down(con: duckdb.DuckDBPyConnection, *, allowed_directories: Sequence[str] = ()) -> None:
    """Make a fresh database instance safe to serve: UTC, no file access, settings locked.

    Must run on the first connection of the instance, before any other SQL.
    ``allowed_directories`` (ending in ``/``) stay reachable, e.g. for exports.
    After this, neither ``SET enable_external_access`` nor any other setting can
    be changed by anyone using the database.
    """
    # Stored timestamps are UTC; make TIMESTAMPTZ conversions (e.g. of aware
    # datetimes handed to the appender) use UTC regardless of the host's zone.
    con.execute("SET GLOBAL TimeZone = 'UTC'")
    # No extension may be fetched or loaded on demand behind our back.
    con.execute("SET GLOBAL autoinstall_known_extensions = false")
    con.execute("SET GLOBAL autoload_known_extensions = false")
    if allowed_directories:
        con.execute("SET GLOBAL allowed_directories = ?", [list(allowed_directories)])
    con.execute("SET GLOBAL enable_external_access = false")
    con.execute("SET GLOBAL lock_configuration = true")


def open_readonly(path: Path) -> duckdb.DuckDBPyConnection:
    """Open a telemetry file read-only and locked down, for ``wlm sql`` without a server.

    Raises ``FileNotFoundError`` when there is no file and
    :class:`TelemetryUnavailable` when DuckDB cannot open it (for instance while
    a running server holds it).
    """
    if not path.is_file():
        raise FileNotFoundError(f"no telemetry file at {path}")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise TelemetryUnavailable(f"cannot open {path} read-only: {exc}") from exc
    lock_down(con)
    return con


def execute_limited(
    con: Cursor,
    sql: str | duckdb.Statement,
    params: Sequence[Any] | dict[str, Any] | None = None,
    *,
    max_rows: int = 10_000,
    timeout_s: float = 10.0,
) -> QueryResult:
    """Run trusted SQL on ``con`` (a cursor owned by the calling thread) with limits.

    The query is interrupted after ``timeout_s`` (:class:`QueryTimeout`); at most
    ``max_rows`` rows are fetched, ``truncated`` tells whether more existed.
    """
    if not isinstance(con, duckdb.DuckDBPyConnection):
        text = sql if isinstance(sql, str) else sql.query
        return con.execute_limited(text, params, max_rows=max_rows, timeout_s=timeout_s)
    timer = threading.Timer(timeout_s, con.interrupt)
    timer.daemon = True
    timer.start()
    try:
        con.execute(sql, params)
        columns = tuple(d[0] for d in con.description or ())
        rows = con.fetchmany(max_rows + 1) if columns else []
    except duckdb.InterruptException as exc:
        raise QueryTimeout(f"query interrupted after {timeout_s:g} s") from exc
    finally:
        timer.cancel()
    return QueryResult(
        columns=columns,
        rows=tuple(tuple(r) for r in rows[:max_rows]),
        truncated=len(rows) > max_rows,
    )


def check_user_sql(con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.Statement:
    """Prove ``sql`` is one read-only SELECT over the telemetry; return the statement to run.

    Raises :class:`ForbiddenQuery` naming what was refused. Runs only DuckDB's
    parser and a catalog lookup; the user's SQL is not executed.
    """
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise ForbiddenQuery(f"the SQL does not parse: {_first_line(exc)}") from exc
    if len(statements) != 1:
        raise ForbiddenQuery(f"one statement at a time, got {len(statements)}")
    statement = statements[0]
    if statement.type != duckdb.StatementType.SELECT:
        kind = statement.type.name
        raise ForbiddenQuery(f"only SELECT queries are allowed, not {kind}")
    if statement.named_parameters:
        raise ForbiddenQuery("parameters ($name or ?) are not supported here")
    row = con.execute("SELECT json_serialize_sql(?::VARCHAR)", [statement.query]).fetchone()
    tree: dict[str, Any] = json.loads(row[0]) if row else {"error": True}
    if tree.get("error") or len(tree.get("statements", ())) != 1:
        reason = tree.get("error_message", "it cannot be analysed")
        raise ForbiddenQuery(f"only plain SELECT queries are allowed ({reason})")
    database, relations = _catalog(con)
    _check_tree(tree["statements"][0], database, relations)
    return statement


def run_user_sql(
    con: Cursor,
    sql: str,
    *,
    max_rows: int = 10_000,
    timeout_s: float = 10.0,
) -> QueryResult:
    """Check a user's SQL with :func:`check_user_sql`, then run it with limits.

    ``con`` is a cursor (``writer.cursor()``) or an :func:`open_readonly`
    connection, used by the calling thread only. Raises :class:`ForbiddenQuery`
    (nothing ran), :class:`QueryTimeout`, or ``duckdb.Error`` for SQL errors
    (:class:`QueryFailed` from a :class:`Session`).
    """
    if not isinstance(con, duckdb.DuckDBPyConnection):
        return con.run_user_sql(sql, max_rows=max_rows, timeout_s=timeout_s)
    statement = check_user_sql(con, sql)
    return execute_limited(con, statement.query, max_rows=max_rows, timeout_s=timeout_s)


def _catalog(con: duckdb.DuckDBPyConnection) -> tuple[str, frozenset[str]]:
    """The database's name and the lowercase names of its tables and views."""
    rows = con.execute(
        "SELECT current_database(), lower(table_name) FROM duckdb_tables() "
        "WHERE database_name = current_database() AND NOT temporary "
        "UNION ALL SELECT current_database(), lower(view_name) FROM duckdb_views() "
        "WHERE database_name = current_database() AND NOT internal AND NOT temporary"
    ).fetchall()
    if rows:
        database = str(rows[0][0])
    else:
        current = con.execute("SELECT current_database()").fetchone()
        assert current is not None  # a SELECT without FROM yields one row
        database = str(current[0])
    return database.lower(), frozenset(str(r[1]) for r in rows)


def _nodes(tree: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in the serialized syntax tree, depth first."""
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _check_tree(tree: dict[str, Any], database: str, relations: frozenset[str]) -> None:
    nodes = list(_nodes(tree))
    # Names a CTE defines may be read like tables.
    ctes = {
        str(entry.get("key", "")).lower()
        for node in nodes
        if isinstance(node.get("cte_map"), dict)
        for entry in node["cte_map"].get("map", ())
        if isinstance(entry, dict)
    }
    for node in nodes:
        kind = node.get("type")
        if node.get("class") == "FUNCTION":
            name = str(node.get("function_name", "")).lower()
            if name in DENIED_FUNCTIONS or name.startswith(_DENIED_PREFIXES):
                raise ForbiddenQuery(f"function {name}() is not allowed")
        elif kind == "TABLE_FUNCTION":
            function = node.get("function") or {}
            name = str(function.get("function_name", "")).lower()
            if name not in ALLOWED_TABLE_FUNCTIONS:
                allowed = ", ".join(sorted(ALLOWED_TABLE_FUNCTIONS))
                raise ForbiddenQuery(f"table function {name}() is not allowed (allowed: {allowed})")
        elif kind == "BASE_TABLE":
            _check_table(node, database, relations, ctes)


def _check_table(
    node: dict[str, Any], database: str, relations: frozenset[str], ctes: set[str]
) -> None:
    name = str(node.get("table_name", "")).lower()
    schema = str(node.get("schema_name", "")).lower()
    catalog = str(node.get("catalog_name", "")).lower()
    # Another catalog could only be an attached file or the system catalog.
    if catalog not in ("", database) or schema not in ("", "main", database, *_OPEN_SCHEMAS):
        raise ForbiddenQuery(f"only the telemetry database can be read, not {catalog or schema}")
    if schema in _OPEN_SCHEMAS:
        return
    if name in relations or (not schema and name in ctes):
        return
    if any(ch in name for ch in "./\\:*?~"):
        # DuckDB would read a file named like this (a "replacement scan").
        raise ForbiddenQuery(f"reading files is not allowed ({name!r})")
    tables = ", ".join(sorted(relations))
    raise ForbiddenQuery(f"unknown table {name!r}; the telemetry has: {tables}")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
