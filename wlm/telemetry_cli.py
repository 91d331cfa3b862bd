"""``wlm sql`` and ``wlm telemetry export``.

``wlm sql`` works whether or not a server runs: it asks the running server
(``POST /api/sql``, read-only) and otherwise opens the file read-only itself
(or, with ``WLM_TELEMETRY_URL``, the PostgreSQL database in a read-only
transaction), with the same checks either way. ``wlm telemetry export`` reads the file
itself, so it needs the server stopped (a running server holds DuckDB's only
lock on the file); it says so, and points at ``wlm sql``, when one runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path
from typing import Any

from wlm.cli_common import (
    ServerAddress,
    add_env_file_option,
    add_server_options,
    admin_headers,
    load_cli_settings,
    print_table,
    server_address,
)
from wlm.config import Settings

__all__ = ["add_telemetry_commands"]


class _CommandFailed(Exception):
    pass


def _sql_via_server(
    settings: Settings, server: ServerAddress, sql: str, max_rows: int
) -> tuple[list[str], list[list[Any]], bool] | None:
    """The server's answer, or None when no server is listening."""
    # httpx is imported here, not at the top: `wlm serve` never needs it in this process.
    import httpx

    try:
        response = httpx.post(
            f"{server.url}/api/sql",
            json={"sql": sql, "max_rows": max_rows},
            headers=admin_headers(settings, server),
            timeout=60,
        )
    except httpx.ConnectError:
        return None
    if response.status_code == 404 and "Telemetry is disabled" not in response.text:
        return None  # something else listens there
    try:
        body = response.json()
    except ValueError:
        raise _CommandFailed(f"the server answered HTTP {response.status_code}") from None
    if response.status_code != 200:
        raise _CommandFailed(body.get("error", {}).get("message", response.text))
    return body["columns"], body["rows"], body["truncated"]


def _locked(path: Path, detail: str, server: ServerAddress, file_asked: bool) -> str:
    """Say that another process holds the file's lock, and how to reach it instead."""
    pid = re.search(r"\(PID (\d+)\)", detail)
    holder = f"another process (PID {pid.group(1)})" if pid else "another process"
    if file_asked:
        return (
            f"{path} is locked by {holder}, probably a running wlm server: drop --file to "
            f"ask it instead (with --port or --url if it is not at {server.url})"
        )
    return (
        f"{path} is locked by {holder}, probably a wlm server that is not at {server.url}: "
        "pass its --port or --url"
    )


def _sql_from_file(
    settings: Settings, server: ServerAddress, sql: str, max_rows: int, *, file_asked: bool
) -> tuple[list[str], list[list[Any]], bool]:
    # DuckDB loads only when the file is read here (start-up speed of the other commands).
    import duckdb

    from wlm.telemetry.query import (
        ForbiddenQuery,
        QueryTimeout,
        TelemetryUnavailable,
        open_readonly,
        run_user_sql,
    )

    try:
        con = open_readonly(settings.telemetry_file)
    except FileNotFoundError as exc:
        raise _CommandFailed(str(exc)) from None
    except TelemetryUnavailable as exc:
        detail = " ".join(str(exc).split())
        if "Conflicting lock" in detail:  # DuckDB: another process has the file open
            detail = _locked(settings.telemetry_file, detail, server, file_asked)
        raise _CommandFailed(detail) from None
    try:
        result = run_user_sql(con, sql, max_rows=max_rows)
    except (ForbiddenQuery, QueryTimeout) as exc:
        raise _CommandFailed(str(exc)) from None
    except duckdb.Error as exc:
        raise _CommandFailed(str(exc).splitlines()[0]) from None
    finally:
        con.close()
    return list(result.columns), [list(r) for r in result.rows], result.truncated


def _sql_from_postgres(
    settings: Settings, sql: str, max_rows: int
) -> tuple[list[str], list[list[Any]], bool]:
    """``wlm sql`` straight to the PostgreSQL of WLM_TELEMETRY_URL, as a server would."""
    from wlm.telemetry.query import (
        ForbiddenQuery,
        QueryFailed,
        QueryTimeout,
        TelemetryUnavailable,
        run_user_sql,
    )
    from wlm.telemetry.store_postgres import PostgresStore

    assert settings.telemetry_url is not None
    store = PostgresStore(settings.telemetry_url)
    try:
        store.open_readers()
        session = store.reader()
        try:
            result = run_user_sql(session, sql, max_rows=max_rows)
        finally:
            store.release(session)
    except (ForbiddenQuery, QueryTimeout, QueryFailed, TelemetryUnavailable) as exc:
        raise _CommandFailed(str(exc)) from None
    finally:
        store.close()
    return list(result.columns), [list(r) for r in result.rows], result.truncated


def _print(columns: list[str], rows: list[list[Any]], fmt: str) -> None:
    if fmt == "json":
        print(
            json.dumps(
                [dict(zip(columns, row, strict=True)) for row in rows], default=str, indent=1
            )
        )
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        print_table(columns, rows)


def _sql(args: argparse.Namespace) -> int:
    settings = load_cli_settings(args)
    server = server_address(settings, args)
    try:
        answer = None if args.file else _sql_via_server(settings, server, args.query, args.max_rows)
        if answer is None and settings.telemetry_url:
            answer = _sql_from_postgres(settings, args.query, args.max_rows)
        if answer is None:
            answer = _sql_from_file(
                settings, server, args.query, args.max_rows, file_asked=args.file
            )
    except _CommandFailed as exc:
        print(f"wlm sql: {exc}", file=sys.stderr)
        return 1
    columns, rows, truncated = answer
    _print(columns, rows, args.format)
    if truncated:
        print(f"wlm sql: stopped at {args.max_rows} rows (--max-rows)", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    # DuckDB loads only for the export itself (start-up speed of the other commands).
    from wlm.telemetry.export import export_parquet

    settings = load_cli_settings(args)
    out = Path(args.out).resolve()
    try:
        count = export_parquet(settings.telemetry_file, out)
    except Exception as exc:
        print(f"wlm telemetry export: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"wrote {count} requests to {out}", file=sys.stderr)
    return 0


def add_telemetry_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sql = sub.add_parser("sql", help="read-only SQL over the telemetry")
    sql.add_argument("query", help='e.g. "SELECT provider, count(*) FROM requests GROUP BY 1"')
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.add_argument("--max-rows", type=int, default=10_000)
    sql.add_argument(
        "--file",
        action="store_true",
        help="read the file (or the WLM_TELEMETRY_URL database) itself, even if a server runs",
    )
    add_server_options(sql)
    add_env_file_option(sql)
    sql.set_defaults(func=_sql)

    telemetry = sub.add_parser("telemetry", help="telemetry file tools")
    telemetry_sub = telemetry.add_subparsers(dest="telemetry_command", required=True)
    export = telemetry_sub.add_parser("export", help="write the requests table to a Parquet file")
    export.add_argument("out", help="output path, e.g. out.parquet")
    add_env_file_option(export)
    export.set_defaults(func=_export)
