"""The real Claude Code and Codex CLIs through `wlm serve` (issue 11, proven with the clients).

Claude Code 2.1.197 (`claude -p`, Anthropic Messages) and Codex 0.171.0 (`codex exec`,
OpenAI Responses), as `./dev test` installs them, run offline against wlm, which sends them
on to a fake Anthropic and a fake OpenAI: natively where the backend speaks the client's
dialect, translated through chat otherwise. Each test checks what the CLI printed, its exit
status, what reached the fake and the telemetry row wlm wrote. The tool round trips use
the fakes' `agent-tool` scenario (tests/fakes/scenarios.py): the first answer calls the
CLI's own shell tool to run `echo hi-from-tool`, the CLI runs it and sends the result
back, and the second answer quotes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import WlmServer
from tests.e2e.agent_clis import (
    agent_binary,
    claude_result,
    run_claude,
    run_codex,
    wait_for_telemetry,
)
from tests.e2e.e2e_helpers import calls_with, new_marker, upstream_call
from tests.fakes import FakeUpstream, serve_fake
from tests.fakes.scenarios import AGENT_TOOL_ANSWER, AGENT_TOOL_OUTPUT, agent_tool_result

pytestmark = pytest.mark.e2e

CLAUDE_KEY = "sk-client-claude-code-e2e"
CODEX_KEY = "sk-client-codex-e2e"
ROUTES = "claude-*=anthropic,gpt-*=openai"
# The agents' own model names sent elsewhere (a glob), and the fakes' tool scenario.
ALIASES = (
    "claude-via-openai-*=openai/gpt-4o-mini,"
    "tool-anthropic=anthropic/agent-tool,tool-openai=openai/agent-tool"
)
UPSTREAM_PATH = {"anthropic": "/v1/messages", "openai": "/v1/chat/completions"}
# The model name wlm sends upstream, where an alias changes it.
UPSTREAM_MODEL = {
    "claude-via-openai-haiku": "gpt-4o-mini",
    "tool-anthropic": "agent-tool",
    "tool-openai": "agent-tool",
}


def upstream_path(provider: str, upstream_endpoint: str) -> str:
    """The fake's path for a model call: native endpoints keep the client's path."""
    return "/v1/responses" if upstream_endpoint == "responses" else UPSTREAM_PATH[provider]


@pytest.fixture(scope="module")
def claude() -> Path:
    return agent_binary("claude")


@pytest.fixture(scope="module")
def codex() -> Path:
    return agent_binary("codex")


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeUpstream]]:
    anthropic_fake = serve_fake("anthropic")
    openai_fake = serve_fake("openai")
    yield {"anthropic": next(anthropic_fake), "openai": next(openai_fake)}
    for generator in (anthropic_fake, openai_fake):
        generator.close()


def start_wlm(fakes: dict[str, FakeUpstream], workdir: Path, **extra: str) -> WlmServer:
    (workdir / "models").mkdir()
    env = {
        "ANTHROPIC_API_KEY": fakes["anthropic"].api_key or "",
        "ANTHROPIC_BASE_URL": fakes["anthropic"].base_url,
        "OPENAI_API_KEY": fakes["openai"].api_key or "",
        "OPENAI_BASE_URL": fakes["openai"].base_url,
        "WLM_ROUTES": ROUTES,
        "WLM_ALIASES": ALIASES,
        "WLM_API_KEYS": f"claude-code:{CLAUDE_KEY},codex:{CODEX_KEY}",
        **extra,
    }
    return WlmServer(env, workdir).start()


@pytest.fixture(scope="module")
def wlm(
    fakes: dict[str, FakeUpstream], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WlmServer]:
    """wlm with OpenAI as a chat-only backend: every OpenAI-bound request is translated."""
    server = start_wlm(fakes, tmp_path_factory.mktemp("wlm-agents"), WLM_OPENAI_DIALECTS="chat")
    yield server
    server.stop()


def telemetry(server: WlmServer, endpoint: str, model: str, n: int) -> list[dict[str, Any]]:
    """The `requests` rows of one endpoint and client model name, once there are `n`."""
    sql = (
        "SELECT endpoint, upstream_endpoint, provider, upstream_model, client, status, "
        "prompt_tokens, completion_tokens FROM requests "
        f"WHERE endpoint = '{endpoint}' AND model = '{model}' ORDER BY started_at"
    )
    rows = wait_for_telemetry(server, sql, n)
    assert len(rows) == n, rows
    return rows


def round_trip_calls(fake: FakeUpstream, marker: str, path: str) -> list[Any]:
    """The bodies of the two model calls (`POST <path>`) a tool round trip made upstream."""
    calls = [r.json for r in calls_with(fake, marker) if r.method == "POST" and r.path == path]
    assert len(calls) == 2, calls
    return calls


def assert_rows(
    rows: list[dict[str, Any]], endpoint: str, upstream: str, provider: str, client: str
) -> None:
    for row in rows:
        assert row["endpoint"] == endpoint, row
        assert row["upstream_endpoint"] == upstream, row
        assert row["provider"] == provider, row
        assert row["client"] == client, row
        assert row["status"] == "ok", row
        # The fakes report 11 prompt and 7 completion tokens for every answer.
        assert (row["prompt_tokens"], row["completion_tokens"]) == (11, 7), row


def assert_upstream_model(rows: list[dict[str, Any]], model: str) -> None:
    """`upstream_model` is the name wlm sent upstream (what an alias made of `model`), also
    for a stream translated through chat to Anthropic (whose chunks carry the client's name)."""
    wanted = UPSTREAM_MODEL.get(model, model)
    assert {row["upstream_model"] for row in rows} == {wanted}, rows


# ---- Claude Code ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "provider", "upstream_endpoint"),
    [
        ("claude-sonnet-4-5", "anthropic", "messages"),  # pass-through
        ("claude-via-openai-haiku", "openai", "chat/completions"),  # translated
    ],
    ids=["native-anthropic", "translated-openai"],
)
def test_claude_code_answers_through_wlm(
    claude: Path,
    wlm: WlmServer,
    fakes: dict[str, FakeUpstream],
    tmp_path: Path,
    model: str,
    provider: str,
    upstream_endpoint: str,
) -> None:
    marker = new_marker()
    run, events = run_claude(claude, wlm, CLAUDE_KEY, model, f"say hi ({marker})", tmp_path)
    assert run.returncode == 0, run.explain(wlm)
    result = claude_result(events)
    assert result["subtype"] == "success", run.explain(wlm)
    assert f"Hello from fake-{provider}" in result["result"]

    _, request = upstream_call(fakes[provider], marker, path=UPSTREAM_PATH[provider])
    assert request.json["stream"] is True
    assert CLAUDE_KEY.encode() not in request.body
    rows = telemetry(wlm, "messages", model, 1)
    assert_rows(rows, "messages", upstream_endpoint, provider, "claude-code")
    assert_upstream_model(rows, model)


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_claude_code_runs_its_bash_tool_through_wlm(
    claude: Path, wlm: WlmServer, fakes: dict[str, FakeUpstream], tmp_path: Path, provider: str
) -> None:
    marker = new_marker()
    model = f"tool-{provider}"
    run, events = run_claude(claude, wlm, CLAUDE_KEY, model, f"run echo ({marker})", tmp_path)
    assert run.returncode == 0, run.explain(wlm)
    uses = [
        block
        for event in events
        if event.get("type") == "assistant"
        for block in event["message"]["content"]
        if block.get("type") == "tool_use"
    ]
    assert [u["name"] for u in uses] == ["Bash"], run.explain(wlm)
    result = claude_result(events)
    assert result["result"] == AGENT_TOOL_ANSWER + AGENT_TOOL_OUTPUT, run.explain(wlm)
    assert result["num_turns"] == 2

    first, second = round_trip_calls(fakes[provider], marker, UPSTREAM_PATH[provider])
    assert agent_tool_result(first) is None
    assert agent_tool_result(second) == AGENT_TOOL_OUTPUT  # the CLI sent the result back
    upstream = "messages" if provider == "anthropic" else "chat/completions"
    rows = telemetry(wlm, "messages", model, 2)
    assert_rows(rows, "messages", upstream, provider, "claude-code")
    assert_upstream_model(rows, model)


# ---- Codex ---------------------------------------------------------------------------------
# (wlm fixture, model, provider, what wlm called upstream)
CODEX_ROUTES = {
    "translated-anthropic": ("wlm", "claude-sonnet-4-5", "anthropic", "chat/completions"),
    "translated-openai": ("wlm", "gpt-4o-mini", "openai", "chat/completions"),
    "native-openai": ("wlm_native", "gpt-4o-mini", "openai", "responses"),
}
CODEX_TOOL_ROUTES = {
    "translated-anthropic": ("wlm", "tool-anthropic", "anthropic", "chat/completions"),
    "translated-openai": ("wlm", "tool-openai", "openai", "chat/completions"),
    "native-openai": ("wlm_native", "tool-openai", "openai", "responses"),
}


@pytest.fixture(scope="module")
def wlm_native(
    fakes: dict[str, FakeUpstream], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WlmServer]:
    """wlm with OpenAI's default dialects: Responses requests go to it as they are."""
    server = start_wlm(fakes, tmp_path_factory.mktemp("wlm-agents-native"))
    yield server
    server.stop()


@pytest.mark.parametrize("route", CODEX_ROUTES)
def test_codex_answers_through_wlm(
    codex: Path,
    fakes: dict[str, FakeUpstream],
    tmp_path: Path,
    request: pytest.FixtureRequest,
    route: str,
) -> None:
    server_fixture, model, provider, upstream = CODEX_ROUTES[route]
    server: WlmServer = request.getfixturevalue(server_fixture)
    marker = new_marker()
    run = run_codex(codex, server, CODEX_KEY, model, f"say hi ({marker})", tmp_path)
    assert run.returncode == 0, run.explain(server)
    assert run.stdout.strip() == f"Hello from fake-{provider}", run.explain(server)

    _, call = upstream_call(fakes[provider], marker, path=upstream_path(provider, upstream))
    assert CODEX_KEY.encode() not in call.body
    rows = telemetry(server, "responses", model, 1)
    assert_rows(rows, "responses", upstream, provider, "codex")
    assert_upstream_model(rows, model)


@pytest.mark.parametrize("route", CODEX_TOOL_ROUTES)
def test_codex_runs_its_exec_command_tool_through_wlm(
    codex: Path,
    fakes: dict[str, FakeUpstream],
    tmp_path: Path,
    request: pytest.FixtureRequest,
    route: str,
) -> None:
    server_fixture, model, provider, upstream = CODEX_TOOL_ROUTES[route]
    server: WlmServer = request.getfixturevalue(server_fixture)
    marker = new_marker()
    run = run_codex(codex, server, CODEX_KEY, model, f"run echo ({marker})", tmp_path)
    assert run.returncode == 0, run.explain(server)
    # Codex prints the last answer, which quotes what its exec_command tool returned.
    assert run.stdout.startswith(AGENT_TOOL_ANSWER), run.explain(server)
    assert AGENT_TOOL_OUTPUT in run.stdout, run.explain(server)

    first, second = round_trip_calls(fakes[provider], marker, upstream_path(provider, upstream))
    assert agent_tool_result(first) is None
    assert AGENT_TOOL_OUTPUT in (agent_tool_result(second) or "")  # Codex adds a header
    rows = telemetry(server, "responses", model, 2)
    assert_rows(rows, "responses", upstream, provider, "codex")
    assert_upstream_model(rows, model)
