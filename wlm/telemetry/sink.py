"""What the gateway needs from telemetry: the :class:`TelemetrySink` protocol.

:class:`wlm.telemetry.writer.TelemetryWriter` implements it; the request path and
the pages depend on this protocol only, so a test can pass another sink (or None).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from wlm.telemetry.query import Cursor, QueryResult
    from wlm.telemetry.records import (
        AttemptRecord,
        BoxSampleRecord,
        ConversationRecord,
        EngineEventRecord,
        RequestRecord,
    )
    from wlm.telemetry.writer import WriterStats

__all__ = ["TelemetrySink"]

T = TypeVar("T")


class TelemetrySink(Protocol):
    """Takes finished requests' records off the request path and answers reads."""

    @property
    def durable(self) -> bool:
        """True when :meth:`submit` has the rows on disk before it returns (the journal
        in front of PostgreSQL): the proxy then submits before an answer's last part."""
        ...

    def start(self) -> None: ...

    async def aclose(self, timeout_s: float = 10.0) -> None: ...

    def submit(
        self,
        record: RequestRecord,
        conversation: ConversationRecord | None = None,
        attempts: Sequence[AttemptRecord] = (),
    ) -> bool:
        """Queue one request's records (``attempts``: each try, only when there were
        several); never blocks. False when refused (counted)."""
        ...

    def submit_box(self, rows: Sequence[BoxSampleRecord]) -> bool:
        """Queue one sample of the box's resources (``box_samples`` rows); never blocks."""
        ...

    def submit_event(self, record: EngineEventRecord) -> bool:
        """Queue one local engine event (an ``engine_events`` row); never blocks."""
        ...

    def flush(self, timeout_s: float = 10.0) -> bool: ...

    def stats(self) -> WriterStats: ...

    async def read(self, fn: Callable[[Cursor], T]) -> T:
        """``fn(cursor)`` off the event loop: a DuckDB cursor, or a PostgreSQL session
        (``query.Session``); the functions of ``query``, ``analytics`` and ``spend`` take
        either."""
        ...

    async def query(
        self,
        sql: str,
        params: Sequence[Any] | dict[str, Any] | None = None,
        *,
        max_rows: int = 10_000,
        timeout_s: float = 10.0,
    ) -> QueryResult: ...
