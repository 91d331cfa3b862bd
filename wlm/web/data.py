"""What the pages read from the telemetry: the named queries in ``analytics/``, as rows.

Every read goes through :func:`wlm.telemetry.analytics.run_named` (a cursor of the
server's database on the writer's reader pool, with a time limit and a row cap), so
the pages show exactly what a person gets from the same ``.sql`` file in the duckdb
CLI. When telemetry is off or failing, :class:`TelemetryReader` raises
:class:`NoTelemetry` with the reason and the pages say so instead of breaking.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from attrs import frozen

from wlm.telemetry.analytics import CursorReader, Variable, run_named
from wlm.telemetry.query import QueryTimeout, TelemetryUnavailable

__all__ = ["NoTelemetry", "RequestFilter", "TelemetryReader", "utc_now", "window_start"]


class NoTelemetry(Exception):
    """The telemetry cannot be read (off, not started, or failing); ``str`` says why."""


@frozen
class RequestFilter:
    """What ``/requests`` narrows to; empty strings mean "any"."""

    provider: str = ""
    model: str = ""
    status: str = ""

    def variables(self) -> dict[str, str | None]:
        """As ``recent_requests`` variables (None: no condition)."""
        return {
            "provider": self.provider or None,
            "model": self.model or None,
            "status": self.status or None,
        }


def utc_now() -> dt.datetime:
    """Now, as the naive UTC the telemetry stores."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def window_start(hours: int, now: dt.datetime | None = None) -> dt.datetime:
    """Where a rollup query's window of ``hours`` whole clock hours begins.

    The same rule as the ``wlm_window_start`` macro: the current hour and the
    ``hours - 1`` before it.
    """
    now = now or utc_now()
    return now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=hours - 1)


class TelemetryReader:
    """Runs named analytics queries on a ``TelemetryWriter`` (None when telemetry is off)."""

    def __init__(
        self, telemetry: CursorReader | None, queries: Mapping[str, str], *, timeout_s: float = 5.0
    ) -> None:
        self._telemetry = telemetry
        self._queries = queries
        self._timeout_s = timeout_s

    async def named(
        self, name: str, *, max_rows: int = 1000, **variables: Variable
    ) -> list[dict[str, Any]]:
        """The rows of ``analytics/<name>.sql`` with ``variables``, as dicts."""
        if self._telemetry is None:
            raise NoTelemetry("Telemetry is off.")
        if name not in self._queries:
            raise NoTelemetry(f"The analytics query {name!r} is missing from analytics/.")
        try:
            result = await run_named(
                self._telemetry,
                name,
                queries=self._queries,
                max_rows=max_rows,
                timeout_s=self._timeout_s,
                **variables,
            )
        except TelemetryUnavailable as exc:
            raise NoTelemetry(f"Telemetry is unavailable: {exc}") from None
        except QueryTimeout as exc:
            raise NoTelemetry(f"The telemetry query {name!r} took too long ({exc}).") from None
        return result.as_dicts()

    async def last_hour(self) -> dict[str, Any]:
        """Requests, errors and cancellations in exactly the last 60 minutes."""
        rows = await self.named("last_hour")
        total = next((r for r in rows if r["scope"] == "total"), None)
        if total is None:  # no request at all: ROLLUP yields no total row
            return {"requests": 0, "errors": 0, "cancelled": 0, "error_rate": None}
        return {
            "requests": int(total["requests"]),
            "errors": int(total["errors"] or 0),
            "cancelled": int(total["cancelled"] or 0),
            "error_rate": total["error_rate"],
        }

    async def recent(
        self,
        flt: RequestFilter,
        *,
        limit: int,
        hours: int = 24,
        before: dt.datetime | None = None,
    ) -> list[dict[str, Any]]:
        """The latest requests matching ``flt`` (older than ``before`` when given)."""
        # The row cap does the limiting: the query's own `limit` variable is a reserved
        # word for SET VARIABLE, and its default (100) is above every page size here.
        return await self.named(
            "recent_requests",
            max_rows=limit,
            hours=hours,
            before=before,
            **flt.variables(),
        )

    async def request(self, request_id: str, *, client_ids: bool = True) -> dict[str, Any] | None:
        """One request with its conversation columns, or None.

        ``request_id`` is the row's id or, failing that (unless ``client_ids`` is False:
        one query instead of two), a client's own x-request-id (its latest request with it).
        """
        rows = await self.named("request_detail", max_rows=1, request_id=request_id)
        if not rows and client_ids:
            tagged = await self.named("request_by_client_id", max_rows=1, request_id=request_id)
            if tagged:
                rows = await self.named("request_detail", max_rows=1, request_id=tagged[0]["id"])
        return rows[0] if rows else None
