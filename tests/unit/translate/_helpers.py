"""Shared test helpers: recorded Anthropic streams, and the two SDKs as referees."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from wlm.sse import SSEParser
from wlm.translate import AnthropicStreamTranslator

WIRE = Path(__file__).resolve().parents[2] / "fixtures" / "wire"

RECORDED_STREAMS = sorted(
    [
        *(WIRE / "extracted").glob("anthropic_*.response.sse"),
        WIRE / "anthropic_stream_text_then_tool_use.sse",
    ]
)


def recorded_bytes(path: Path) -> bytes:
    """A recorded stream's bytes, ending with the blank line a real stream ends with.

    ``anthropic_stream_text_then_tool_use.sse`` is an SDK test fixture whose file lost
    the final newline after ``message_stop``; the SSE spec (and ``wlm.sse``) would
    drop that unterminated last event, which the live API never leaves unterminated.
    """
    raw = path.read_bytes()
    return raw if raw.endswith(b"\n\n") else raw.rstrip(b"\n") + b"\n\n"


def events_of(raw: bytes, reads: list[int] | None = None) -> list[tuple[str | None, dict]]:
    """Parse SSE bytes (optionally split at the offsets in ``reads``) into events."""
    cuts = sorted({0, len(raw), *(reads or ())})
    parser = SSEParser()
    events = []
    for start, end in itertools.pairwise(cuts):
        events.extend(parser.feed(raw[start:end]))
    events.extend(parser.finish())
    return [(event.event, json.loads(event.data)) for event in events if event.data]


def translate(
    events: list[tuple[str | None, dict]], *, include_usage: bool = True, model: str = "claude"
) -> tuple[AnthropicStreamTranslator, list[dict[str, Any]]]:
    """Feed events through a fresh translator, then ``finish`` it."""
    translator = AnthropicStreamTranslator(
        model=model, created=1_700_000_000, include_usage=include_usage
    )
    chunks: list[dict[str, Any]] = []
    for name, data in events:
        chunks.extend(translator.feed(name, data))
    chunks.extend(translator.finish())
    return translator, chunks


def sse_body(chunks: list[dict[str, Any]]) -> bytes:
    """OpenAI SSE bytes for the chunks, ending in ``[DONE]`` unless the last is an error."""
    body = b"".join(b"data: " + json.dumps(chunk).encode() + b"\n\n" for chunk in chunks)
    if not (chunks and "error" in chunks[-1]):
        body += b"data: [DONE]\n\n"
    return body


def _client_for(raw: bytes) -> httpx2.Client:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=raw)

    return httpx2.Client(transport=httpx2.MockTransport(handler))


def anthropic_sdk_message(raw: bytes) -> anthropic.types.Message:
    """The final message the official ``anthropic`` SDK assembles from a raw stream."""
    client = anthropic.Anthropic(
        api_key="test",
        base_url="http://anthropic.test",
        http_client=_client_for(raw),
        max_retries=0,
    )
    with client.messages.stream(
        model="claude", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        return stream.get_final_message()


def openai_sdk_completion(chunks: list[dict[str, Any]]) -> Any:
    """The completion the official ``openai`` SDK assembles from our chunks, read as
    SSE by its own client (which raises ``openai.APIError`` on an error chunk)."""
    client = openai.OpenAI(
        api_key="test",
        base_url="http://gateway.test/v1",
        http_client=_client_for(sse_body(chunks)),
        max_retries=0,
    )
    state = ChatCompletionStreamState()
    stream = client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    for chunk in stream:
        assert isinstance(chunk, ChatCompletionChunk)
        state.handle_chunk(chunk)
    return state.get_final_completion()
