"""Model names resolve in the contract's order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wlm.catalog import listed_id
from wlm.config import load_settings
from wlm.errors import ModelNotFound, ProviderNotConfigured
from wlm.routing.resolve import Route, Router

ENV = {
    "OPENAI_API_KEY": "sk-openai-test",
    "OPENROUTER_API_KEY": "sk-or-test",
    "WLM_ROUTES": "gpt-*=openai,claude-*=anthropic",
    "WLM_ALIASES": "fast=gpt-4o-mini,tiny=llama/tiny,or=openrouter/meta-llama/llama-3-8b",
    "WLM_DEFAULT_PROVIDER": "openrouter",
}


def router(env: dict[str, str] = ENV, local: frozenset[str] = frozenset({"llama/tiny"})) -> Router:
    return Router(load_settings(env), lambda: local)


def test_contract_order() -> None:
    r = router()
    assert r.resolve("fast") == Route("openai", "gpt-4o-mini", "route")
    assert r.resolve("tiny") == Route("local", "llama/tiny", "local")
    assert r.resolve("llama/tiny") == Route("local", "llama/tiny", "local")
    assert r.resolve("local/llama/tiny") == Route("local", "llama/tiny", "prefix")
    assert r.resolve("gpt-4o") == Route("openai", "gpt-4o", "route")
    assert r.resolve("openai/gpt-4o") == Route("openai", "gpt-4o", "prefix")
    assert r.resolve("or") == Route("openrouter", "meta-llama/llama-3-8b", "prefix")
    # OpenRouter's vendor/model ids fall through to the default provider.
    assert r.resolve("meta-llama/llama-3-8b") == Route(
        "openrouter", "meta-llama/llama-3-8b", "default"
    )
    # "openai/..." is a prefix only because openai is configured.
    no_openai = {k: v for k, v in ENV.items() if k != "OPENAI_API_KEY"} | {"WLM_ROUTES": ""}
    assert router(no_openai).resolve("openai/gpt-4o") == Route(
        "openrouter", "openai/gpt-4o", "default"
    )


def test_route_to_unconfigured_provider_names_the_variable() -> None:
    with pytest.raises(ProviderNotConfigured, match="ANTHROPIC_API_KEY"):
        router().resolve("claude-sonnet-4-5")


def test_unknown_model_without_default_is_404_naming_it() -> None:
    env = {"OPENAI_API_KEY": "sk-x1234"}
    with pytest.raises(ModelNotFound) as info:
        router(env).resolve("mystery-model")
    assert info.value.status == 404
    assert "mystery-model" in info.value.message
    with pytest.raises(ModelNotFound, match="ANTHROPIC_API_KEY"):
        router(env).resolve("anthropic/claude-x")


names = st.from_regex(r"[a-z0-9][a-z0-9._/-]{0,30}", fullmatch=True)


@given(name=names)
def test_configured_prefix_always_routes_to_that_provider(name: str) -> None:
    env = {"OPENAI_API_KEY": "sk-x1234", "OPENROUTER_API_KEY": "sk-y1234"}
    for provider in ("openai", "openrouter"):
        route = router(env, frozenset()).resolve(f"{provider}/{name}")
        assert route == Route(provider, name, "prefix")


@given(name=names)
def test_local_ids_win_over_routes_and_default(name: str) -> None:
    env = {"OPENAI_API_KEY": "sk-x1234", "WLM_ROUTES": "*=openai", "WLM_DEFAULT_PROVIDER": "openai"}
    assert router(env, frozenset({name})).resolve(name) == Route("local", name, "local")


@given(name=names)
def test_resolution_is_total_with_a_default(name: str) -> None:
    env = {"OPENROUTER_API_KEY": "sk-y1234", "WLM_DEFAULT_PROVIDER": "openrouter"}
    route = router(env, frozenset()).resolve(name)
    assert route.provider in {"openrouter", "local"}
    # Whatever matched, routes_to agrees with resolve.
    assert router(env, frozenset()).routes_to(name, route.provider)


_GLOBS = ["*", "*/*", "*claude*", "gpt-*", "anthropic/*", "openai/*", "meta-*"]
_PROVIDERS = ["openai", "anthropic", "openrouter"]


@given(
    routes=st.lists(st.tuples(st.sampled_from(_GLOBS), st.sampled_from(_PROVIDERS)), max_size=3),
    model_id=st.sampled_from(["gpt-4o", "claude-3-5", "anthropic/claude-3.5", "meta-llama/x"]),
    provider=st.sampled_from(_PROVIDERS),
)
def test_every_listed_id_routes_back_to_the_provider_that_listed_it(
    routes: list[tuple[str, str]], model_id: str, provider: str
) -> None:
    """/v1/models lists an id only in a form that resolves back to its provider; with no
    glob in the way that is always possible (bare or prefixed)."""
    env = {
        "OPENAI_API_KEY": "k1",
        "ANTHROPIC_API_KEY": "k2",
        "OPENROUTER_API_KEY": "k3",
        "WLM_ROUTES": ",".join(f"{glob}={name}" for glob, name in routes),
    }
    r = Router(load_settings(env))

    listed = listed_id(r, model_id, provider)

    if listed is not None:
        assert r.resolve(listed).provider == provider
    if not routes:
        assert listed is not None


def test_alias_globs_map_a_clients_own_model_names_exact_first_then_in_order() -> None:
    env = {
        "OPENAI_API_KEY": "sk-openai-test",
        "WLM_ALIASES": "claude-haiku-*=local/tiny,claude-*=openai/gpt-4o-mini,"
        "claude-haiku-4-5=openai/gpt-4o,gpt-?=openai/gpt-4o",
    }
    r = router(env, frozenset({"tiny"}))
    # An exact alias beats any glob, wherever it is written.
    assert r.resolve("claude-haiku-4-5") == Route("openai", "gpt-4o", "prefix")
    # Globs are tried in the order written: the first match wins.
    assert r.resolve("claude-haiku-3") == Route("local", "tiny", "prefix")
    assert r.resolve("claude-sonnet-4-5") == Route("openai", "gpt-4o-mini", "prefix")
    assert r.resolve("gpt-5") == Route("openai", "gpt-4o", "prefix")
    # No alias matches: the name resolves as written (here: no route at all).
    with pytest.raises(ModelNotFound):
        r.resolve("mistral-large")


def test_a_model_found_or_dropped_by_a_rescan_routes_at_once() -> None:
    found: list[frozenset[str]] = [frozenset()]
    r = Router(load_settings(ENV), lambda: found[0])
    assert r.resolve("gpt-4o") == Route("openai", "gpt-4o", "route")
    assert r.resolve("new-gguf").provider == "openrouter"  # the default, before the rescan
    found[0] = frozenset({"new-gguf", "gpt-4o"})  # a rescan: a new set of ids
    assert r.resolve("new-gguf") == Route("local", "new-gguf", "local")
    assert r.resolve("gpt-4o") == Route("local", "gpt-4o", "local")  # local ids win
    found[0] = frozenset()
    assert r.resolve("new-gguf").provider == "openrouter"
    assert r.resolve("gpt-4o") == Route("openai", "gpt-4o", "route")
