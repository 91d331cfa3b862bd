"""The DuckDB schema of the telemetry file, its migrations, and the SQL that maintains it.

A file records the migrations applied to it in ``schema_version``. Opening a
file runs every migration newer than its version, in order, each in its own
transaction, so a new wlm upgrades an old file in place and an interrupted
upgrade leaves the file at the last complete version. Migrations are history:
never edit one that has shipped, append a new one.

Timestamps are stored as ``TIMESTAMP`` holding UTC (no time zone), so that
bucketing by minute or hour means the same thing in every client; compare them
with ``now() AT TIME ZONE 'UTC'``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import attrs
import duckdb
from attrs import frozen

from wlm.telemetry.records import (
    AttemptRecord,
    BoxSampleRecord,
    ConversationRecord,
    EngineEventRecord,
    RequestRecord,
)

__all__ = [
    "ATTEMPT_COLUMNS",
    "ATTEMPT_STAGING",
    "BOX_COLUMNS",
    "CONVERSATION_COLUMNS",
    "CONVERSATION_STAGING",
    "EVENT_COLUMNS",
    "HISTOGRAM_HOURLY_DAYS",
    "HISTOGRAM_TABLE",
    "HOURLY_KEY",
    "HOURLY_SUMS",
    "HOURLY_TABLE",
    "MIGRATIONS",
    "REQUEST_COLUMNS",
    "REQUEST_STAGING",
    "SCHEMA_VERSION",
    "Migration",
    "coarsen_statements",
    "compact_statements",
    "current_version",
    "housekeeping",
    "migrate",
    "move_statements",
    "prepare_batch_writes",
    "retention_statements",
    "rollup_statements",
    "run_in_transaction",
    "staging_statements",
    "write_batch",
    "write_box_samples",
    "write_engine_events",
]


@frozen
class Migration:
    """One step of the schema's history: the statements that take version-1 to version."""

    version: int
    description: str
    statements: tuple[str, ...]


# Version 1: the columns the user-facing contract names (docs/telemetry.md).
_V1 = Migration(
    1,
    "requests and conversations, contract columns",
    (
        """
        CREATE TABLE requests (
            id VARCHAR NOT NULL,
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
            ttft_ms DOUBLE,
            latency_ms DOUBLE,
            prompt_tokens BIGINT,
            completion_tokens BIGINT,
            total_tokens BIGINT
        )
        """,
        """
        CREATE TABLE conversations (
            request_id VARCHAR NOT NULL,
            request_json VARCHAR,
            response_text VARCHAR
        )
        """,
    ),
)

# Version 2: everything else a RequestRecord carries, and started_at on
# conversations so retention can prune them without a join.
_V2 = Migration(
    2,
    "full RequestRecord columns; conversations.started_at, reasoning, tool calls",
    (
        "ALTER TABLE requests ADD COLUMN client VARCHAR",
        "ALTER TABLE requests ADD COLUMN request_id VARCHAR",
        "ALTER TABLE requests ADD COLUMN error_message VARCHAR",
        "ALTER TABLE requests ADD COLUMN cached_tokens BIGINT",
        "ALTER TABLE requests ADD COLUMN reasoning_tokens BIGINT",
        "ALTER TABLE requests ADD COLUMN tokens_per_s DOUBLE",
        "ALTER TABLE requests ADD COLUMN cost_usd DOUBLE",
        "ALTER TABLE requests ADD COLUMN finish_reason VARCHAR",
        "ALTER TABLE requests ADD COLUMN attempts INTEGER DEFAULT 1",
        "ALTER TABLE requests ADD COLUMN bytes_in BIGINT",
        "ALTER TABLE requests ADD COLUMN bytes_out BIGINT",
        "ALTER TABLE requests ADD COLUMN local_prompt_n INTEGER",
        "ALTER TABLE requests ADD COLUMN local_prompt_ms DOUBLE",
        "ALTER TABLE requests ADD COLUMN local_predicted_n INTEGER",
        "ALTER TABLE requests ADD COLUMN local_predicted_ms DOUBLE",
        "ALTER TABLE requests ADD COLUMN local_cache_n INTEGER",
        "ALTER TABLE conversations ADD COLUMN started_at TIMESTAMP",
        "ALTER TABLE conversations ADD COLUMN reasoning_text VARCHAR",
        "ALTER TABLE conversations ADD COLUMN tool_calls_json VARCHAR",
        # Old rows get their request's start so retention treats them alike.
        """
        UPDATE conversations SET started_at = r.started_at
        FROM requests r WHERE r.id = conversations.request_id
        """,
    ),
)

HOURLY_TABLE = "requests_hourly"
HISTOGRAM_TABLE = "latency_hourly"
HOURLY_KEY = "hour, provider, model, status, http_status, error_type"
HOURLY_SUMS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_usd",
    "latency_ms_sum",
    "latency_n",
    "ttft_ms_sum",
    "ttft_n",
    "gen_tokens",
    "gen_ms",
)


def _hourly_select(source: str) -> str:
    """Per hour and key, the exact sums of the rows of ``source`` (a requests-shaped table)."""
    generating = "completion_tokens IS NOT NULL AND latency_ms > coalesce(ttft_ms, 0)"
    return f"""
        SELECT date_trunc('hour', started_at) AS hour, provider, model, status,
               http_status, error_type,
               count(*) AS requests,
               sum(prompt_tokens), sum(completion_tokens), sum(total_tokens), sum(cost_usd),
               sum(latency_ms), count(latency_ms), sum(ttft_ms), count(ttft_ms),
               sum(completion_tokens) FILTER (WHERE {generating}),
               sum(latency_ms - coalesce(ttft_ms, 0)) FILTER (WHERE {generating})
        FROM {source}
        GROUP BY ALL
    """


def _histogram_select(source: str) -> str:
    """Per hour, provider and model, histograms of latency, TTFT and speed of ok rows."""
    speed = "wlm_tokens_per_s(tokens_per_s, completion_tokens, latency_ms, ttft_ms)"
    return f"""
        SELECT date_trunc('hour', started_at) AS hour, provider, model,
               m.metric, wlm_bucket(m.value) AS bucket, count(*) AS n
        FROM {source},
             LATERAL (VALUES ('latency_ms', latency_ms), ('ttft_ms', ttft_ms),
                             ('tokens_per_s', {speed})) AS m(metric, value)
        WHERE status = 'ok' AND m.value IS NOT NULL
        GROUP BY ALL
    """


def rollup_statements(source: str) -> tuple[str, str]:
    """The two INSERTs that add the rows of ``source`` to the hourly rollups.

    The writer runs them on each batch (``source`` is its staging table), which
    appends partial sums; :func:`compact_statements` merges them later.
    """
    return (
        f"INSERT INTO {HOURLY_TABLE} {_hourly_select(source)}",
        f"INSERT INTO {HISTOGRAM_TABLE} {_histogram_select(source)}",
    )


REQUEST_STAGING = "_wlm_batch"
CONVERSATION_STAGING = "_wlm_batch_conversations"
ATTEMPT_STAGING = "_wlm_batch_attempts"
_STAGED_ROWS = "_wlm_batch_rows"


def staging_statements() -> tuple[str, ...]:
    """Temp tables (private to the writer's connection) its appender fills, a batch at a time.

    Timestamps are staged as TIMESTAMPTZ: DuckDB converts aware datetimes to it
    about three times faster than to TIMESTAMP. The move casts them back, which
    yields UTC because the database's TimeZone is UTC (``query.lock_down``).
    """
    return (
        f"CREATE OR REPLACE TEMP TABLE {REQUEST_STAGING} AS SELECT * EXCLUDE (id_key) "
        "REPLACE (started_at::TIMESTAMPTZ AS started_at, ended_at::TIMESTAMPTZ AS ended_at) "
        "FROM requests LIMIT 0",
        f"CREATE OR REPLACE TEMP VIEW {_STAGED_ROWS} AS SELECT * "
        "REPLACE (started_at::TIMESTAMP AS started_at, ended_at::TIMESTAMP AS ended_at), "
        f"md5_number_lower(id) AS id_key FROM {REQUEST_STAGING}",
        f"CREATE OR REPLACE TEMP TABLE {CONVERSATION_STAGING} AS SELECT * EXCLUDE (request_key) "
        "REPLACE (started_at::TIMESTAMPTZ AS started_at) FROM conversations LIMIT 0",
        f"CREATE OR REPLACE TEMP TABLE {ATTEMPT_STAGING} AS SELECT * EXCLUDE (request_key) "
        "REPLACE (started_at::TIMESTAMPTZ AS started_at) FROM attempt_rows LIMIT 0",
    )


def move_statements(*, conversations: bool, attempts: bool = False) -> tuple[str, ...]:
    """Move a staged batch into the tables and the rollups, then empty the staging tables.

    The caller runs them in one transaction. ``conversations``, ``attempts``: whether
    those staging tables hold rows.
    """
    statements = [
        f"INSERT INTO requests BY NAME SELECT * FROM {_STAGED_ROWS}",
        *rollup_statements(_STAGED_ROWS),
        f"DELETE FROM {REQUEST_STAGING}",
    ]
    if conversations:
        statements += [
            "INSERT INTO conversations BY NAME "
            "SELECT * REPLACE (started_at::TIMESTAMP AS started_at), "
            f"md5_number_lower(request_id) AS request_key FROM {CONVERSATION_STAGING}",
            f"DELETE FROM {CONVERSATION_STAGING}",
        ]
    if attempts:
        statements += [
            "INSERT INTO attempt_rows BY NAME "
            "SELECT * REPLACE (started_at::TIMESTAMP AS started_at), "
            f"md5_number_lower(request_id) AS request_key FROM {ATTEMPT_STAGING}",
            f"DELETE FROM {ATTEMPT_STAGING}",
        ]
    return tuple(statements)


# Each move statement's prepared name (prepare_batch_writes); every batch runs a subset.
_MOVE_NAMES = {
    statement: f"wlm_move_{i}"
    for i, statement in enumerate(move_statements(conversations=True, attempts=True))
}
# What write_batch runs, by (conversations, attempts): the SQL is not rebuilt a batch.
_MOVE_EXECUTES = {
    (conversations, attempts): tuple(
        f"EXECUTE {_MOVE_NAMES[statement]}"
        for statement in move_statements(conversations=conversations, attempts=attempts)
    )
    for conversations in (False, True)
    for attempts in (False, True)
}


def compact_statements() -> tuple[str, ...]:
    """Merge the partial rollup rows of hours >= ``$since`` into one row per key."""
    sums = ", ".join(f"sum({c}) AS {c}" for c in HOURLY_SUMS)
    return (
        f"CREATE OR REPLACE TEMP TABLE _wlm_compact_h AS SELECT {HOURLY_KEY}, {sums} "
        f"FROM {HOURLY_TABLE} WHERE hour >= $since GROUP BY ALL",
        f"DELETE FROM {HOURLY_TABLE} WHERE hour >= $since",
        f"INSERT INTO {HOURLY_TABLE} SELECT * FROM _wlm_compact_h ORDER BY hour",
        "CREATE OR REPLACE TEMP TABLE _wlm_compact_l AS "
        "SELECT hour, provider, model, metric, bucket, sum(n) AS n "
        f"FROM {HISTOGRAM_TABLE} WHERE hour >= $since GROUP BY ALL",
        f"DELETE FROM {HISTOGRAM_TABLE} WHERE hour >= $since",
        f"INSERT INTO {HISTOGRAM_TABLE} SELECT * FROM _wlm_compact_l ORDER BY hour",
        "DROP TABLE _wlm_compact_h",
        "DROP TABLE _wlm_compact_l",
    )


HISTOGRAM_HOURLY_DAYS = 2


def coarsen_statements() -> tuple[str, ...]:
    """Merge the histogram rows of hours before ``$before`` into one row per day.

    Percentiles need hour resolution only for recent windows; per day, 30 days
    of histograms are ~24 times fewer rows to read. Counts and sums
    (``requests_hourly``) stay hourly. ``$before`` is a day boundary, at least
    :data:`HISTOGRAM_HOURLY_DAYS` days ago. Merging again is harmless.
    """
    return (
        "CREATE OR REPLACE TEMP TABLE _wlm_coarse AS "
        "SELECT date_trunc('day', hour) AS hour, provider, model, metric, bucket, sum(n) AS n "
        f"FROM {HISTOGRAM_TABLE} WHERE hour < $before GROUP BY ALL",
        f"DELETE FROM {HISTOGRAM_TABLE} WHERE hour < $before",
        f"INSERT INTO {HISTOGRAM_TABLE} SELECT * FROM _wlm_coarse ORDER BY hour",
        "DROP TABLE _wlm_coarse",
    )


def retention_statements() -> tuple[str, ...]:
    """Delete everything that started before ``$cutoff`` (a UTC TIMESTAMP)."""
    return (
        "DELETE FROM requests WHERE started_at < $cutoff",
        "DELETE FROM conversations WHERE started_at < $cutoff",
        "DELETE FROM attempt_rows WHERE started_at < $cutoff",
        "DELETE FROM box_samples WHERE sampled_at < $cutoff",
        "DELETE FROM engine_events WHERE happened_at < $cutoff",
        f"DELETE FROM {HOURLY_TABLE} WHERE hour < date_trunc('hour', $cutoff)",
        f"DELETE FROM {HISTOGRAM_TABLE} WHERE hour < date_trunc('hour', $cutoff)",
    )


# Version 3: lookup keys and hourly rollups.
# A request id is random text; finding one among 10M by scanning the id column
# takes a second, scanning a 64-bit key derived from it takes milliseconds. The
# key is the low half of the id's MD5 (stable across DuckDB versions, unlike
# hash()); queries filter on both: ``id_key = md5_number_lower($id) AND id = $id``.
# The hourly rollups are kept by the writer with every batch, so pages over
# long ranges read thousands of rows instead of millions. Counts and sums are
# exact; percentiles come from log-spaced histograms (bucket b holds values in
# (1.05^(b-1), 1.05^b], read back as 2*1.05^b/2.05: within 2.5% of the truth).
# The macros are part of the stored data's meaning, hence of the schema.
_V3 = Migration(
    3,
    "lookup keys; hourly rollups requests_hourly (exact sums) and latency_hourly (histograms)",
    (
        "ALTER TABLE requests ADD COLUMN id_key UBIGINT",
        "UPDATE requests SET id_key = md5_number_lower(id)",
        "ALTER TABLE conversations ADD COLUMN request_key UBIGINT",
        "UPDATE conversations SET request_key = md5_number_lower(request_id)",
        "CREATE MACRO wlm_bucket(x) AS CAST(ceil(ln(greatest(x, 0.01)) / ln(1.05)) AS SMALLINT)",
        "CREATE MACRO wlm_bucket_value(b) AS 2 * pow(1.05, b) / 2.05",
        # Tokens per second of one request: the upstream's figure, else
        # completion tokens over the time after the first token.
        """
        CREATE MACRO wlm_tokens_per_s(tokens_per_s, completion_tokens, latency_ms, ttft_ms) AS
            coalesce(tokens_per_s,
                     completion_tokens * 1000.0 / nullif(latency_ms - coalesce(ttft_ms, 0), 0))
        """,
        # Start of a window of `hours` whole clock hours ending with the current one.
        """
        CREATE MACRO wlm_window_start(hours) AS
            date_trunc('hour', now() AT TIME ZONE 'UTC') - to_hours(CAST(hours AS BIGINT) - 1)
        """,
        f"""
        CREATE TABLE {HOURLY_TABLE} (
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
            cost_usd DOUBLE,
            latency_ms_sum DOUBLE,
            latency_n BIGINT,
            ttft_ms_sum DOUBLE,
            ttft_n BIGINT,
            gen_tokens BIGINT,
            gen_ms DOUBLE
        )
        """,
        f"""
        CREATE TABLE {HISTOGRAM_TABLE} (
            hour TIMESTAMP NOT NULL,
            provider VARCHAR,
            model VARCHAR,
            metric VARCHAR NOT NULL,
            bucket SMALLINT NOT NULL,
            n BIGINT NOT NULL
        )
        """,
        *(
            f"INSERT INTO {table} SELECT * FROM ({select}) ORDER BY hour"
            for table, select in (
                (HOURLY_TABLE, _hourly_select("requests")),
                (HISTOGRAM_TABLE, _histogram_select("requests")),
            )
        ),
    ),
)

_V4 = Migration(
    4,
    "error_code: the specific code next to the OpenAI error type",
    ("ALTER TABLE requests ADD COLUMN error_code VARCHAR",),
)

_V5 = Migration(
    5,
    "client dialects: the endpoint called upstream, cache writes",
    (
        "ALTER TABLE requests ADD COLUMN upstream_endpoint VARCHAR",
        "ALTER TABLE requests ADD COLUMN cache_write_tokens BIGINT",
    ),
)

# Version 6: retries and fallbacks (issue 12). A request that took more than one try
# keeps each in attempt_rows; the attempts view (analytics/_views.sql) adds the one try
# of every other request from its requests row.
_V6 = Migration(
    6,
    "fallback_from; attempt_rows, one per upstream try of requests that took several",
    (
        "ALTER TABLE requests ADD COLUMN fallback_from VARCHAR",
        """
        CREATE TABLE attempt_rows (
            request_id VARCHAR NOT NULL,
            request_key UBIGINT NOT NULL,
            number INTEGER NOT NULL,
            provider VARCHAR,
            upstream_model VARCHAR,
            started_at TIMESTAMP NOT NULL,
            latency_ms DOUBLE,
            http_status INTEGER,
            error_type VARCHAR,
            moved_on VARCHAR
        )
        """,
    ),
)

# Version 7: the queue in front of the local engines (issue 13): how long a local
# request waited in it for its turn. NULL for requests that went elsewhere.
_V7 = Migration(
    7,
    "queue_ms: the wait in the local engines' queue",
    ("ALTER TABLE requests ADD COLUMN queue_ms DOUBLE",),
)

# Version 8: the box's resources (issue 13), sampled every WLM_STATS_EVERY_S seconds:
# one row per sample and device (the cpu row, each GPU, each running local engine).
_V8 = Migration(
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
            util_percent DOUBLE,
            mem_used_bytes BIGINT,
            mem_total_bytes BIGINT,
            slots_busy INTEGER
        )
        """,
    ),
)

# Version 9: what happened to the local engines by themselves (issue 13, the guards):
# a row per crash, and per crash loop that held a model (docs/local-models.md#guards).
_V9 = Migration(
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

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9)
SCHEMA_VERSION = MIGRATIONS[-1].version

# Insert order used by the writer; names match the record fields one to one.
REQUEST_COLUMNS: tuple[str, ...] = tuple(f.name for f in attrs.fields(RequestRecord))
ATTEMPT_COLUMNS: tuple[str, ...] = tuple(f.name for f in attrs.fields(AttemptRecord))
BOX_COLUMNS: tuple[str, ...] = tuple(f.name for f in attrs.fields(BoxSampleRecord))
EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in attrs.fields(EngineEventRecord))
# request_id and the text fields come from ConversationRecord; started_at from its request.
CONVERSATION_COLUMNS: tuple[str, ...] = (
    *(f.name for f in attrs.fields(ConversationRecord)),
    "started_at",
)


def prepare_batch_writes(con: duckdb.DuckDBPyConnection) -> None:
    """Make ``con`` ready for :func:`write_batch`: its staging tables, and the statements
    that move a batch on, prepared once.

    DuckDB plans a statement holding the GIL, 1-2 ms for each of these (the event loop
    waits meanwhile); run without the optimizer, ``con`` reuses the plans instead
    (store_duckdb.py says why that is safe for these statements).
    """
    for statement in staging_statements():
        con.execute(statement)
    for statement, name in _MOVE_NAMES.items():
        con.execute(f"PREPARE {name} AS {statement}")


def write_batch(
    con: duckdb.DuckDBPyConnection,
    requests: Sequence[tuple[Any, ...]],
    conversations: Sequence[tuple[Any, ...]],
    attempts: Sequence[tuple[Any, ...]] = (),
) -> None:
    """Append rows (in :data:`REQUEST_COLUMNS` / :data:`CONVERSATION_COLUMNS` /
    :data:`ATTEMPT_COLUMNS` order) in one transaction, rollups included. ``con`` must
    have run :func:`prepare_batch_writes`.

    DuckDB's appender fills the staging tables (tens of thousands of rows a
    second, where ``executemany`` of an INSERT manages a few hundred); SQL moves
    them on.
    """
    con.execute("BEGIN TRANSACTION")
    try:
        _append(con, REQUEST_STAGING, REQUEST_COLUMNS, requests)
        if conversations:
            _append(con, CONVERSATION_STAGING, CONVERSATION_COLUMNS, conversations)
        if attempts:
            _append(con, ATTEMPT_STAGING, ATTEMPT_COLUMNS, attempts)
        for statement in _MOVE_EXECUTES[bool(conversations), bool(attempts)]:
            con.execute(statement)
        con.execute("COMMIT")
    except BaseException:
        _rollback(con)
        raise


def write_box_samples(con: duckdb.DuckDBPyConnection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Append box samples (in :data:`BOX_COLUMNS` order) in one transaction: a few rows
    every few seconds, so a plain INSERT does."""
    _insert(con, "box_samples", BOX_COLUMNS, rows)


def write_engine_events(con: duckdb.DuckDBPyConnection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Append engine events (in :data:`EVENT_COLUMNS` order) in one transaction (rare
    rows: a plain INSERT)."""
    _insert(con, "engine_events", EVENT_COLUMNS, rows)


def _insert(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    """INSERT ``rows`` (in ``columns`` order) into ``table`` in one transaction."""
    marks = ", ".join("?" for _ in columns)
    con.execute("BEGIN TRANSACTION")
    try:
        con.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        con.execute("COMMIT")
    except BaseException:
        _rollback(con)
        raise


def housekeeping(
    con: duckdb.DuckDBPyConnection, retention_days: int | None, now: dt.datetime
) -> None:
    """Delete rows past retention (``now`` is naive UTC); merge old histogram hours into days."""
    if retention_days is not None:
        cutoff = now - dt.timedelta(days=retention_days)
        run_in_transaction(con, retention_statements(), {"cutoff": cutoff})
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    before = day - dt.timedelta(days=HISTOGRAM_HOURLY_DAYS)
    run_in_transaction(con, coarsen_statements(), {"before": before})


def run_in_transaction(
    con: duckdb.DuckDBPyConnection, statements: Sequence[str], params: dict[str, Any]
) -> None:
    """Run ``statements`` as one transaction; each gets the ``$name`` parameters it uses."""
    con.execute("BEGIN TRANSACTION")
    try:
        for statement in statements:
            used = {k: v for k, v in params.items() if f"${k}" in statement}
            con.execute(statement, used or None)
        con.execute("COMMIT")
    except BaseException:
        _rollback(con)
        raise


def _append(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    appender = con.appender(table, columns=list(columns))
    # Slices keep each call short: the appender holds the GIL while it converts
    # values, and the event loop must get it back within a millisecond or so.
    for i in range(0, len(rows), 100):
        appender.append_rows(rows[i : i + 100])
    appender.flush()


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass  # the transaction is already gone (e.g. the database was invalidated)


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The schema version of the open file: 0 for an empty file."""
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() "
        "WHERE database_name = current_database() AND schema_name = 'main' "
        "AND table_name = 'schema_version'"
    ).fetchone()
    if not exists or exists[0] == 0:
        return 0
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Bring the open file up to :data:`SCHEMA_VERSION`; returns the version it was at.

    Raises ``RuntimeError`` when the file is newer than this wlm (downgrades are
    not supported: the newer wlm may have changed what the columns mean).
    """
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        "version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL, description VARCHAR)"
    )
    before = current_version(con)
    if before > SCHEMA_VERSION:
        raise RuntimeError(
            f"telemetry file is at schema version {before}, this wlm knows up to "
            f"{SCHEMA_VERSION}; upgrade wlm or point WLM_TELEMETRY_PATH elsewhere"
        )
    for migration in MIGRATIONS:
        if migration.version <= before:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            for statement in migration.statements:
                con.execute(statement)
            con.execute(
                "INSERT INTO schema_version VALUES (?, ?, ?)",
                [migration.version, _utc_now(), migration.description],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return before


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
