"""An upstream that puts its own key in every field it answers with: reasoning, tool-call
arguments, content and SSE comments. The key must reach neither the client nor any
column of the telemetry file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import httpx
import pytest

from tests.conftest import WlmServer
from tests.e2e.canned_upstream import canned_upstream

pytestmark = pytest.mark.e2e

KEY = "sk-echo-provider-key-0123456789abcdef"


def _message() -> dict:
    return {
        "role": "assistant",
        "content": f"content {KEY}",
        "reasoning_content": f"reasoning {KEY}",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "lookup", "arguments": json.dumps({"key": KEY})},
            }
        ],
    }


def _completion() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-echo",
            "object": "chat.completion",
            "created": 1,
            "model": "echo-model",
            "choices": [{"index": 0, "message": _message(), "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        }
    ).encode()


def _stream() -> bytes:
    message = _message()
    chunk = {"id": "chatcmpl-echo", "object": "chat.completion.chunk", "created": 1}
    deltas = [
        {"role": "assistant", "reasoning_content": message["reasoning_content"]},
        {"content": message["content"]},
        {"tool_calls": [{"index": 0, **message["tool_calls"][0]}]},
    ]
    events = [f": processing {KEY}\n\n"]
    for delta in deltas:
        choice = {"index": 0, "delta": delta, "finish_reason": None}
        events.append(f"data: {json.dumps({**chunk, 'choices': [choice]})}\n\n")
    done = {"index": 0, "delta": {}, "finish_reason": "tool_calls"}
    events.append(f"data: {json.dumps({**chunk, 'choices': [done]})}\n\n")
    events.append("data: [DONE]\n\n")
    return "".join(events).encode()


def _echo(body: dict) -> tuple[int, dict[str, str], bytes]:
    if body.get("stream"):
        return 200, {"content-type": "text/event-stream"}, _stream()
    return 200, {"content-type": "application/json"}, _completion()


@pytest.fixture
def echo_upstream() -> Iterator[str]:
    with canned_upstream(_echo) as base_url:
        yield base_url


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_key_in_reasoning_tool_calls_content_and_comments_is_redacted_everywhere(
    echo_upstream: str, wlm_factory: Callable[..., WlmServer], tmp_path: Path, stream: bool
) -> None:
    server = wlm_factory(
        {"WLM_PROVIDERS": "echo", "ECHO_BASE_URL": echo_upstream, "ECHO_API_KEY": KEY}, tmp_path
    )
    body = {"model": "echo/m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}

    response = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=20)

    assert response.status_code == 200
    assert KEY not in response.text and "[redacted]" in response.text
    unknown = httpx.get(f"{server.base_url}/v1/models/{KEY}", timeout=20)
    assert unknown.status_code == 404 and KEY not in unknown.text
    assert server.stop() == 0
    with duckdb.connect(str(tmp_path / "data" / "telemetry.duckdb"), read_only=True) as con:
        stored = con.execute(
            "SELECT response_text, reasoning_text, tool_calls_json FROM conversations"
        ).fetchall()
    assert len(stored) == 1
    assert all(value is not None and "[redacted]" in value for value in stored[0]), stored
    assert not any(KEY in value for value in stored[0])
    assert KEY not in (tmp_path / "data" / "telemetry.duckdb").read_bytes().decode("latin-1")
