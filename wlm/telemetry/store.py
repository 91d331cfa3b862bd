"""The seam between the telemetry writer and where its rows go.

:class:`~wlm.telemetry.writer.TelemetryWriter` owns the queue, the batching, the
retries and the counts; a :class:`TelemetryStore` owns the database: the DuckDB
file (:mod:`wlm.telemetry.store_duckdb`, the default) or a PostgreSQL database
shared by replicas (:mod:`wlm.telemetry.store_postgres`, ``WLM_TELEMETRY_URL``).
Every method but :meth:`~TelemetryStore.reader`/:meth:`~TelemetryStore.release`
runs on the writer's thread.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Protocol

from wlm.telemetry.query import Cursor

__all__ = ["TelemetryStore"]


class TelemetryStore(Protocol):
    """One database the writer writes batches to and readers read from."""

    @property
    def name(self) -> str:
        """What to call it in logs and errors (a path, or a URL without its password)."""
        ...

    @property
    def data_errors(self) -> tuple[type[BaseException], ...]:
        """Exceptions that mean "these values do not fit", not "the database failed"."""
        ...

    def open(self) -> int:
        """Connect, migrate and set up; returns the schema version found (0: new). Raises."""
        ...

    def write_batch(
        self,
        requests: Sequence[tuple[Any, ...]],
        conversations: Sequence[tuple[Any, ...]],
        attempts: Sequence[tuple[Any, ...]],
    ) -> None:
        """Write rows (in ``schema.*_COLUMNS`` order) in one transaction, rollups included."""
        ...

    def write_box_samples(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Write box samples (in ``schema.BOX_COLUMNS`` order) in one transaction."""
        ...

    def write_engine_events(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Write engine events (in ``schema.EVENT_COLUMNS`` order) in one transaction."""
        ...

    def housekeeping(self, retention_days: int | None, now: dt.datetime) -> None: ...

    def compact(self, since: dt.datetime) -> None:
        """Merge the partial rollup rows of hours >= ``since`` (naive UTC)."""
        ...

    def reader(self) -> Cursor:
        """A new reader for one thread; give it back with :meth:`release`. Raises when closed."""
        ...

    def release(self, reader: Cursor) -> None: ...

    def close(self) -> None:
        """Close every connection (the next :meth:`open` starts afresh)."""
        ...
