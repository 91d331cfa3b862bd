"""The telemetry in a PostgreSQL database shared by replicas (``WLM_TELEMETRY_URL``).

The writer's batches go in with ``COPY`` into temp staging tables, then one
``INSERT ... ON CONFLICT DO NOTHING`` per table, rollups included, in one
transaction: a batch written twice (a replay after a lost answer) counts once,
because the rollups are fed only from the rows that were new (``RETURNING``).
The schema is created and migrated by wlm under an advisory lock (replicas may
start together) and recorded in ``schema_version`` with DuckDB's version numbers:
version 6 is DuckDB's version 6, created in one step.

Readers (pages, ``/api/sql``, ``wlm sql``, budgets) get a :class:`PostgresSession`:
one connection of a small pool, each query in its own ``READ ONLY`` transaction
with a ``statement_timeout``, rolled back afterwards. A user's SQL must be one
``SELECT``/``WITH``/``VALUES``/``TABLE`` statement (sent as a prepared statement,
so a second one cannot ride along), and is refused altogether when the role wlm
connects as is a superuser or may read files or run programs (docs/deploy.md has
the ``GRANT``s for a role that cannot).

The password in the URL is never logged: errors name :attr:`PostgresStore.name`,
the URL without it, and the settings register it with the redactor.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.adapt import Loader
from psycopg.pq import TransactionStatus

from wlm.config import redact_url_password
from wlm.shipped import shipped_dir
from wlm.telemetry import schema
from wlm.telemetry.query import (
    Cursor,
    ForbiddenQuery,
    QueryFailed,
    QueryResult,
    QueryTimeout,
    TelemetryUnavailable,
)

__all__ = ["MIGRATIONS", "PostgresSession", "PostgresStore", "setup_sql"]

_REQUESTS = ", ".join(schema.REQUEST_COLUMNS)
_CONVERSATIONS = ", ".join(schema.CONVERSATION_COLUMNS)
_ATTEMPTS = ", ".join(schema.ATTEMPT_COLUMNS)
_TIMESTAMPS = frozenset({"started_at", "ended_at"})
# Any value; one lock number for wlm's schema changes on this database.
_SCHEMA_LOCK = 0x776C6D5F736368  # "wlm_sch"


def _staged(columns: Sequence[str]) -> str:
    """The staged columns, timestamps cast back from TIMESTAMPTZ (the session is UTC)."""
    return ", ".join(f"{c}::TIMESTAMP" if c in _TIMESTAMPS else c for c in columns)


# DuckDB's version 6, in PostgreSQL: the same tables and columns in the same order,
# without DuckDB's 64-bit lookup keys (a primary key does that here, and makes
# replays idempotent), and the macros of the stored data's meaning as functions.
_V6 = schema.Migration(
    6,
    "the schema of DuckDB's version 6 at once: requests, conversations, attempt_rows, "
    "hourly rollups and their functions",
    (
        """
        CREATE TABLE requests (
            id VARCHAR PRIMARY KEY,
            started_at TIMESTAMP NOT NULL,
            ended_at TIMESTAMP,
            endpoint VARCHAR,
            model VARCHAR,
            provider VARCHAR,
            upstream_model VARCHAR,
            stream BOOLEAN,
            status VARCHAR,
            http_status INTEGER,
            error_type VARCHAR,
            ttft_ms DOUBLE PRECISION,
            latency_ms DOUBLE PRECISION,
            prompt_tokens BIGINT,
            completion_tokens BIGINT,
            total_tokens BIGINT,
            client VARCHAR,
            request_id VARCHAR,
            error_message VARCHAR,
            cached_tokens BIGINT,
            reasoning_tokens BIGINT,
            tokens_per_s DOUBLE PRECISION,
            cost_usd DOUBLE PRECISION,
            finish_reason VARCHAR,
            attempts INTEGER DEFAULT 1,
            bytes_in BIGINT,
            bytes_out BIGINT,
            local_prompt_n INTEGER,
            local_prompt_ms DOUBLE PRECISION,
            local_predicted_n INTEGER,
            local_predicted_ms DOUBLE PRECISION,
            local_cache_n INTEGER,
            error_code VARCHAR,
            upstream_endpoint VARCHAR,
            cache_write_tokens BIGINT,
            fallback_from VARCHAR
        )
        """,
        "CREATE INDEX requests_started_at ON requests (started_at)",
        "CREATE INDEX requests_request_id ON requests (request_id)",
        """
        CREATE TABLE conversations (
            request_id VARCHAR PRIMARY KEY,
            request_json VARCHAR,
            response_text VARCHAR,
            started_at TIMESTAMP,
            reasoning_text VARCHAR,
            tool_calls_json VARCHAR
        )
        """,
        "CREATE INDEX conversations_started_at ON conversations (started_at)",
        """
        CREATE TABLE attempt_rows (
            request_id VARCHAR NOT NULL,
            number INTEGER NOT NULL,
            provider VARCHAR,
            upstream_model VARCHAR,
            started_at TIMESTAMP NOT NULL,
            latency_ms DOUBLE PRECISION,
            http_status INTEGER,
            error_type VARCHAR,
            moved_on VARCHAR,
            PRIMARY KEY (request_id, number)
        )
        """,
        "CREATE INDEX attempt_rows_started_at ON attempt_rows (started_at)",
        f"""
        CREATE TABLE {schema.HOURLY_TABLE} (
            hour TIMESTAMP NOT NULL,
            provider VARCHAR,
            model VARCHAR,
            status VARCHAR,
            http_status INTEGER,
            error_type VARCHAR,
            requests BIGINT NOT NULL,
            prompt_tokens BIGINT,
            completion_tokens BIGINT,
            total_tokens BIGINT,
            cost_usd DOUBLE PRECISION,
            latency_ms_sum DOUBLE PRECISION,
            latency_n BIGINT,
            ttft_ms_sum DOUBLE PRECISION,
            ttft_n BIGINT,
            gen_tokens BIGINT,
            gen_ms DOUBLE PRECISION
        )
        """,
        f"CREATE INDEX requests_hourly_hour ON {schema.HOURLY_TABLE} (hour)",
        f"""
        CREATE TABLE {schema.HISTOGRAM_TABLE} (
            hour TIMESTAMP NOT NULL,
            provider VARCHAR,
            model VARCHAR,
            metric VARCHAR NOT NULL,
            bucket SMALLINT NOT NULL,
            n BIGINT NOT NULL
        )
        """,
        f"CREATE INDEX latency_hourly_hour ON {schema.HISTOGRAM_TABLE} (hour)",
        """
        CREATE FUNCTION wlm_bucket(x DOUBLE PRECISION) RETURNS SMALLINT
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        RETURN CAST(ceil(ln(greatest(x, 0.01)) / ln(1.05::DOUBLE PRECISION)) AS SMALLINT)
        """,
        """
        CREATE FUNCTION wlm_bucket_value(b DOUBLE PRECISION) RETURNS DOUBLE PRECISION
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        RETURN 2 * power(1.05::DOUBLE PRECISION, b) / 2.05
        """,
        """
        CREATE FUNCTION wlm_tokens_per_s(
            tokens_per_s DOUBLE PRECISION, completion_tokens BIGINT,
            latency_ms DOUBLE PRECISION, ttft_ms DOUBLE PRECISION
        ) RETURNS DOUBLE PRECISION
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        RETURN coalesce(tokens_per_s,
                        completion_tokens * 1000.0::DOUBLE PRECISION
                        / nullif(latency_ms - coalesce(ttft_ms, 0), 0))
        """,
        """
        CREATE FUNCTION wlm_window_start(hours DOUBLE PRECISION) RETURNS TIMESTAMP
        LANGUAGE sql STABLE PARALLEL SAFE
        RETURN date_trunc('hour', now() AT TIME ZONE 'UTC')
               - INTERVAL '1 hour' * (CAST(hours AS BIGINT) - 1)
        """,
    ),
)

# DuckDB's version 7: the local engines' queue wait.
_V7 = schema.Migration(
    7,
    "queue_ms: the wait in the local engines' queue",
    ("ALTER TABLE requests ADD COLUMN queue_ms DOUBLE PRECISION",),
)

# DuckDB's version 8: the box's resources over time.
_V8 = schema.Migration(
    8,
    "box_samples: CPU, memory, GPUs and local engines over time",
    (
        """
        CREATE TABLE box_samples (
            sampled_at TIMESTAMP NOT NULL,
            host VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            name VARCHAR,
            gpu_index INTEGER,
            util_percent DOUBLE PRECISION,
            mem_used_bytes BIGINT,
            mem_total_bytes BIGINT,
            slots_busy INTEGER
        )
        """,
        "CREATE INDEX box_samples_sampled_at ON box_samples (sampled_at)",
    ),
)

# DuckDB's version 9: local engine crashes and crash-loop holds.
_V9 = schema.Migration(
    9,
    "engine_events: local engine crashes and crash-loop holds",
    (
        """
        CREATE TABLE engine_events (
            happened_at TIMESTAMP NOT NULL,
            host VARCHAR NOT NULL,
            model VARCHAR NOT NULL,
            event VARCHAR NOT NULL,
            detail VARCHAR
        )
        """,
    ),
)

MIGRATIONS: tuple[schema.Migration, ...] = (_V6, _V7, _V8, _V9)
assert MIGRATIONS[-1].version == schema.SCHEMA_VERSION, "migrate PostgreSQL along with DuckDB"

_GENERATING = "completion_tokens IS NOT NULL AND latency_ms > coalesce(ttft_ms, 0)"
_NEW_ROWS = "_wlm_new"
_ROLLUPS = (
    f"""
    INSERT INTO {schema.HOURLY_TABLE}
    SELECT date_trunc('hour', started_at), provider, model, status, http_status, error_type,
           count(*),
           sum(prompt_tokens), sum(completion_tokens), sum(total_tokens), sum(cost_usd),
           sum(latency_ms), count(latency_ms), sum(ttft_ms), count(ttft_ms),
           sum(completion_tokens) FILTER (WHERE {_GENERATING}),
           sum(latency_ms - coalesce(ttft_ms, 0)) FILTER (WHERE {_GENERATING})
    FROM {_NEW_ROWS}
    GROUP BY 1, 2, 3, 4, 5, 6
    """,
    f"""
    INSERT INTO {schema.HISTOGRAM_TABLE}
    SELECT date_trunc('hour', started_at), provider, model, m.metric, wlm_bucket(m.value),
           count(*)
    FROM {_NEW_ROWS},
         LATERAL (VALUES ('latency_ms', latency_ms), ('ttft_ms', ttft_ms),
                         ('tokens_per_s', wlm_tokens_per_s(tokens_per_s, completion_tokens,
                                                           latency_ms, ttft_ms)))
             AS m(metric, value)
    WHERE status = 'ok' AND m.value IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5
    """,
)
_STAGING = (
    f"CREATE TEMP TABLE IF NOT EXISTS {schema.REQUEST_STAGING} (LIKE requests) "
    "ON COMMIT DELETE ROWS",
    f"ALTER TABLE {schema.REQUEST_STAGING} ALTER started_at TYPE TIMESTAMPTZ, "
    "ALTER ended_at TYPE TIMESTAMPTZ",
    f"CREATE TEMP TABLE IF NOT EXISTS {_NEW_ROWS} (LIKE requests) ON COMMIT DELETE ROWS",
    f"CREATE TEMP TABLE IF NOT EXISTS {schema.CONVERSATION_STAGING} (LIKE conversations) "
    "ON COMMIT DELETE ROWS",
    f"ALTER TABLE {schema.CONVERSATION_STAGING} ALTER started_at TYPE TIMESTAMPTZ",
    f"CREATE TEMP TABLE IF NOT EXISTS {schema.ATTEMPT_STAGING} (LIKE attempt_rows) "
    "ON COMMIT DELETE ROWS",
    f"ALTER TABLE {schema.ATTEMPT_STAGING} ALTER started_at TYPE TIMESTAMPTZ",
)
_MOVE_REQUESTS = (
    f"WITH ins AS (INSERT INTO requests ({_REQUESTS}) "
    f"SELECT {_staged(schema.REQUEST_COLUMNS)} FROM {schema.REQUEST_STAGING} "
    f"ON CONFLICT (id) DO NOTHING RETURNING *) INSERT INTO {_NEW_ROWS} SELECT * FROM ins"
)
_MOVE_CONVERSATIONS = (
    f"INSERT INTO conversations ({_CONVERSATIONS}) "
    f"SELECT {_staged(schema.CONVERSATION_COLUMNS)} FROM {schema.CONVERSATION_STAGING} "
    "ON CONFLICT (request_id) DO NOTHING"
)
_MOVE_ATTEMPTS = (
    f"INSERT INTO attempt_rows ({_ATTEMPTS}) "
    f"SELECT {_staged(schema.ATTEMPT_COLUMNS)} FROM {schema.ATTEMPT_STAGING} "
    "ON CONFLICT (request_id, number) DO NOTHING"
)
_HOURLY_SUMS = ", ".join(f"sum({c}) AS {c}" for c in schema.HOURLY_SUMS)
# Replicas append partial rollup rows concurrently: merging takes a lock that keeps
# their inserts out meanwhile (reads go on), so no row is deleted unmerged.
_LOCK_ROLLUPS = (
    f"LOCK TABLE {schema.HOURLY_TABLE}, {schema.HISTOGRAM_TABLE} IN SHARE ROW EXCLUSIVE MODE"
)
_COMPACT = (
    _LOCK_ROLLUPS,
    f"CREATE TEMP TABLE _wlm_compact_h ON COMMIT DROP AS SELECT {schema.HOURLY_KEY}, {_HOURLY_SUMS} "
    f"FROM {schema.HOURLY_TABLE} WHERE hour >= %(since)s GROUP BY 1, 2, 3, 4, 5, 6",
    f"DELETE FROM {schema.HOURLY_TABLE} WHERE hour >= %(since)s",
    f"INSERT INTO {schema.HOURLY_TABLE} SELECT * FROM _wlm_compact_h ORDER BY hour",
    "CREATE TEMP TABLE _wlm_compact_l ON COMMIT DROP AS "
    "SELECT hour, provider, model, metric, bucket, sum(n) AS n "
    f"FROM {schema.HISTOGRAM_TABLE} WHERE hour >= %(since)s GROUP BY 1, 2, 3, 4, 5",
    f"DELETE FROM {schema.HISTOGRAM_TABLE} WHERE hour >= %(since)s",
    f"INSERT INTO {schema.HISTOGRAM_TABLE} SELECT * FROM _wlm_compact_l ORDER BY hour",
)
_COARSEN = (
    _LOCK_ROLLUPS,
    "CREATE TEMP TABLE _wlm_coarse ON COMMIT DROP AS "
    "SELECT date_trunc('day', hour) AS hour, provider, model, metric, bucket, sum(n) AS n "
    f"FROM {schema.HISTOGRAM_TABLE} WHERE hour < %(before)s GROUP BY 1, 2, 3, 4, 5",
    f"DELETE FROM {schema.HISTOGRAM_TABLE} WHERE hour < %(before)s",
    f"INSERT INTO {schema.HISTOGRAM_TABLE} SELECT * FROM _wlm_coarse ORDER BY hour",
)
_RETENTION = (
    "DELETE FROM requests WHERE started_at < %(cutoff)s",
    "DELETE FROM conversations WHERE started_at < %(cutoff)s",
    "DELETE FROM attempt_rows WHERE started_at < %(cutoff)s",
    "DELETE FROM box_samples WHERE sampled_at < %(cutoff)s",
    "DELETE FROM engine_events WHERE happened_at < %(cutoff)s",
    f"DELETE FROM {schema.HOURLY_TABLE} WHERE hour < date_trunc('hour', %(cutoff)s::TIMESTAMP)",
    f"DELETE FROM {schema.HISTOGRAM_TABLE} WHERE hour < date_trunc('hour', %(cutoff)s::TIMESTAMP)",
)
# The role may read files, write them or run programs: user SQL would reach the server.
_PRIVILEGED = """
SELECT r.rolsuper
       OR pg_has_role(current_user, 'pg_read_server_files', 'USAGE')
       OR pg_has_role(current_user, 'pg_write_server_files', 'USAGE')
       OR pg_has_role(current_user, 'pg_execute_server_program', 'USAGE')
FROM pg_roles AS r WHERE r.rolname = current_user
"""
_USER_STATEMENTS = frozenset({"select", "with", "values", "table"})
_COMMENTS = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.DOTALL)
_DUCKDB_PARAM = re.compile(r"\$([a-z_][a-z0-9_]*)")
_CONNECT_TIMEOUT_S = 5
_TCP_USER_TIMEOUT_MS = 30_000
# The writer's open (schema lock, migration): bounded, so a lock held elsewhere (a
# replica stuck mid-migration) fails the open, which is retried, instead of hanging it.
_SCHEMA_LOCK_TIMEOUT_S = 30
_MIGRATION_TIMEOUT_S = 600


def setup_sql(directory: Path | None = None) -> str:
    """The views and query helpers of ``analytics/_postgres.pgsql`` (DuckDB: ``_*.sql``)."""
    return ((directory or shipped_dir("analytics")) / "_postgres.pgsql").read_text("utf-8")


class _NumberLoader(Loader):
    """``numeric`` as int when whole, else float: what DuckDB hands back for sums."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        if text.lstrip("-").isdigit():
            return int(text)
        return float(Decimal(text))


class PostgresStore:
    """The database at ``url``; ``read_connections`` bounds the readers' idle pool."""

    def __init__(self, url: str, *, read_connections: int = 2) -> None:
        self.url = url
        self._name = redact_url_password(url)
        self._max_idle = max(1, read_connections)
        self._con: psycopg.Connection[Any] | None = None
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._open = False
        self.user_sql_refusal: str | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def data_errors(self) -> tuple[type[BaseException], ...]:
        return (psycopg.DataError, TypeError, ValueError, OverflowError)

    # -- the writer -------------------------------------------------------------------

    def open(self) -> int:
        self.close()
        con = self._connect(read_only=False)
        try:
            with con.transaction():
                con.execute(f"SET LOCAL lock_timeout = {_SCHEMA_LOCK_TIMEOUT_S * 1000}")
                con.execute(f"SET LOCAL statement_timeout = {_MIGRATION_TIMEOUT_S * 1000}")
                con.execute("SELECT pg_advisory_xact_lock(%s)", [_SCHEMA_LOCK])
                before = _migrate(con)
                con.execute(setup_sql())
            for statement in _STAGING:
                con.execute(statement)
            con.commit()
            row = con.execute(_PRIVILEGED).fetchone()
            con.commit()
        except BaseException:
            con.close()
            raise
        self.user_sql_refusal = _refusal(con, row)
        self._con = con
        self._open = True
        return before

    def open_readers(self) -> None:
        """Readers only (``wlm sql`` without a server): no writer, no migration. Raises
        :class:`TelemetryUnavailable` when the database cannot be reached."""
        self.close()
        try:
            con = self._connect(read_only=True)
            row = con.execute(_PRIVILEGED).fetchone()
        except psycopg.Error as exc:
            raise TelemetryUnavailable(f"cannot reach {self._name}: {_first_line(exc)}") from None
        self.user_sql_refusal = _refusal(con, row)
        self._idle.append(con)
        self._open = True

    def write_batch(
        self,
        requests: Sequence[tuple[Any, ...]],
        conversations: Sequence[tuple[Any, ...]],
        attempts: Sequence[tuple[Any, ...]],
    ) -> None:
        con = self._con
        assert con is not None
        with con.transaction(), con.cursor() as cur:
            _copy(cur, schema.REQUEST_STAGING, schema.REQUEST_COLUMNS, requests)
            cur.execute(_MOVE_REQUESTS)
            for statement in _ROLLUPS:
                cur.execute(statement)
            if conversations:
                _copy(cur, schema.CONVERSATION_STAGING, schema.CONVERSATION_COLUMNS, conversations)
                cur.execute(_MOVE_CONVERSATIONS)
            if attempts:
                _copy(cur, schema.ATTEMPT_STAGING, schema.ATTEMPT_COLUMNS, attempts)
                cur.execute(_MOVE_ATTEMPTS)

    def write_box_samples(self, rows: Sequence[tuple[Any, ...]]) -> None:
        con = self._con
        assert con is not None
        with con.transaction(), con.cursor() as cur:
            _copy(cur, "box_samples", schema.BOX_COLUMNS, rows)

    def write_engine_events(self, rows: Sequence[tuple[Any, ...]]) -> None:
        con = self._con
        assert con is not None
        with con.transaction(), con.cursor() as cur:
            _copy(cur, "engine_events", schema.EVENT_COLUMNS, rows)

    def housekeeping(self, retention_days: int | None, now: dt.datetime) -> None:
        con = self._con
        assert con is not None
        if retention_days is not None:
            cutoff = now - dt.timedelta(days=retention_days)
            _run_in_transaction(con, _RETENTION, {"cutoff": cutoff})
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        before = day - dt.timedelta(days=schema.HISTOGRAM_HOURLY_DAYS)
        _run_in_transaction(con, _COARSEN, {"before": before})

    def compact(self, since: dt.datetime) -> None:
        assert self._con is not None
        _run_in_transaction(self._con, _COMPACT, {"since": since})

    # -- readers ----------------------------------------------------------------------

    def reader(self) -> Cursor:
        if not self._open:
            raise TelemetryUnavailable(f"telemetry is not open ({self._name})")
        with self._lock:
            con = self._idle.pop() if self._idle else None
        return PostgresSession(con if con is not None else self.connect_reader(), self)

    def connect_reader(self) -> psycopg.Connection[Any]:
        """A new reader connection; :class:`TelemetryUnavailable` when unreachable."""
        try:
            return self._connect(read_only=True)
        except psycopg.Error as exc:
            raise TelemetryUnavailable(f"cannot reach {self._name}: {_first_line(exc)}") from None

    def release(self, reader: Cursor) -> None:
        if not isinstance(reader, PostgresSession):
            return
        con = reader.con
        usable = (
            self._open and not con.closed and con.info.transaction_status == TransactionStatus.IDLE
        )
        with self._lock:
            if usable and len(self._idle) < self._max_idle:
                self._idle.append(con)
                return
        con.close()

    def close(self) -> None:
        self._open = False
        with self._lock:
            idle, self._idle = self._idle, []
        con, self._con = self._con, None
        for c in (*idle, con):
            if c is not None:
                try:
                    c.close()
                except psycopg.Error:
                    pass

    def _connect(self, *, read_only: bool) -> psycopg.Connection[Any]:
        options = "-c TimeZone=UTC"
        if read_only:
            options += " -c default_transaction_read_only=on"
        con = psycopg.connect(
            self.url,
            connect_timeout=_CONNECT_TIMEOUT_S,
            # A server that froze (or a network that drops packets) must not block a
            # read or a write for ever: TCP keepalives notice an idle peer gone, and
            # tcp_user_timeout a peer that stopped acknowledging what was sent.
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
            tcp_user_timeout=_TCP_USER_TIMEOUT_MS,
            options=options,
            application_name="wlm-reader" if read_only else "wlm-writer",
            autocommit=read_only,
        )
        if read_only:
            con.adapters.register_loader("numeric", _NumberLoader)
        return con


class PostgresSession:
    """One reader connection, lent to one thread by :meth:`PostgresStore.reader`."""

    def __init__(self, con: psycopg.Connection[Any], store: PostgresStore) -> None:
        self.con = con
        self._store = store

    def execute_limited(
        self,
        sql: str,
        params: Sequence[Any] | dict[str, Any] | None,
        *,
        max_rows: int,
        timeout_s: float,
        variables: dict[str, Any] | None = None,
    ) -> QueryResult:
        """wlm's own SQL (``$name`` parameters as DuckDB writes them), with ``variables``
        for ``getvariable`` (analytics/_postgres.pgsql)."""
        if isinstance(params, dict):
            sql = _DUCKDB_PARAM.sub(r"%(\1)s", sql)
        with self._transaction(timeout_s) as cur:
            for key, value in (variables or {}).items():
                cur.execute("SELECT set_config(%s, %s, true)", [f"wlm.{key}", _variable(value)])
            cur.execute(sql, params)
            return _fetch(cur, max_rows)

    def run_user_sql(self, sql: str, *, max_rows: int, timeout_s: float) -> QueryResult:
        refusal = self._store.user_sql_refusal
        if refusal:
            raise ForbiddenQuery(refusal)
        first = _COMMENTS.sub("", sql, count=1).split(None, 1)
        keyword = first[0].lower().rstrip(";(") if first else ""
        if keyword not in _USER_STATEMENTS:
            kind = keyword.upper() or "an empty query"
            raise ForbiddenQuery(f"only SELECT queries are allowed, not {kind}")
        with self._transaction(timeout_s, user=True) as cur:
            # Prepared: PostgreSQL refuses a second statement in it ("COMMIT; DELETE ...").
            cur.execute(sql, prepare=True)
            return _fetch(cur, max_rows)

    def _begin(self) -> None:
        """Start the read-only transaction; a pooled connection the server dropped (a
        restart) is replaced once, since nothing has run on it yet."""
        try:
            self.con.execute("BEGIN TRANSACTION READ ONLY")
        except psycopg.OperationalError:
            self.con.close()
            self.con = self._store.connect_reader()
            self.con.execute("BEGIN TRANSACTION READ ONLY")

    @contextmanager
    def _transaction(
        self, timeout_s: float, *, user: bool = False
    ) -> Iterator[psycopg.Cursor[Any]]:
        try:
            self._begin()
            con = self.con
            with con.cursor() as cur:
                try:
                    cur.execute(f"SET LOCAL statement_timeout = {max(1, int(timeout_s * 1000))}")
                    yield cur
                finally:
                    if not con.closed:
                        con.execute("ROLLBACK")
                        if user:
                            # A session-level advisory lock (pg_advisory_lock) outlives
                            # the ROLLBACK: one on wlm's schema lock, pooled, would hang
                            # every replica's writer at its next open.
                            con.execute("SELECT pg_advisory_unlock_all()")
        except pg_errors.QueryCanceled as exc:
            raise QueryTimeout(f"query interrupted after {timeout_s:g} s") from exc
        except (pg_errors.InsufficientPrivilege, pg_errors.ReadOnlySqlTransaction) as exc:
            raise ForbiddenQuery(f"refused by PostgreSQL: {_first_line(exc)}") from None
        except psycopg.OperationalError as exc:
            self.con.close()
            raise TelemetryUnavailable(
                f"{self._store.name} is unreachable: {_first_line(exc)}"
            ) from None
        except psycopg.Error as exc:
            raise QueryFailed(_first_line(exc)) from None


def _refusal(con: psycopg.Connection[Any], privileged: tuple[Any, ...] | None) -> str | None:
    """Why user SQL may not run as this role, or None."""
    if privileged and privileged[0]:
        return (
            f"wlm sql is off: the role {con.info.user!r} is a superuser or may read files or "
            "run programs; connect as a role without them (docs/deploy.md)"
        )
    return None


def _fetch(cur: psycopg.Cursor[Any], max_rows: int) -> QueryResult:
    columns = tuple(d.name for d in cur.description or ())
    rows = cur.fetchmany(max_rows + 1) if columns else []
    return QueryResult(
        columns=columns,
        rows=tuple(tuple(r) for r in rows[:max_rows]),
        truncated=len(rows) > max_rows,
    )


def _variable(value: Any) -> str:
    """A named query's variable as the text ``getvariable`` returns (and SQL casts back)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        stamp: dt.datetime = value
        if stamp.tzinfo is not None:
            stamp = stamp.astimezone(dt.UTC).replace(tzinfo=None)
        return stamp.isoformat(sep=" ")
    return str(value)


def _copy(
    cur: psycopg.Cursor[Any], table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(_no_nul(row))


def _no_nul(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """PostgreSQL text cannot hold NUL (DuckDB's can): store U+FFFD in its place."""
    for value in row:
        if type(value) is str and "\x00" in value:
            return tuple(
                v.replace("\x00", "\ufffd") if type(v) is str and "\x00" in v else v for v in row
            )
    return row


def _run_in_transaction(
    con: psycopg.Connection[Any], statements: Sequence[str], params: dict[str, Any]
) -> None:
    with con.transaction(), con.cursor() as cur:
        for statement in statements:
            used = {k: v for k, v in params.items() if f"%({k})s" in statement}
            cur.execute(statement, used or None)


def _current_version(con: psycopg.Connection[Any]) -> int:
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _migrate(con: psycopg.Connection[Any]) -> int:
    """Bring the database up to :data:`schema.SCHEMA_VERSION` (in the caller's transaction,
    under its advisory lock); returns the version it was at."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        "version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL, description VARCHAR)"
    )
    before = _current_version(con)
    if before > schema.SCHEMA_VERSION:
        raise RuntimeError(
            f"telemetry database is at schema version {before}, this wlm knows up to "
            f"{schema.SCHEMA_VERSION}; upgrade wlm or point WLM_TELEMETRY_URL elsewhere"
        )
    for migration in MIGRATIONS:
        if migration.version <= before:
            continue
        for statement in migration.statements:
            con.execute(statement)
        con.execute(
            "INSERT INTO schema_version VALUES (%s, now() AT TIME ZONE 'UTC', %s)",
            [migration.version, migration.description],
        )
    return before


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
