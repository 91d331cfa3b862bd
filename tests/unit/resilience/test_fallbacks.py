"""The ordered model names a request tries: its own chain, else WLM_FALLBACKS."""

from __future__ import annotations

import doctest
from fnmatch import fnmatchcase
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wlm.resilience.fallbacks as fallbacks
import wlm.routing.patterns as patterns
from wlm.errors import BadRequest
from wlm.resilience.fallbacks import MAX_REQUEST_CHAIN, FallbackChains, request_chain
from wlm.routing.patterns import PatternTable, is_glob

CHAINS = FallbackChains(
    [
        ("gpt-4o", ("openrouter/openai/gpt-4o", "qwen2.5-7b")),
        ("claude-*", ("openrouter/anthropic/claude-sonnet-4.5",)),
        ("claude-haiku-*", ("never-reached",)),  # an earlier glob already matches
        ("claude-opus-4", ("anthropic/claude-sonnet-4-5",)),  # exact beats the glob
    ]
)


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(fallbacks).failed == 0
    assert doctest.testmod(patterns).failed == 0


def test_configured_chains_exact_first_then_globs_in_written_order() -> None:
    assert CHAINS.chain("gpt-4o") == ("gpt-4o", "openrouter/openai/gpt-4o", "qwen2.5-7b")
    assert CHAINS.chain("claude-haiku-4-5") == (
        "claude-haiku-4-5",
        "openrouter/anthropic/claude-sonnet-4.5",
    )
    assert CHAINS.chain("claude-opus-4") == ("claude-opus-4", "anthropic/claude-sonnet-4-5")
    assert CHAINS.chain("mistral-small") == ("mistral-small",)


def test_an_alias_target_finds_its_chain_when_the_name_written_has_none() -> None:
    assert CHAINS.chain("fast", alias={"fast": "gpt-4o"}.get)[1:] == (
        "openrouter/openai/gpt-4o",
        "qwen2.5-7b",
    )
    # The name as written wins over its alias target.
    assert CHAINS.chain("claude-x", alias={"claude-x": "gpt-4o"}.get) == (
        "claude-x",
        "openrouter/anthropic/claude-sonnet-4.5",
    )


def test_a_model_appears_once_even_when_its_chain_names_it() -> None:
    chains = FallbackChains([("claude-*", ("claude-sonnet-4-5", "local/qwen"))])
    assert chains.chain("claude-sonnet-4-5") == ("claude-sonnet-4-5", "local/qwen")


def test_the_body_models_field_replaces_the_configured_chain() -> None:
    requested = request_chain(None, {"model": "gpt-4o", "models": ["local/qwen", "gpt-4o"]})
    assert CHAINS.chain("gpt-4o", requested) == ("gpt-4o", "local/qwen")


def test_the_header_is_a_comma_list_and_the_body_wins_over_it() -> None:
    assert request_chain(" a/b , c ,, ", {}) == ("a/b", "c")
    assert request_chain("a/b", {"models": ["c"]}) == ("c",)
    assert request_chain(None, {"model": "x"}) is None


@pytest.mark.parametrize(("header", "body"), [("", {}), ("none", {}), (None, {"models": []})])
def test_a_request_may_ask_for_no_alternatives(header: str | None, body: dict[str, Any]) -> None:
    requested = request_chain(header, body)
    assert requested == ()
    assert CHAINS.chain("gpt-4o", requested) == ("gpt-4o",)


@pytest.mark.parametrize("models", ["gpt-4o", [1, 2], ["ok", ""], ["ok", None], {"a": 1}])
def test_a_malformed_models_field_is_a_400_naming_it(models: Any) -> None:
    with pytest.raises(BadRequest) as info:
        request_chain(None, {"models": models})
    assert info.value.status == 400
    assert info.value.param == "models"


def test_a_request_chain_is_bounded() -> None:
    names = [f"m{i}" for i in range(MAX_REQUEST_CHAIN + 1)]
    with pytest.raises(BadRequest, match=f"at most {MAX_REQUEST_CHAIN}"):
        request_chain(None, {"models": names})
    with pytest.raises(BadRequest, match="x-wlm-fallbacks"):
        request_chain(",".join(names), {})
    assert request_chain(",".join(names[:-1]), {}) == tuple(names[:-1])


NAMES = st.text(alphabet="abc-*?/", min_size=1, max_size=6)


@given(
    model=st.text(alphabet="abc-/", min_size=1, max_size=6),
    requested=st.none() | st.lists(st.text(alphabet="abc-/", min_size=1, max_size=6), max_size=8),
)
def test_a_chain_starts_with_the_model_and_keeps_the_requested_order(
    model: str, requested: list[str] | None
) -> None:
    chain = CHAINS.chain(model, None if requested is None else tuple(requested))
    assert chain[0] == model
    assert len(set(chain)) == len(chain)
    if requested is not None:
        expected = [name for name in dict.fromkeys(requested) if name != model]
        assert list(chain[1:]) == expected


@given(
    pairs=st.lists(st.tuples(NAMES, st.integers()), max_size=8),
    name=st.text(alphabet="abc-/", min_size=1, max_size=6),
)
def test_pattern_table_exact_wins_then_the_first_glob_that_matches(
    pairs: list[tuple[str, int]], name: str
) -> None:
    exact = [value for pattern, value in pairs if not is_glob(pattern) and pattern == name]
    globs = [value for pattern, value in pairs if is_glob(pattern) and fnmatchcase(name, pattern)]
    expected = exact[-1] if exact else (globs[0] if globs else None)
    assert PatternTable(pairs).get(name) == expected
