"""A very fast fake OpenAI (and Anthropic Messages) upstream for benchmarks: raw RSGI, one worker.

    python benchmarks/fake_upstream.py --port 9100 [--host 127.0.0.1] [--api-key KEY]

`POST /v1/chat/completions` (also `/chat/completions`):
  * non-stream: a fixed 729-byte `chat.completion` (as in shared/PERF_BASELINE.md);
  * `"stream": true`: 20 content chunks (the first also carries the role), a finish chunk,
    a `choices: []` usage chunk and `data: [DONE]`, each written as its own send;
  * `"model": "paced:<ms>"` with `"stream": true`: the same stream with <ms> between content
    chunks (for the paced-streams measurement).
`POST /v1/responses` (OpenAI Responses, for `proxy.py --dialects`): a response object, or
its event stream (created, in_progress, item and part added, 20 text deltas, the done
events and response.completed).

`POST /v1/messages` (Anthropic Messages, for the translated path of `proxy.py --translated`):
  * non-stream: a fixed `message` with one text block and `end_turn`;
  * `"stream": true`: Anthropic's event sequence (message_start, content_block_start, ping,
    20 `text_delta`s, content_block_stop, message_delta, message_stop), each its own send;
  * `"model": "paced:<ms>"` paces the text deltas as above.
`GET /v1/models` answers a one-entry list (handy as a readiness probe). With `--api-key`,
chat requests must carry `Authorization: Bearer <key>` (Messages requests `x-api-key: <key>`)
or get the vendor's 401.

Everything is encoded once at import; the request path only decodes `model` and `stream`
with msgspec and writes prebuilt bytes, so the fake stays far faster than any proxy under
test. Responses reuse one id: benchmarks measure transport, not content.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

import msgspec

_KEY_ENV = "WLM_FAKE_UPSTREAM_API_KEY"
_MODEL = "gpt-4o-mini"
_ANTHROPIC_MODEL = "claude-bench"
_CREATED = 1747148049
_COMPLETION_SIZE = 729
_STREAM_CHUNKS = 20


class _Request(msgspec.Struct):
    """The only fields the fake looks at; the rest of the body is skipped."""

    model: str = ""
    stream: bool = False


_decode = msgspec.json.Decoder(_Request).decode


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _completion(size: int) -> bytes:
    """A `chat.completion` whose content is padded so the body is exactly `size` bytes."""

    def build(content: str) -> bytes:
        return _compact(
            {
                "id": "chatcmpl-FastFakeUpstream000000000000",
                "object": "chat.completion",
                "created": _CREATED,
                "model": _MODEL,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": content,
                            "refusal": None,
                            "annotations": [],
                        },
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": 11,
                    "completion_tokens": 7,
                    "total_tokens": 18,
                    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                    "completion_tokens_details": {
                        "reasoning_tokens": 0,
                        "audio_tokens": 0,
                        "accepted_prediction_tokens": 0,
                        "rejected_prediction_tokens": 0,
                    },
                },
                "service_tier": "default",
                "system_fingerprint": "fp_fastfake",
            }
        )

    filler = "Hello from the fast fake upstream. " * 40
    missing = size - len(build(""))
    return build(filler[:missing])


def _stream_events() -> tuple[bytes, tuple[bytes, ...], tuple[bytes, ...]]:
    """(first content chunk, remaining content chunks, finish + usage + [DONE])."""

    def chunk(choices: list[Any], usage: Any = None) -> bytes:
        return (
            b"data: "
            + _compact(
                {
                    "id": "chatcmpl-FastFakeUpstream000000000000",
                    "object": "chat.completion.chunk",
                    "created": _CREATED,
                    "model": _MODEL,
                    "system_fingerprint": "fp_fastfake",
                    "choices": choices,
                    "usage": usage,
                }
            )
            + b"\n\n"
        )

    def delta(body: dict[str, Any], finish: str | None = None) -> list[Any]:
        return [{"index": 0, "delta": body, "logprobs": None, "finish_reason": finish}]

    first = chunk(delta({"role": "assistant", "content": "token0 "}))
    rest = tuple(chunk(delta({"content": f"token{i} "})) for i in range(1, _STREAM_CHUNKS))
    usage = {
        "prompt_tokens": 11,
        "completion_tokens": _STREAM_CHUNKS,
        "total_tokens": 11 + _STREAM_CHUNKS,
    }
    tail = (chunk(delta({}, "stop")), chunk([], usage), b"data: [DONE]\n\n")
    return first, rest, tail


def _anthropic_event(name: str, obj: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _compact(obj) + b"\n\n"


def _anthropic_usage(output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": 11,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _anthropic_message(content: list[Any], stop_reason: str | None, output_tokens: int) -> Any:
    return {
        "model": _ANTHROPIC_MODEL,
        "id": "msg_01FastFakeUpstream00000000",
        "type": "message",
        "role": "assistant",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": _anthropic_usage(output_tokens),
    }


def _anthropic_stream_events() -> tuple[tuple[bytes, ...], tuple[bytes, ...], tuple[bytes, ...]]:
    """(message_start, block start, ping), (the text deltas), (block stop, delta, stop)."""
    head = (
        _anthropic_event(
            "message_start",
            {"type": "message_start", "message": _anthropic_message([], None, 1)},
        ),
        _anthropic_event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        b'event: ping\ndata: {"type": "ping"}\n\n',
    )
    deltas = tuple(
        _anthropic_event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": f"token{i} "},
            },
        )
        for i in range(_STREAM_CHUNKS)
    )
    tail = (
        _anthropic_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _anthropic_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": _STREAM_CHUNKS},
            },
        ),
        _anthropic_event("message_stop", {"type": "message_stop"}),
    )
    return head, deltas, tail


def _responses_events() -> tuple[tuple[bytes, ...], tuple[bytes, ...], tuple[bytes, ...], bytes]:
    """OpenAI Responses: (created .. part added), (text deltas), (done .. completed), and
    the whole response object, with one sequence_number counter."""
    seq = iter(range(1000))
    text = "".join(f"token{i} " for i in range(_STREAM_CHUNKS))
    usage = {
        "input_tokens": 9,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": _STREAM_CHUNKS,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 9 + _STREAM_CHUNKS,
    }
    message = {
        "id": "msg_fast",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }

    def response(status: str, output: list[Any], usage: Any) -> dict[str, Any]:
        return {
            "id": "resp_fast",
            "object": "response",
            "created_at": _CREATED,
            "status": status,
            "model": _MODEL,
            "output": output,
            "usage": usage,
        }

    def event(kind: str, **fields: Any) -> bytes:
        obj = {"type": kind, "sequence_number": next(seq), **fields}
        return f"event: {kind}\ndata: ".encode() + _compact(obj) + b"\n\n"

    part = {"type": "output_text", "text": "", "annotations": []}
    head = (
        event("response.created", response=response("in_progress", [], None)),
        event("response.in_progress", response=response("in_progress", [], None)),
        event(
            "response.output_item.added",
            output_index=0,
            item={**message, "status": "in_progress", "content": []},
        ),
        event(
            "response.content_part.added",
            item_id="msg_fast",
            output_index=0,
            content_index=0,
            part=part,
        ),
    )
    deltas = tuple(
        event(
            "response.output_text.delta",
            item_id="msg_fast",
            output_index=0,
            content_index=0,
            delta=f"token{i} ",
        )
        for i in range(_STREAM_CHUNKS)
    )
    tail = (
        event(
            "response.output_text.done",
            item_id="msg_fast",
            output_index=0,
            content_index=0,
            text=text,
        ),
        event(
            "response.content_part.done",
            item_id="msg_fast",
            output_index=0,
            content_index=0,
            part={**part, "text": text},
        ),
        event("response.output_item.done", output_index=0, item=message),
        event("response.completed", response=response("completed", [message], usage)),
    )
    return head, deltas, tail, _compact(response("completed", [message], usage))


COMPLETION = _completion(_COMPLETION_SIZE)
RS_HEAD, RS_DELTAS, RS_TAIL, RESPONSE = _responses_events()
FIRST, REST, TAIL = _stream_events()
MESSAGE = _compact(
    _anthropic_message(
        [{"type": "text", "text": "Hello from the fast fake upstream."}], "end_turn", 7
    )
)
AN_HEAD, AN_DELTAS, AN_TAIL = _anthropic_stream_events()
MODELS = _compact(
    {
        "object": "list",
        "data": [{"id": _MODEL, "object": "model", "created": _CREATED, "owned_by": "system"}],
    }
)
_JSON = [("content-type", "application/json")]
_SSE = [("content-type", "text/event-stream; charset=utf-8")]
_UNAUTHORIZED = _compact(
    {
        "error": {
            "message": "Incorrect API key provided. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
)
_BAD_JSON = _compact(
    {
        "error": {
            "message": "We could not parse the JSON body of your request.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
)
_ANTHROPIC_UNAUTHORIZED = _compact(
    {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        "request_id": "req_011CFastFakeUpstream0000",
    }
)
_ANTHROPIC_BAD_JSON = _compact(
    {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "The request body is not valid JSON.",
        },
        "request_id": "req_011CFastFakeUpstream0000",
    }
)
_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_RESPONSES_PATHS = frozenset({"/v1/responses", "/responses"})
_MESSAGES_PATH = "/v1/messages"


def _not_found(method: str, path: str) -> bytes:
    return _compact(
        {
            "error": {
                "message": f"Invalid URL ({method} {path})",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
    )


def _pace_ms(model: str) -> float:
    """Milliseconds between content chunks for `paced:<ms>`, else 0."""
    if not model.startswith("paced:"):
        return 0.0
    try:
        return max(0.0, float(model[len("paced:") :]))
    except ValueError:
        return 0.0


class FastUpstream:
    """The RSGI application; `api_key` None accepts any (or no) Authorization header."""

    def __init__(self, api_key: str | None) -> None:
        self._api_key = api_key
        self._authorization = f"Bearer {api_key}" if api_key else None

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        """Serve one HTTP request (RSGI: read with `proto()`, answer with `response_*`)."""
        if scope.proto != "http":
            return
        body = await proto()
        if scope.method == "POST" and scope.path == _MESSAGES_PATH:
            await self._messages(scope, proto, body)
            return
        if self._authorization and scope.headers.get("authorization") != self._authorization:
            proto.response_bytes(401, _JSON, _UNAUTHORIZED)
            return
        if scope.method == "GET" and scope.path in ("/v1/models", "/models"):
            proto.response_bytes(200, _JSON, MODELS)
            return
        responses = scope.path in _RESPONSES_PATHS
        if scope.method != "POST" or (scope.path not in _CHAT_PATHS and not responses):
            proto.response_bytes(404, _JSON, _not_found(scope.method, scope.path))
            return
        try:
            request = _decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            proto.response_bytes(400, _JSON, _BAD_JSON)
            return
        if not request.stream:
            proto.response_bytes(200, _JSON, RESPONSE if responses else COMPLETION)
            return
        head, deltas, tail = (RS_HEAD, RS_DELTAS, RS_TAIL) if responses else ((FIRST,), REST, TAIL)
        transport = proto.response_stream(200, _SSE)
        pause = _pace_ms(request.model) / 1000
        for event in head:
            await transport.send_bytes(event)
        for event in deltas:
            if pause:
                await asyncio.sleep(pause)
            await transport.send_bytes(event)
        for event in tail:
            await transport.send_bytes(event)

    async def _messages(self, scope: Any, proto: Any, body: bytes) -> None:
        """Anthropic's `POST /v1/messages`: a message, or its event stream."""
        if self._api_key and scope.headers.get("x-api-key") != self._api_key:
            proto.response_bytes(401, _JSON, _ANTHROPIC_UNAUTHORIZED)
            return
        try:
            request = _decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            proto.response_bytes(400, _JSON, _ANTHROPIC_BAD_JSON)
            return
        if not request.stream:
            proto.response_bytes(200, _JSON, MESSAGE)
            return
        transport = proto.response_stream(200, _SSE)
        pause = _pace_ms(request.model) / 1000
        for event in AN_HEAD:
            await transport.send_bytes(event)
        for event in AN_DELTAS:
            if pause:
                await asyncio.sleep(pause)
            await transport.send_bytes(event)
        for event in AN_TAIL:
            await transport.send_bytes(event)


# Granian imports this module in its worker process and serves `app`; the key travels
# through the environment because the worker does not see our command line.
app = FastUpstream(os.environ.get(_KEY_ENV) or None)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--api-key", default=None, help="require this bearer key")
    args = parser.parse_args(argv)
    if args.api_key:
        os.environ[_KEY_ENV] = args.api_key
    Granian(
        target="fake_upstream:app",
        address=args.host,
        port=args.port,
        interface=Interfaces.RSGI,
        workers=1,
        http=HTTPModes.http1,
        backlog=2048,
        log_access=False,
        working_dir=Path(__file__).resolve().parent,
    ).serve()


if __name__ == "__main__":
    main()
