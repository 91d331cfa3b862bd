"""A finished request's row carries its cost: the provider's own, else its usage priced."""

from __future__ import annotations

import pytest

from wlm.api.exchange import Exchange
from wlm.api.recording import record_exchange
from wlm.config import PriceEntry, load_settings
from wlm.metrics import Metrics
from wlm.providers.accounting import ResponseAccount
from wlm.redaction import Redactor
from wlm.routing.resolve import Route
from wlm.telemetry.pricing import Prices

from .pipeline import ListSink

PRICES = Prices(
    [PriceEntry("lab/*", input_mtok=1.0, output_mtok=2.0)],
    load_settings({"OPENAI_API_KEY": "sk-openai-test"}).providers,
)


def finished(provider: str, model: str, usage: dict[str, object]) -> Exchange:
    exchange = Exchange("chat/completions", "req-1", "rec-1", ResponseAccount(False))
    exchange.route = Route(provider, model, "route")
    exchange.account.usage = usage
    return exchange


def record(
    exchange: Exchange, prices: Prices | None
) -> tuple[float | None, dict[str, object] | None]:
    sink = ListSink()
    counts = record_exchange(
        exchange,
        metrics=Metrics(),
        telemetry=sink,
        redactor=Redactor(()),
        log_content=False,
        prices=prices,
    )
    ((row, _),) = sink.rows
    return row.cost_usd, counts


def test_usage_is_priced_into_the_row_and_returned_for_the_budgets() -> None:
    exchange = finished("lab", "qwen3-8b", {"prompt_tokens": 500_000, "completion_tokens": 250_000})
    cost, counts = record(exchange, PRICES)
    assert cost == pytest.approx(1.0)
    assert counts is not None and counts["cost_usd"] == cost
    assert counts["total_tokens"] == 750_000


def test_the_providers_own_cost_is_kept() -> None:
    usage = {"prompt_tokens": 500_000, "completion_tokens": 250_000, "cost": 0.42}
    assert record(finished("lab", "qwen3-8b", usage), PRICES)[0] == 0.42


def test_without_prices_the_row_is_as_before() -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 5}
    assert record(finished("openai", "gpt-4o", usage), None)[0] is None
    assert record(finished("openai", "gpt-4o", usage), PRICES)[0] == pytest.approx(
        (10 * 2.5 + 5 * 10) / 1e6
    )
