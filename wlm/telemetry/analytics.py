"""Named queries: one ``analytics/<name>.sql`` file each, run by name with variables.

The files are plain SQL that runs as it is in DuckDB (the duckdb CLI on a copy of
the telemetry file) and in PostgreSQL (psql on the shared database): each is
written once, in the SQL the two share; what differs (macros, views, the
``getvariable`` of PostgreSQL) is set up per engine, ``analytics/_*.sql`` for
DuckDB and ``analytics/_postgres.pgsql`` for PostgreSQL. Parameters are variables
read with a cast and a default, e.g. ``coalesce(CAST(getvariable('hours') AS
INTEGER), 24)``; in the duckdb CLI set them first with ``SET VARIABLE hours = 168;``
(in psql: ``SET wlm.hours = '168';``), here pass them as keywords:
``await run_named(writer, "summary_by_model", hours=168)``. Files whose name
starts with ``_`` are not queries but setup (views, table macros), applied when the writer
opens the file.

``run_named`` takes anything with the writer's ``read`` (a
:class:`~wlm.telemetry.writer.TelemetryWriter`), so the writer can import this
module to apply the views without this module importing the writer.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol, TypeAlias, TypeVar

import duckdb

from wlm.shipped import shipped_dir
from wlm.telemetry.query import Cursor, QueryResult, execute_limited

__all__ = [
    "CursorReader",
    "Variable",
    "apply_views",
    "default_dir",
    "load_named_queries",
    "run_named",
]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
T = TypeVar("T")
# What a DuckDB variable may be set to here; None means "the file's default".
Variable: TypeAlias = str | int | float | bool | dt.datetime | None


class CursorReader(Protocol):
    """Runs ``fn`` with a fresh cursor of the telemetry file, off the event loop."""

    async def read(self, fn: Callable[[Cursor], T], /) -> T: ...


def default_dir() -> Path:
    """The ``analytics/`` directory shipped with wlm."""
    return shipped_dir("analytics")


def load_named_queries(directory: Path | None = None) -> dict[str, str]:
    """``{name: sql}`` for every ``<name>.sql`` in ``directory`` (``_*.sql`` excluded)."""
    directory = directory or default_dir()
    return {
        path.stem: path.read_text(encoding="utf-8")
        for path in sorted(directory.glob("*.sql"))
        if not path.name.startswith("_")
    }


def apply_views(con: duckdb.DuckDBPyConnection, directory: Path | None = None) -> None:
    """Run every ``_*.sql`` setup script (``CREATE OR REPLACE VIEW ...``) on ``con``."""
    directory = directory or default_dir()
    for path in sorted(directory.glob("_*.sql")):
        con.execute(path.read_text(encoding="utf-8"))


async def run_named(
    writer: CursorReader,
    name: str,
    /,
    *,
    queries: Mapping[str, str] | None = None,
    max_rows: int = 10_000,
    timeout_s: float = 10.0,
    **params: Variable,
) -> QueryResult:
    """Run the named query ``name`` with ``params`` as DuckDB variables.

    ``queries`` is what :func:`load_named_queries` returned (loaded once by the
    app); without it the file is read now. A ``None`` parameter means "use the
    file's default". Raises ``KeyError`` for an unknown name.
    """
    sql = (queries if queries is not None else load_named_queries())[name]
    for key in params:
        if not _NAME.match(key):
            raise ValueError(f"bad variable name {key!r}")

    def run(cur: Cursor) -> QueryResult:
        if not isinstance(cur, duckdb.DuckDBPyConnection):  # PostgreSQL: set per transaction
            variables = {k: v for k, v in params.items() if v is not None}
            return cur.execute_limited(
                sql, None, max_rows=max_rows, timeout_s=timeout_s, variables=variables
            )
        # Variables belong to this cursor alone, so concurrent queries cannot mix them.
        for key, value in params.items():
            if value is not None:
                cur.execute(f"SET VARIABLE {key} = ?", [value])
        return execute_limited(cur, sql, max_rows=max_rows, timeout_s=timeout_s)

    return await writer.read(run)
