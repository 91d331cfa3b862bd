"""Fake upstream providers (OpenAI, OpenRouter, Anthropic) for wlm's tests."""

from tests.fakes.embeddings import vector_for
from tests.fakes.scenarios import (
    WIRE_DIR,
    Kind,
    Reply,
    Scenario,
    ScenarioError,
    load_replay,
    parse_scenario,
)
from tests.fakes.upstream import (
    DEFAULT_KEYS,
    DEFAULT_MODELS,
    FLAVORS,
    FakeUpstream,
    RecordedRequest,
    serve_fake,
)

__all__ = [
    "DEFAULT_KEYS",
    "DEFAULT_MODELS",
    "FLAVORS",
    "WIRE_DIR",
    "FakeUpstream",
    "Kind",
    "RecordedRequest",
    "Reply",
    "Scenario",
    "ScenarioError",
    "load_replay",
    "parse_scenario",
    "serve_fake",
    "vector_for",
]
