"""Telemetry store figures: writer ingest rate and named-query times at scale.

    .venv/bin/python benchmarks/telemetry.py                    # 1M and 10M rows (~3 min)
    .venv/bin/python benchmarks/telemetry.py --rows 1000000     # one size
    .venv/bin/python benchmarks/telemetry.py --ingest 500000 --rows 0
    .venv/bin/python benchmarks/telemetry.py --ingest 0 --rows 10000000 --pages
    .venv/bin/python benchmarks/telemetry.py --rows 0 --postgres   # ingest into PostgreSQL too

Ingest: records are submitted from one thread as fast as it can (the event
loop's role) while the writer thread appends them; the rate is rows written
per second of wall time, from the first submit until everything is on disk.
Queries: a file of N synthetic rows over 30 days is generated with DuckDB SQL
With ``--postgres`` the ingest runs again into a PostgreSQL database (a throwaway
cluster of Debian's postgresql, tests/pg.py, or ``--postgres URL``) through the
same writer, COPY into staging tables instead of DuckDB's appender.
(8 models on 4 providers, each at its own speed and price, 4% errors, 1%
cancelled, random ids), the rollups are rebuilt from it as a migration would,
and each named query runs through ``run_named`` on the writer's own cursors:
best and median of --repeat runs.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wlm.telemetry import schema
from wlm.telemetry.analytics import load_named_queries, run_named
from wlm.telemetry.query import run_user_sql
from wlm.telemetry.records import ConversationRecord, RequestRecord
from wlm.telemetry.store_postgres import PostgresStore
from wlm.telemetry.writer import TelemetryWriter

# Variables per query, as a page would pass them; None = the file's defaults.
QUERY_VARIABLES: dict[str, list[dict[str, object]]] = {
    "summary_by_provider": [{"hours": 24}, {"hours": 24 * 7}, {"hours": 24 * 30}],
    "summary_by_model": [{"hours": 24}, {"hours": 24 * 30}],
    "timeseries": [{"hours": 24}, {"hours": 24 * 30, "bucket_hours": 6, "group_by": "model"}],
    "timeseries_minutely": [{"hours": 6}, {"hours": 24, "bucket_minutes": 15}],
    "errors_by_status": [{"hours": 24 * 30}],
    "recent_requests": [{}, {"provider": "openai", "status": "error"}],
    "request_detail": [{"request_id": "__MIDDLE__"}],
    "last_hour": [{}],
}

SYNTHETIC = """
INSERT INTO requests BY NAME
SELECT
    'req_' || md5(i::VARCHAR) AS id,
    (now() AT TIME ZONE 'UTC') - to_microseconds(CAST(({n} - i) * 2592e9 / {n} AS BIGINT))
        AS started_at,
    'chat/completions' AS endpoint,
    ['llama-3.1-8b', 'qwen2.5-7b', 'gpt-4o-mini', 'gpt-4o', 'claude-sonnet-4',
     'claude-haiku-4', 'openai/gpt-4o-mini', 'meta-llama/llama-3.3-70b'][1 + (hash(i) % 8)::INT]
        AS model,
    ['local', 'local', 'openai', 'openai', 'anthropic', 'anthropic', 'openrouter',
     'openrouter'][1 + (hash(i) % 8)::INT] AS provider,
    model AS upstream_model,
    hash(i * 3) % 4 <> 0 AS stream,
    CASE WHEN hash(i * 7) % 100 < 4 THEN 'error'
         WHEN hash(i * 7) % 100 < 5 THEN 'cancelled' ELSE 'ok' END AS status,
    CASE status WHEN 'error' THEN [400, 429, 500, 502, 503][1 + (hash(i * 11) % 5)::INT]
                WHEN 'cancelled' THEN 499 ELSE 200 END AS http_status,
    CASE status WHEN 'error' THEN ['invalid_request_error', 'rate_limit_error', 'upstream_error',
        'upstream_timeout', 'server_error'][1 + (hash(i * 11) % 5)::INT] END AS error_type,
    20 + (hash(i * 13) % 2000)::DOUBLE / 3 AS ttft_ms,
    (50 + hash(i * 19) % 4000)::BIGINT AS prompt_tokens,
    (10 + hash(i * 23) % 1000)::BIGINT AS completion_tokens,
    -- each model generates at its own pace (tokens/s), with some spread
    [45, 60, 90, 40, 55, 120, 85, 35][1 + (hash(i) % 8)::INT]
        * (0.6 + (hash(i * 17) % 800)::DOUBLE / 1000) AS tokens_per_s,
    ttft_ms + completion_tokens * 1000.0 / tokens_per_s AS latency_ms,
    prompt_tokens + completion_tokens AS total_tokens,
    -- USD per million tokens in and out (local models are free)
    (prompt_tokens * [0, 0, 0.15, 2.5, 3, 1, 0.15, 0.12][1 + (hash(i) % 8)::INT]
     + completion_tokens * [0, 0, 0.6, 10, 15, 5, 0.6, 0.3][1 + (hash(i) % 8)::INT]) / 1e6
        AS cost_usd,
    1 AS attempts,
    started_at + to_milliseconds(latency_ms::BIGINT) AS ended_at,
    md5_number_lower(id) AS id_key
FROM range({n}) AS t(i)
ORDER BY started_at
"""


def make_records(n: int) -> list[tuple[RequestRecord, ConversationRecord]]:
    now = dt.datetime.now(dt.UTC)
    out = []
    for i in range(n):
        record = RequestRecord(
            id=f"bench-{i:09d}",
            started_at=now - dt.timedelta(milliseconds=n - i),
            ended_at=now,
            endpoint="chat/completions",
            model=("gpt-4o-mini", "llama-3.1-8b", "claude-haiku-4")[i % 3],
            provider=("openai", "local", "anthropic")[i % 3],
            upstream_model="gpt-4o-mini",
            stream=True,
            status="ok" if i % 20 else "error",
            http_status=200 if i % 20 else 502,
            ttft_ms=20.0 + i % 300,
            latency_ms=400.0 + i % 5000,
            prompt_tokens=100 + i % 900,
            completion_tokens=20 + i % 400,
            total_tokens=120 + i % 1300,
            tokens_per_s=35.5,
        )
        conversation = ConversationRecord(record.id, '{"messages":[{"role":"user"}]}', "ok")
        out.append((record, conversation))
    return out


def bench_ingest(n: int, workdir: Path, *, log_content: bool, postgres: str | None = None) -> None:
    """Rows/s into the DuckDB file, or into ``postgres`` (a URL) when given."""
    items = make_records(n)
    target = PostgresStore(postgres) if postgres else workdir / f"ingest-{log_content}.duckdb"
    writer = TelemetryWriter(
        target,
        log_content=log_content,
        queue_max=n + 1,
        # As a server runs with WLM_TELEMETRY_URL: each record journaled before submit returns.
        spool_dir=workdir / f"journal-{log_content}" if postgres else None,
    )
    writer.start()
    t0 = time.perf_counter()
    submit_ns = []
    for i, (record, conversation) in enumerate(items):
        if i % 97 == 0:
            s = time.perf_counter_ns()
            writer.submit(record, conversation)
            submit_ns.append(time.perf_counter_ns() - s)
        else:
            writer.submit(record, conversation)
    t_submitted = time.perf_counter() - t0
    assert writer.flush(600), "writer did not catch up"
    elapsed = time.perf_counter() - t0
    stats = writer.stats()
    writer.close()
    assert stats.written == n and stats.dropped == 0, stats
    what = "requests + conversations" if log_content else "requests only"
    print(
        f"ingest {'PostgreSQL' if postgres else 'DuckDB'} {n:,} records ({what}): {n / elapsed:,.0f} rows/s "
        f"(submit loop {t_submitted:.2f} s; submit() median "
        f"{statistics.median(submit_ns) / 1000:.2f} us, max {max(submit_ns) / 1000:.1f} us)"
    )


def build_synthetic(path: Path, n: int) -> float:
    t0 = time.perf_counter()
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    schema.migrate(con)
    con.execute(SYNTHETIC.format(n=n))
    for statement in schema.rollup_statements("requests"):
        con.execute(statement)
    con.execute("CHECKPOINT")
    con.close()
    return time.perf_counter() - t0


async def bench_queries(path: Path, repeat: int) -> None:
    writer = TelemetryWriter(path)
    writer.start()
    try:
        queries = load_named_queries()
        middle = await writer.query(
            "SELECT id FROM requests LIMIT 1 OFFSET (SELECT count(*) / 2 FROM requests)"
        )
        rollup_rows = await writer.query(
            "SELECT (SELECT count(*) FROM requests_hourly), (SELECT count(*) FROM latency_hourly)"
        )
        print(
            f"  rollup rows: requests_hourly {rollup_rows.rows[0][0]:,}, "
            f"latency_hourly {rollup_rows.rows[0][1]:,}"
        )
        for name, variants in QUERY_VARIABLES.items():
            for variables in variants:
                params = {
                    k: (middle.rows[0][0] if v == "__MIDDLE__" else v) for k, v in variables.items()
                }
                times = []
                for _ in range(repeat):
                    t = time.perf_counter()
                    result = await run_named(writer, name, queries=queries, **params)
                    times.append((time.perf_counter() - t) * 1000)
                shown = ", ".join(f"{k}={v}" for k, v in variables.items() if v != "__MIDDLE__")
                print(
                    f"  {name:<20} {shown:<42} best {min(times):7.1f} ms  "
                    f"median {statistics.median(times):7.1f} ms  ({len(result.rows)} rows)"
                )
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            await writer.read(
                lambda cur: run_user_sql(
                    cur, "SELECT provider, count(*) FROM requests GROUP BY provider"
                )
            )
            times.append((time.perf_counter() - t) * 1000)
        print(
            f"  {'user SQL (checked)':<20} {'count(*) by provider, all rows':<42} "
            f"best {min(times):7.1f} ms  median {statistics.median(times):7.1f} ms"
        )
    finally:
        writer.close()


PAGES = (
    "/analytics?range=1h",
    "/analytics?range=24h",
    "/analytics?range=7d",
    "/analytics?range=30d",
    "/analytics?range=24h&by=model",
    "/analytics?range=30d&by=model",
    "/analytics?range=24h&fragment=endpoints",
    "/analytics?range=30d&fragment=endpoints",
    "/analytics.json?range=24h",
    "/",
)


async def bench_pages(path: Path, repeat: int) -> None:
    """Each page, whole (queries, charts, HTML), in-process through the ASGI app."""
    from litestar.testing import AsyncTestClient

    from wlm.app import create_app
    from wlm.config import load_settings

    settings = load_settings(
        {
            "WLM_DATA_DIR": str(path.parent),
            "WLM_TELEMETRY_PATH": str(path),
            "WLM_MODELS_DIR": str(path.parent / "no-models"),
        }
    )
    app = create_app(settings, local=None)
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1") as client:
        for page in PAGES:
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                response = await client.get(page)
                times.append((time.perf_counter() - t) * 1000)
                assert response.status_code == 200, (page, response.status_code)
            print(
                f"  page {page:<36} best {min(times):7.1f} ms  "
                f"median {statistics.median(times):7.1f} ms  ({len(response.content) // 1024} KiB)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows",
        default="1000000,10000000",
        help="comma-separated synthetic table sizes (0 to skip)",
    )
    parser.add_argument("--ingest", type=int, default=200_000, help="records to ingest (0 to skip)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per query")
    parser.add_argument(
        "--pages", action="store_true", help="also time the pages (/analytics, /) per size"
    )
    parser.add_argument(
        "--postgres",
        nargs="?",
        const="throwaway",
        help="also ingest into PostgreSQL: a URL, or none for a throwaway cluster",
    )
    args = parser.parse_args()
    print(f"duckdb {duckdb.__version__}, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="wlm-bench-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        urls = []
        if args.postgres == "throwaway":
            from tests.pg import start_cluster

            cluster = start_cluster()
            stack.callback(cluster.destroy)
            urls = [cluster.create_database(), cluster.create_database()]
        elif args.postgres:
            urls = [args.postgres, args.postgres]
        if args.ingest:
            bench_ingest(args.ingest, workdir, log_content=False)
            bench_ingest(args.ingest, workdir, log_content=True)
            for url, log_content in zip(urls, (False, True), strict=False):
                bench_ingest(args.ingest, workdir, log_content=log_content, postgres=url)
        for n in (int(x) for x in args.rows.split(",") if int(x) > 0):
            path = workdir / f"synthetic-{n}.duckdb"
            took = build_synthetic(path, n)
            size = path.stat().st_size / 2**20
            print(
                f"{n:,} synthetic rows over 30 days (generated in {took:.1f} s, {size:,.0f} MiB):"
            )
            asyncio.run(bench_queries(path, args.repeat))
            if args.pages:
                asyncio.run(bench_pages(path, args.repeat))
            path.unlink()


if __name__ == "__main__":
    main()
