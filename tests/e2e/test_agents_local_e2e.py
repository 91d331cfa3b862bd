"""Claude Code and Codex through `wlm serve` to a local llama.cpp model (issue 11).

The model is the tiny random-weight test model written for agents (`wlm make-test-model
--ctx 65536 --stop-after 8`): its context takes the agents' 10k-token first prompts, and
every reply is 8 tokens of gibberish that end with end-of-sequence, so the CLIs get a
finished turn (`end_turn` / `completed`) rather than a cut-off one they retry or wait
on. Both CLIs run against one wlm; each test checks the exit status, that the CLI
printed exactly the text the engine produced (as wlm's conversation log recorded it)
and the telemetry rows: the CLI's endpoint, provider `local`, and the engine's endpoint.

Each test runs twice: against the engine's own endpoints (the default), and with
`WLM_LOCAL_DIALECTS=chat`, translated through chat. Claude Code's Messages reach the
engine's /v1/messages; Codex's Responses go translated either way, because Codex
always sends tool types the engine's /v1/responses skips (namespace, web_search).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
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

pytestmark = [pytest.mark.e2e, pytest.mark.local]

MODEL = "tiny-agent"
CLAUDE_KEY = "sk-client-claude-code-local-e2e"
CODEX_KEY = "sk-client-codex-local-e2e"
SDK_KEY = "sk-client-sdk-local-e2e"
STOP_AFTER = 8
CONTEXT = 65536


@pytest.fixture(scope="module", params=["native", "translated"])
def wlm(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WlmServer]:
    """wlm with the agents' model names all sent to the local tiny model."""
    workdir = tmp_path_factory.mktemp(f"wlm-agents-local-{request.param}")
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "wlm.cli",
            "make-test-model",
            str(workdir / "models" / f"{MODEL}.gguf"),
            "--ctx",
            str(CONTEXT),
            "--stop-after",
            str(STOP_AFTER),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    env = {
        "WLM_ALIASES": f"claude-*=local/{MODEL},gpt-*=local/{MODEL}",
        "WLM_API_KEYS": f"claude-code:{CLAUDE_KEY},codex:{CODEX_KEY},sdk:{SDK_KEY}",
        # One slot with the whole trained context; one thread (a busy 2-core machine).
        "WLM_LOCAL_THREADS": "1",
        "WLM_LOCAL_PARALLEL": "1",
        "WLM_LOCAL_CTX_SIZE": str(CONTEXT),
    }
    if request.param == "translated":
        env["WLM_LOCAL_DIALECTS"] = "chat"
    server = WlmServer(env, workdir).start()
    yield server
    server.stop()


def telemetry(server: WlmServer, client: str, n: int) -> list[dict[str, Any]]:
    """The `requests` rows of one client, with the reply wlm logged, once there are `n`."""
    sql = (
        "SELECT r.endpoint, r.upstream_endpoint, r.provider, r.upstream_model, r.status, "
        "r.finish_reason, r.prompt_tokens, r.completion_tokens, c.response_text "
        "FROM requests r "
        "JOIN conversations c ON c.request_id = r.id "
        f"WHERE r.client = '{client}' ORDER BY r.started_at"
    )
    rows = wait_for_telemetry(server, sql, n)
    assert len(rows) == n, rows
    return rows


def native(server: WlmServer) -> bool:
    return server.env.get("WLM_LOCAL_DIALECTS") != "chat"


def assert_local_rows(rows: list[dict[str, Any]], endpoint: str, upstream: str) -> None:
    for row in rows:
        assert row["endpoint"] == endpoint, row
        assert row["upstream_endpoint"] == upstream, row
        assert row["provider"] == "local", row
        assert row["upstream_model"] == MODEL, row
        assert row["finish_reason"] == "stop", row
        # The agents' system prompt and tools: more than the usual 2048-token test model.
        assert row["prompt_tokens"] > 4096, row
        # The model's 8 tokens and its end-of-sequence.
        assert row["completion_tokens"] == STOP_AFTER + 1, row
    # Codex closes the connection as soon as it has response.completed, often before the
    # engine's [DONE]: a whole answer all the same.
    assert all(row["status"] == "ok" for row in rows), rows


def test_claude_code_prints_the_local_models_reply(wlm: WlmServer, tmp_path: Path) -> None:
    run, events = run_claude(
        agent_binary("claude"), wlm, CLAUDE_KEY, "claude-sonnet-4-5", "say hi", tmp_path
    )

    assert run.returncode == 0, run.explain(wlm)
    result = claude_result(events)
    assert result["subtype"] == "success", result
    assert result["is_error"] is False, result
    [row] = telemetry(wlm, "claude-code", 1)
    assert_local_rows([row], "messages", "messages" if native(wlm) else "chat/completions")
    assert result["result"] == row["response_text"], (result, row)
    assert result["result"].strip(), result


def test_codex_prints_the_local_models_reply(wlm: WlmServer, tmp_path: Path) -> None:
    run = run_codex(agent_binary("codex"), wlm, CODEX_KEY, "gpt-5-codex", "say hi", tmp_path)

    assert run.returncode == 0, run.explain(wlm)
    [row] = telemetry(wlm, "codex", 1)
    # Codex prints the final message on a line of its own, without the leading space.
    assert run.stdout.strip() == row["response_text"].strip(), (run.stdout, row)
    assert run.stdout.strip(), run.explain(wlm)
    # Translated either way: Codex's namespace and web_search tools.
    assert_local_rows([row], "responses", "chat/completions")


@pytest.mark.parametrize("temperature", [0.0, 1.0, 2.0])
def test_the_model_stops_by_itself_at_any_temperature(wlm: WlmServer, temperature: float) -> None:
    """No output limit: the reply ends after STOP_AFTER tokens with finish reason stop."""
    response = httpx.post(
        f"{wlm.base_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {CODEX_KEY}"},
        json={
            "model": f"local/{MODEL}",
            "messages": [{"role": "user", "content": "hello " * 3000}],
            "temperature": temperature,
        },
        timeout=60,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["finish_reason"] == "stop", body
    assert body["choices"][0]["message"]["content"].strip(), body
    assert body["usage"]["completion_tokens"] == STOP_AFTER + 1, body


def test_count_tokens_for_a_local_model_is_the_engines_exact_count(wlm: WlmServer) -> None:
    """Not an estimate: the engine applies its chat template and tokenizes, and the
    count is what the same request then reports as its input."""
    client = anthropic.Anthropic(base_url=wlm.base_url, api_key=SDK_KEY, max_retries=0)
    body: Any = {
        "model": "claude-haiku-4-5",
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "count these words, please"}],
    }
    raw = client.messages.with_raw_response.count_tokens(**body)
    assert "x-wlm-estimate" not in raw.headers
    counted = raw.parse().input_tokens
    message = client.messages.create(max_tokens=4, **body)
    usage = message.usage
    assert counted == usage.input_tokens + (usage.cache_read_input_tokens or 0)
