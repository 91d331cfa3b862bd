"""Issue 12's settings: retries, fallbacks, cooldowns, key limits, prices; clear errors at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from wlm.config import ConfigError, KeyLimit, PriceEntry, load_settings

KEYS = {"WLM_API_KEYS": "alice:sk-alice-1234,bob:sk-bob-12345"}


def test_defaults() -> None:
    settings = load_settings({})
    assert (settings.retries, settings.retry_max_wait_s) == (2, 10.0)
    assert (settings.cooldown_failures, settings.cooldown_s) == (3, 30.0)
    assert settings.local_max_wait_s is None
    assert settings.fallbacks == settings.key_limits == settings.prices == ()


def test_the_issues_examples_parse() -> None:
    settings = load_settings(
        {
            **KEYS,
            "WLM_FALLBACKS": "gpt-4o=openrouter/openai/gpt-4o|qwen2.5-7b,"
            "claude-*=openrouter/anthropic/claude-sonnet-4.5",
            "WLM_KEY_LIMITS": "alice:rpm=60;tpm=200000;usd_per_day=5,*:concurrency=8",
            "WLM_RETRIES": "0",
            "WLM_RETRY_MAX_WAIT_S": "2.5",
            "WLM_COOLDOWN_FAILURES": "5",
            "WLM_COOLDOWN_S": "0",
            "WLM_LOCAL_MAX_WAIT_S": "3",
        }
    )
    assert settings.fallbacks == (
        ("gpt-4o", ("openrouter/openai/gpt-4o", "qwen2.5-7b")),
        ("claude-*", ("openrouter/anthropic/claude-sonnet-4.5",)),
    )
    assert settings.key_limits == (
        KeyLimit("alice", rpm=60, tpm=200_000, usd_per_day=5.0),
        KeyLimit("*", concurrency=8),
    )
    assert (settings.retries, settings.retry_max_wait_s) == (0, 2.5)
    assert (settings.cooldown_failures, settings.cooldown_s) == (5, 0.0)
    assert settings.local_max_wait_s == 3.0


@pytest.mark.parametrize(
    ("env", "variable", "fragment"),
    [
        ({"WLM_RETRIES": "-1"}, "WLM_RETRIES", "0 or more"),
        ({"WLM_RETRIES": "two"}, "WLM_RETRIES", "whole number"),
        ({"WLM_RETRY_MAX_WAIT_S": "inf"}, "WLM_RETRY_MAX_WAIT_S", "0 or more"),
        ({"WLM_COOLDOWN_FAILURES": "0"}, "WLM_COOLDOWN_FAILURES", "at least 1"),
        ({"WLM_COOLDOWN_S": "-5"}, "WLM_COOLDOWN_S", "0 or more"),
        ({"WLM_LOCAL_MAX_WAIT_S": "soon"}, "WLM_LOCAL_MAX_WAIT_S", "a number"),
        ({"WLM_FALLBACKS": "gpt-4o"}, "WLM_FALLBACKS", "model=alternative|alternative"),
        ({"WLM_FALLBACKS": "gpt-4o=||"}, "WLM_FALLBACKS", "model=alternative"),
        ({"WLM_FALLBACKS": "gpt-4o=claude-*"}, "WLM_FALLBACKS", "is a glob"),
        ({**KEYS, "WLM_KEY_LIMITS": "alice"}, "WLM_KEY_LIMITS", "name:limit=value"),
        ({**KEYS, "WLM_KEY_LIMITS": "carol:rpm=1"}, "WLM_KEY_LIMITS", "(known: alice, bob)"),
        ({"WLM_KEY_LIMITS": "alice:rpm=1"}, "WLM_KEY_LIMITS", "set WLM_API_KEYS"),
        ({**KEYS, "WLM_KEY_LIMITS": "alice:rps=1"}, "WLM_KEY_LIMITS", "got 'rps=1'"),
        ({**KEYS, "WLM_KEY_LIMITS": "alice:rpm=1.5"}, "WLM_KEY_LIMITS", "whole number"),
        ({**KEYS, "WLM_KEY_LIMITS": "alice:rpm=0"}, "WLM_KEY_LIMITS", "more than 0"),
        ({**KEYS, "WLM_KEY_LIMITS": "alice:usd_per_day=-1"}, "WLM_KEY_LIMITS", "more than 0"),
        ({**KEYS, "WLM_KEY_LIMITS": "alice:rpm=1,alice:tpm=9"}, "WLM_KEY_LIMITS", "two entries"),
        ({"WLM_PRICES": "/nonexistent/prices.toml"}, "WLM_PRICES", "cannot read"),
    ],
)
def test_malformed_values_name_the_variable(
    env: dict[str, str], variable: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert info.value.variable == variable
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_the_admin_key_may_have_limits_too() -> None:
    settings = load_settings({"WLM_ADMIN_KEY": "admin-secret", "WLM_KEY_LIMITS": "admin:rpm=5"})
    assert settings.key_limits == (KeyLimit("admin", rpm=5),)


PRICES = """
# a negotiated rate, a custom provider, a local model priced after all
["openai/gpt-4o"]
input_mtok = 2.0
output_mtok = 8
cache_read_mtok = 1.0

["groq/llama-*"]
input_mtok = 0.59
output_mtok = 0.79

["local/qwen2.5-7b"]
input_mtok = 0.01
output_mtok = 0.02
reasoning_mtok = 0.05
"""


def test_a_prices_file_is_read_at_start(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(PRICES)
    settings = load_settings({"WLM_PRICES": str(path)})
    assert settings.prices_file == path
    assert settings.prices == (
        PriceEntry("openai/gpt-4o", 2.0, 8.0, cache_read_mtok=1.0),
        PriceEntry("groq/llama-*", 0.59, 0.79),
        PriceEntry("local/qwen2.5-7b", 0.01, 0.02, reasoning_mtok=0.05),
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not = [toml", "not valid TOML"),
        ("gpt-4o = 1", "a table named provider/model"),
        ('["gpt-4o"]\ninput_mtok = 1\noutput_mtok = 1', "a table named provider/model"),
        ('["openai/gpt-4o"]\ninput_mtok = 1', "output_mtok is missing"),
        ('["openai/gpt-4o"]\ninput_mtok = 1\noutput_mtok = 1\ninput = 3', "unknown field 'input'"),
        ('["openai/gpt-4o"]\ninput_mtok = "1"\noutput_mtok = 1', "a number of dollars"),
        ('["openai/gpt-4o"]\ninput_mtok = -1\noutput_mtok = 1', "a number of dollars"),
        ('["openai/gpt-4o"]\ninput_mtok = true\noutput_mtok = 1', "a number of dollars"),
    ],
)
def test_a_malformed_prices_file_says_where(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings({"WLM_PRICES": str(path)})
    assert info.value.variable == "WLM_PRICES"
    assert str(path) in str(info.value)
    assert fragment in str(info.value)
