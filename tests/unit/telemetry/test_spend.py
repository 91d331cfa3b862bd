"""Budgets survive a restart: spend per client key read back from the requests table."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from wlm.config import KeyLimit
from wlm.limits.key_limits import BudgetExceeded, KeyLimiter
from wlm.telemetry import schema
from wlm.telemetry.spend import ClientSpend, read_spend

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)


def telemetry_file(
    tmp_path: Path, rows: list[tuple[str | None, str, str | None, float | None]]
) -> duckdb.DuckDBPyConnection:
    """A migrated telemetry file holding (client, started_at, ended_at, cost_usd) rows."""
    con = duckdb.connect(str(tmp_path / "telemetry.duckdb"))
    schema.migrate(con)
    for i, (client, started, ended, cost) in enumerate(rows):
        con.execute(
            "INSERT INTO requests (id, started_at, ended_at, client, cost_usd) VALUES (?, ?, ?, ?, ?)",
            [f"req-{i}", started, ended, client, cost],
        )
    return con


def test_each_keys_spend_today_and_this_month_in_utc(tmp_path: Path) -> None:
    con = telemetry_file(
        tmp_path,
        [
            ("alice", "2025-06-15 09:00:00", "2025-06-15 09:00:01", 1.25),
            ("alice", "2025-06-15 11:00:00", "2025-06-15 11:00:02", 0.75),
            ("alice", "2025-06-03 08:00:00", "2025-06-03 08:00:01", 10.0),
            ("alice", "2025-05-31 23:00:00", "2025-05-31 23:00:01", 99.0),  # last month
            ("alice", "2025-05-31 23:59:00", "2025-06-01 00:00:30", 3.0),  # ended this month
            ("alice", "2025-06-14 23:59:50", "2025-06-15 00:00:10", 0.5),  # ended today
            ("bob", "2025-06-10 10:00:00", "2025-06-10 10:00:01", 2.0),
            ("bob", "2025-06-15 10:00:00", "2025-06-15 10:00:01", None),  # unpriced
            (None, "2025-06-15 10:00:00", "2025-06-15 10:00:01", 0.25),  # no key
            ("admin", "2025-06-15 10:00:00", None, 0.5),  # no end: dated by its start
        ],
    )
    assert read_spend(con, NOW) == (
        ClientSpend(None, 0.25, 0.25),
        ClientSpend("admin", 0.5, 0.5),
        ClientSpend("alice", 2.5, 15.5),
        ClientSpend("bob", 0.0, 2.0),
    )


def test_a_spent_budget_still_refuses_after_a_restart(tmp_path: Path) -> None:
    con = telemetry_file(tmp_path, [("alice", "2025-06-15 09:00:00", "2025-06-15 09:00:01", 5.0)])
    limiter = KeyLimiter([KeyLimit("alice", usd_per_day=5)], wall=lambda: NOW)
    for spend in read_spend(con, NOW):
        limiter.seed_spend(spend.client, spend.day_usd, spend.month_usd)
    with pytest.raises(BudgetExceeded, match=r"\$5\.00 of its \$5\.00 daily budget"):
        limiter.admit("alice")


def test_an_empty_file_has_no_spend(tmp_path: Path) -> None:
    assert read_spend(telemetry_file(tmp_path, []), NOW) == ()
