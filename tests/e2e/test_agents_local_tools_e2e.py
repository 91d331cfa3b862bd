"""Claude Code and Codex complete a tool round trip through `wlm serve` to a local model
(issue 11).

The models are tiny random-weight test models that call one tool, once (`wlm
make-test-model --ctx 65536 --tool-call NAME JSON`, docs/local-models.md): while a
request offers tools and holds no tool result, the embedded llama.cpp engine answers
with that call (Hermes 2 Pro `<tool_call>` tokens its chat parser turns into a
`tool_calls` message); after the tool's result, with 8 tokens of text. `tool-bash` calls
Claude Code's `Bash` tool and `tool-exec` Codex's `exec_command` tool, each to `cat` a
file the test writes into the CLI's working directory with a fresh marker in it. So the
marker reaches the model's second request only if the CLI ran the command there.

Each test checks what a user sees (the exit status, the CLI showing the call and the
command's output, the model's final text printed) and the two telemetry rows of the
round trip: provider `local`, the CLI's endpoint, finish reasons `tool_calls` then
`stop`, the call wlm logged, and the tool's result in the second request. Claude Code's
Messages go to the engine's own /v1/messages and, with `WLM_LOCAL_DIALECTS=chat`,
translated through chat; Codex's Responses are translated either way (its namespace and
web_search tools), so it runs once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import WlmServer
from tests.e2e.agent_clis import (
    agent_binary,
    claude_result,
    run_claude,
    run_codex,
    wait_for_telemetry,
)
from tests.e2e.e2e_helpers import new_marker
from tests.e2e.test_agents_local_e2e import CONTEXT
from tests.fakes.scenarios import agent_tool_result

pytestmark = [pytest.mark.e2e, pytest.mark.local]

CLAUDE_KEY = "sk-client-claude-code-local-tools-e2e"
CODEX_KEY = "sk-client-codex-local-tools-e2e"
SDK_KEY = "sk-client-sdk-local-tools-e2e"
MARKER_FILE = "wlm-tool-marker.txt"
COMMAND = f"cat {MARKER_FILE}"
# model id -> the one call it makes: each agent's own shell tool, running COMMAND.
CALLS: dict[str, tuple[str, dict[str, str]]] = {
    "tool-bash": ("Bash", {"command": COMMAND, "description": "Print the marker file"}),
    "tool-exec": ("exec_command", {"cmd": COMMAND}),
}
STOP_AFTER = 8  # --tool-call's default: the text reply after the tool's result


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both tool-calling models, written by the CLI as a user would."""
    models = tmp_path_factory.mktemp("tool-models")
    for model, (name, arguments) in CALLS.items():
        made = subprocess.run(
            [
                sys.executable,
                "-m",
                "wlm.cli",
                "make-test-model",
                str(models / f"{model}.gguf"),
                "--ctx",
                str(CONTEXT),
                "--tool-call",
                name,
                json.dumps(arguments),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr
    return models


def start_wlm(models: Path, workdir: Path, **extra: str) -> WlmServer:
    env = {
        "WLM_MODELS_DIR": str(models),
        "WLM_ALIASES": "claude-*=local/tool-bash,gpt-*=local/tool-exec",
        "WLM_API_KEYS": f"claude-code:{CLAUDE_KEY},codex:{CODEX_KEY},sdk:{SDK_KEY}",
        # One slot with the whole trained context, one thread (a busy 2-core machine);
        # both models stay loaded.
        "WLM_LOCAL_THREADS": "1",
        "WLM_LOCAL_PARALLEL": "1",
        "WLM_LOCAL_CTX_SIZE": str(CONTEXT),
        "WLM_MAX_LOADED_MODELS": "2",
        **extra,
    }
    return WlmServer(env, workdir).start()


@pytest.fixture(scope="module")
def wlm(models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WlmServer]:
    """wlm with the engine's own endpoints (the default)."""
    server = start_wlm(models, tmp_path_factory.mktemp("wlm-local-tools"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def wlm_chat(models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WlmServer]:
    """wlm sending Messages and Responses to the engine translated through chat."""
    server = start_wlm(
        models, tmp_path_factory.mktemp("wlm-local-tools-chat"), WLM_LOCAL_DIALECTS="chat"
    )
    yield server
    server.stop()


def round_trip(server: WlmServer, client: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The telemetry of one CLI's two model calls (the call, then the answer), with the
    request wlm received and the reply or tool calls it logged."""
    sql = (
        "SELECT r.endpoint, r.upstream_endpoint, r.provider, r.upstream_model, r.status, "
        "r.finish_reason, r.completion_tokens, c.request_json, c.response_text, "
        "c.tool_calls_json FROM requests r JOIN conversations c ON c.request_id = r.id "
        f"WHERE r.client = '{client}' ORDER BY r.started_at"
    )
    rows = wait_for_telemetry(server, sql, 2)
    assert len(rows) == 2, rows
    return rows[0], rows[1]


def assert_round_trip(
    server: WlmServer, client: str, endpoint: str, upstream: str, model: str, marker: str
) -> str:
    """The two rows of a tool round trip through the local engine; the answer's text."""
    call, answer = round_trip(server, client)
    for row in (call, answer):
        assert row["endpoint"] == endpoint, row
        assert row["upstream_endpoint"] == upstream, row
        assert row["provider"] == "local", row
        assert row["upstream_model"] == model, row
        assert row["status"] == "ok", row
    # The call: `<tool_call>`, the call, `</tool_call>` and end-of-sequence.
    assert (call["finish_reason"], call["completion_tokens"]) == ("tool_calls", 4), call
    name, arguments = CALLS[model]
    [logged] = json.loads(call["tool_calls_json"])
    assert logged["function"]["name"] == name, logged
    assert json.loads(logged["function"]["arguments"]) == arguments, logged
    assert agent_tool_result(json.loads(call["request_json"])) is None
    # The answer: the CLI ran the command and sent its output back (Codex adds a header).
    assert marker in (agent_tool_result(json.loads(answer["request_json"])) or ""), answer
    assert answer["finish_reason"] == "stop", answer
    assert answer["completion_tokens"] == STOP_AFTER + 1, answer
    assert answer["response_text"].strip(), answer
    return str(answer["response_text"])


# (wlm fixture, what wlm called on the engine)
CLAUDE_ROUTES = {"native": ("wlm", "messages"), "translated": ("wlm_chat", "chat/completions")}


@pytest.mark.parametrize("route", CLAUDE_ROUTES)
def test_claude_code_runs_its_bash_tool_on_a_local_model(
    tmp_path: Path, request: pytest.FixtureRequest, route: str
) -> None:
    server_fixture, upstream = CLAUDE_ROUTES[route]
    server: WlmServer = request.getfixturevalue(server_fixture)
    marker = new_marker()
    (tmp_path / MARKER_FILE).write_text(marker + "\n")

    run, events = run_claude(
        agent_binary("claude"), server, CLAUDE_KEY, "claude-sonnet-4-5", "run it", tmp_path
    )

    assert run.returncode == 0, run.explain(server)
    # The call the model made, then the command's output Claude Code sent back.
    blocks = [
        block
        for event in events
        if event.get("type") in ("assistant", "user")
        for block in event["message"]["content"]
        if isinstance(block, dict)
    ]
    uses = [b for b in blocks if b.get("type") == "tool_use"]
    results = [b for b in blocks if b.get("type") == "tool_result"]
    assert [(u["name"], u["input"]) for u in uses] == [CALLS["tool-bash"]], run.explain(server)
    assert [(r["tool_use_id"], r["content"], r["is_error"]) for r in results] == [
        (uses[0]["id"], marker, False)
    ], run.explain(server)
    result = claude_result(events)
    assert (result["subtype"], result["is_error"], result["num_turns"]) == ("success", False, 2)
    answer = assert_round_trip(server, "claude-code", "messages", upstream, "tool-bash", marker)
    assert result["result"] == answer, (result, answer)


def test_codex_runs_its_exec_command_tool_on_a_local_model(wlm: WlmServer, tmp_path: Path) -> None:
    marker = new_marker()
    (tmp_path / MARKER_FILE).write_text(marker + "\n")

    run = run_codex(agent_binary("codex"), wlm, CODEX_KEY, "gpt-5-codex", "run it", tmp_path)

    assert run.returncode == 0, run.explain(wlm)
    # Codex shows the command it ran and its output on stderr, and prints the final
    # message on stdout, on a line of its own without the leading space.
    assert f"/bin/bash -lc '{COMMAND}' in {tmp_path}" in run.stderr, run.explain(wlm)
    assert f"\n{marker}\n" in run.stderr, run.explain(wlm)
    answer = assert_round_trip(wlm, "codex", "responses", "chat/completions", "tool-exec", marker)
    assert run.stdout.strip() == answer.strip(), (run.stdout, answer)


@pytest.mark.parametrize("temperature", [0.0, 1.0, 2.0])
def test_the_model_calls_once_then_answers_at_any_temperature(
    wlm: WlmServer, temperature: float
) -> None:
    """Chat Completions straight to the model: the call while the request has tools and
    no result, text once it has the result (and without tools)."""
    name, arguments = CALLS["tool-bash"]
    tools = [
        {
            "type": "function",
            "function": {
                "name": name,
                "parameters": {
                    "type": "object",
                    "properties": {
                        "command": {"type": "string"},
                        "description": {"type": "string"},
                    },
                    "required": ["command"],
                },
            },
        }
    ]
    ask = [{"role": "user", "content": "run it"}]

    def chat(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        response = httpx.post(
            f"{wlm.base_url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {SDK_KEY}"},
            json={
                "model": "local/tool-bash",
                "messages": messages,
                "temperature": temperature,
                **extra,
            },
            timeout=60,
        )
        assert response.status_code == 200, response.text
        choice: dict[str, Any] = response.json()["choices"][0]
        return choice

    called = chat(ask, tools=tools)
    assert called["finish_reason"] == "tool_calls", called
    [call] = called["message"]["tool_calls"]
    assert call["function"]["name"] == name
    assert json.loads(call["function"]["arguments"]) == arguments

    result = {"role": "tool", "tool_call_id": call["id"], "content": "marker"}
    answered = chat([*ask, called["message"], result], tools=tools)
    assert answered["finish_reason"] == "stop", answered
    assert answered["message"]["content"].strip(), answered
    assert not answered["message"].get("tool_calls"), answered

    plain = chat(ask)
    assert plain["finish_reason"] == "stop", plain
    assert plain["message"]["content"].strip(), plain
