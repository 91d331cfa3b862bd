"""Every request priced from its usage: reported cost, then WLM_PRICES, then genai-prices."""

from __future__ import annotations

import doctest
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import get_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

import wlm.telemetry.pricing as pricing
from wlm.config import PriceEntry, load_settings
from wlm.telemetry.pricing import Prices, TokenUsage, _flat_rates

WHEN = datetime(2025, 11, 1, tzinfo=UTC)
ENV = {
    "OPENAI_API_KEY": "sk-openai-test",
    "ANTHROPIC_API_KEY": "sk-ant-test",
    "OPENROUTER_API_KEY": "sk-or-test",
    "WLM_PROVIDERS": "fast,lab",
    "FAST_BASE_URL": "https://api.groq.com/openai/v1",
    "FAST_API_KEY": "gsk-test",
    "LAB_BASE_URL": "http://192.168.1.20:8080/v1",
}


def prices(*entries: PriceEntry) -> Prices:
    return Prices(entries, load_settings(ENV).providers)


def counts(prompt: int | None, completion: int | None, **more: object) -> dict[str, object]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "cost_usd": None, **more}


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(pricing).failed == 0


def test_openai_with_cached_input_as_openai_bills_it() -> None:
    usage = counts(1000, 100, cached_tokens=800)
    # gpt-4o: $2.50 input, $1.25 cached input, $10 output per million tokens.
    expected = (200 * 2.5 + 800 * 1.25 + 100 * 10) / 1e6
    cost = prices().cost_of("openai", "gpt-4o-2024-08-06", usage, WHEN)
    assert cost == pytest.approx(expected)


def test_anthropic_cache_writes_and_reads_and_its_long_context_tier() -> None:
    p = prices()
    short = counts(10_000, 1_000, cached_tokens=4_000, cache_write_tokens=2_000)
    # claude-sonnet-4-5: $3 input, $0.30 cache read, $3.75 cache write, $15 output.
    expected = (4_000 * 3 + 4_000 * 0.3 + 2_000 * 3.75 + 1_000 * 15) / 1e6
    assert p.cost_of("anthropic", "claude-sonnet-4-5", short, WHEN) == pytest.approx(expected)
    long = counts(300_000, 1_000)  # past 200k input tokens every token costs the higher rate
    genai = calc_price(
        Usage(input_tokens=300_000, output_tokens=1_000),
        "claude-sonnet-4-5",
        provider_id="anthropic",
        genai_request_timestamp=WHEN,
    )
    assert p.cost_of("anthropic", "claude-sonnet-4-5", long, WHEN) == pytest.approx(
        float(genai.total_price)
    )
    assert float(genai.total_price) > (300_000 * 3 + 1_000 * 15) / 1e6


def test_the_cost_a_provider_reports_wins() -> None:
    p = prices(PriceEntry("openrouter/*", 100.0, 100.0))
    usage = counts(1000, 100, cost_usd=0.000123)
    assert p.cost_of("openrouter", "openai/gpt-4o", usage, WHEN) == 0.000123


def test_wlm_prices_override_and_add_exact_before_globs() -> None:
    p = prices(
        PriceEntry("openai/gpt-4o*", 2.0, 8.0),
        PriceEntry("openai/gpt-4o-mini", 0.1, 0.2),
        PriceEntry("lab/qwen*", 1.0, 2.0, reasoning_mtok=4.0),
    )
    assert p.cost_of("openai", "gpt-4o", counts(1_000_000, 0), WHEN) == pytest.approx(2.0)
    assert p.cost_of("openai", "gpt-4o-mini", counts(1_000_000, 0), WHEN) == pytest.approx(0.1)
    thinking = counts(0, 1_000_000, reasoning_tokens=250_000)
    assert p.cost_of("lab", "qwen3-8b", thinking, WHEN) == pytest.approx(0.75 * 2 + 0.25 * 4)


def test_a_custom_provider_is_priced_by_its_base_url() -> None:
    cost = prices().cost_of("fast", "llama-3.1-8b-instant", counts(1_000_000, 1_000_000), WHEN)
    assert cost is not None and cost > 0


def test_local_models_cost_nothing_unless_priced() -> None:
    assert prices().cost_of("local", "qwen2.5-7b", counts(5000, 500), WHEN) == 0.0
    priced = prices(PriceEntry("local/*", 0.01, 0.02))
    assert priced.cost_of("local", "qwen2.5-7b", counts(1_000_000, 1_000_000), WHEN) == 0.03


def test_an_unknown_model_or_usage_has_no_cost_rather_than_zero(
    caplog: pytest.LogCaptureFixture,
) -> None:
    p = prices()
    with caplog.at_level(logging.INFO, logger="wlm.telemetry"):
        assert p.cost_of("lab", "my-finetune", counts(10, 10), WHEN) is None
        assert p.cost_of("openai", "no-such-model", counts(10, 10), WHEN) is None
        assert p.cost_of("lab", "my-finetune", counts(10, 10), WHEN) is None
    assert [r.getMessage() for r in caplog.records] == [
        "no price for lab/my-finetune: its requests get no cost_usd (add it to WLM_PRICES)",
        "no price for openai/no-such-model: its requests get no cost_usd (add it to WLM_PRICES)",
    ]
    assert p.cost_of("openai", "gpt-4o", counts(None, None), WHEN) is None
    assert p.cost_of(None, None, counts(10, 10), WHEN) is None


def test_prices_from_the_settings_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text('["openai/gpt-4o"]\ninput_mtok = 1\noutput_mtok = 1\n')
    p = Prices.from_settings(load_settings({**ENV, "WLM_PRICES": str(path)}))
    assert p.cost_of("openai", "gpt-4o", counts(500_000, 500_000), WHEN) == pytest.approx(1.0)


FLAT = [
    (provider, model.id)
    for provider in ("openai", "anthropic")
    for model in get_snapshot().find_provider(None, provider, None).models
    if _flat_rates(model.get_prices(WHEN)) is not None
    and get_snapshot().find_provider(None, provider, None).find_model(model.id) is model
]


@settings(max_examples=200)
@given(
    target=st.sampled_from(FLAT),
    prompt=st.integers(0, 150_000),
    cached=st.integers(0, 150_000),
    written=st.integers(0, 150_000),
    completion=st.integers(0, 100_000),
    reasoning=st.integers(0, 100_000),
)
def test_the_fast_path_prices_as_genai_prices_does(
    target: tuple[str, str],
    prompt: int,
    cached: int,
    written: int,
    completion: int,
    reasoning: int,
) -> None:
    cached = min(cached, prompt)
    written = min(written, prompt - cached)
    reasoning = min(reasoning, completion)
    provider, model = target
    usage = TokenUsage(prompt, completion, cached, written, reasoning)
    genai = calc_price(
        Usage(
            input_tokens=prompt,
            output_tokens=completion,
            cache_read_tokens=cached,
            cache_write_tokens=written,
            output_reasoning_tokens=reasoning,
        ),
        model,
        provider_id=provider,
        genai_request_timestamp=WHEN,
    )
    ours = prices().cost_usd(provider, model, usage, WHEN)
    assert ours == pytest.approx(float(genai.total_price), rel=1e-9, abs=1e-12)
