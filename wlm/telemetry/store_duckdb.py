"""The telemetry in one DuckDB file: the default store, embedded, zero set-up.

One read-write connection (the writer's); readers get cursors of it. The file is
locked down as it opens (:func:`wlm.telemetry.query.lock_down`), migrated
(:func:`wlm.telemetry.schema.migrate`), its views applied, and the writer's
staging tables made; batches go in with DuckDB's appender (``schema.write_batch``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from wlm.telemetry import schema
from wlm.telemetry.analytics import apply_views
from wlm.telemetry.query import Cursor, TelemetryUnavailable, lock_down

__all__ = ["DuckDBStore", "export_dir_for"]

# DuckDB errors that mean "this row's values do not fit", not "the file is broken".
_DATA_ERRORS: tuple[type[BaseException], ...] = (
    duckdb.ConversionException,
    duckdb.OutOfRangeException,
    duckdb.TypeMismatchException,
    duckdb.ConstraintException,
    TypeError,
    ValueError,
    OverflowError,
)


def export_dir_for(path: Path) -> Path:
    """The one directory a serving process may write files to: ``<db>.exports/``."""
    return path.with_name(path.name + ".exports")


class DuckDBStore:
    """The telemetry file at ``path``; ``config`` is DuckDB's (memory_limit, threads)."""

    def __init__(self, path: Path, config: dict[str, str | bool | int | float | list[str]]) -> None:
        self.path = Path(path)
        self._config = config
        self._con: duckdb.DuckDBPyConnection | None = None
        self._batches: duckdb.DuckDBPyConnection | None = None
        self._reader_root: duckdb.DuckDBPyConnection | None = None

    @property
    def name(self) -> str:
        return str(self.path)

    @property
    def data_errors(self) -> tuple[type[BaseException], ...]:
        return _DATA_ERRORS

    def open(self) -> int:
        con: duckdb.DuckDBPyConnection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = duckdb.connect(str(self.path), config=self._config)
            # Batches are written on a connection of their own that runs without the
            # optimizer, so that their prepared statements are planned once, not at every
            # batch while holding the GIL (schema.prepare_batch_writes): they move a few
            # thousand staged rows at most, where the optimizer changes nothing measurable
            # (13.3 against 13.45 us a row at 3,500-row batches) and a small batch costs
            # half (5.4 against 11.1 ms at 40 rows). Maintenance (retention, compaction)
            # runs on ``con``, and readers on cursors, with the optimizer. The setting is
            # made here because lock_down locks every setting.
            batches = con.cursor()
            batches.execute("SET SESSION enable_optimizer = false")  # (plain SET: global)
            lock_down(con, allowed_directories=[f"{export_dir_for(self.path)}/"])
            before = schema.migrate(con)
            apply_views(con)
            schema.prepare_batch_writes(batches)
            reader_root = con.cursor()
        except BaseException:
            if con is not None:
                con.close()
            raise
        self._con, self._batches, self._reader_root = con, batches, reader_root
        return before

    def write_batch(
        self,
        requests: Sequence[tuple[Any, ...]],
        conversations: Sequence[tuple[Any, ...]],
        attempts: Sequence[tuple[Any, ...]],
    ) -> None:
        assert self._batches is not None
        schema.write_batch(self._batches, requests, conversations, attempts)

    def write_box_samples(self, rows: Sequence[tuple[Any, ...]]) -> None:
        assert self._con is not None
        schema.write_box_samples(self._con, rows)

    def write_engine_events(self, rows: Sequence[tuple[Any, ...]]) -> None:
        assert self._con is not None
        schema.write_engine_events(self._con, rows)

    def housekeeping(self, retention_days: int | None, now: dt.datetime) -> None:
        assert self._con is not None
        schema.housekeeping(self._con, retention_days, now)

    def compact(self, since: dt.datetime) -> None:
        assert self._con is not None
        schema.run_in_transaction(self._con, schema.compact_statements(), {"since": since})

    def reader(self) -> Cursor:
        if self._reader_root is None:
            raise TelemetryUnavailable("telemetry is not open")
        return self._reader_root.cursor()

    def release(self, reader: Cursor) -> None:
        if isinstance(reader, duckdb.DuckDBPyConnection):
            reader.close()

    def close(self) -> None:
        con, batches, root = self._con, self._batches, self._reader_root
        self._con = self._batches = self._reader_root = None
        for c in (root, batches, con):
            if c is not None:
                try:
                    c.close()
                except duckdb.Error:
                    pass
