"""Spend per client key read back from telemetry, so budgets survive a restart.

At start the gateway reads what each client key (the ``requests.client`` column: the
key's name from ``WLM_API_KEYS``, ``admin`` for the admin key, NULL for clients
without a key) spent in the current UTC day and month, and seeds its budgets with it
(``KeyLimiter.seed_spend``). With ``WLM_TELEMETRY_URL`` the spend is read from the
shared PostgreSQL database, so it is the whole fleet's. Spend is ``cost_usd``, dated when the request ended,
as the live counters do. The same query runs in the duckdb CLI::

    SELECT client, day_usd, month_usd FROM (<SPEND_BY_CLIENT>)  -- with the two dates
"""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
from attrs import frozen

from wlm.telemetry.query import Cursor, execute_limited

__all__ = ["SPEND_BY_CLIENT", "ClientSpend", "read_spend"]

# $day_start and $month_start are naive UTC (as the table stores them). The filter on
# started_at (a day before the month, for requests that ran over midnight) lets DuckDB
# skip the row groups of older months without reading them.
SPEND_BY_CLIENT = """
SELECT client,
       coalesce(sum(cost_usd) FILTER (WHERE coalesce(ended_at, started_at) >= $day_start), 0)
           AS day_usd,
       coalesce(sum(cost_usd), 0) AS month_usd
FROM requests
WHERE started_at >= $month_start - INTERVAL '1 day'
  AND coalesce(ended_at, started_at) >= $month_start
  AND cost_usd > 0
GROUP BY client
ORDER BY client NULLS FIRST
"""


@frozen
class ClientSpend:
    """What one client key spent today and this month (UTC)."""

    client: str | None
    day_usd: float
    month_usd: float


def read_spend(con: Cursor, now: datetime) -> tuple[ClientSpend, ...]:
    """Each client's spend in ``now``'s UTC day and month (``now`` aware).

    ``con`` is a DuckDB cursor or a PostgreSQL session: with a shared database the
    spend is every replica's (fleet-wide budgets)."""
    utc = now.astimezone(UTC).replace(tzinfo=None)
    day_start = utc.replace(hour=0, minute=0, second=0, microsecond=0)
    month_start = day_start.replace(day=1)
    params = {"day_start": day_start, "month_start": month_start}
    if isinstance(con, duckdb.DuckDBPyConnection):
        rows = con.execute(SPEND_BY_CLIENT, params).fetchall()
    else:
        rows = list(execute_limited(con, SPEND_BY_CLIENT, params, max_rows=1_000_000).rows)
    return tuple(ClientSpend(client, float(day), float(month)) for client, day, month in rows)
