"""An upstream that puts its own key in every field it answers with: reasoning, tool-call
arguments, content and SSE comments. The key must reach neither the client nor any
column of the telemetry file.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import httpx
import pytest

from tests.conftest import WlmServer

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


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        stream = bool(body.get("stream"))
        payload = _stream() if stream else _completion()
        self.send_response(200)
        self.send_header("content-type", "text/event-stream" if stream else "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


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
