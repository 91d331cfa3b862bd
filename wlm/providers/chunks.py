"""What telemetry reads from an OpenAI stream chunk, decoded straight into typed values.

Every streamed event passes through here, so decoding is typed (msgspec fills only
these fields and skips the rest, about twice as fast as a dict and its lookups). A
chunk whose fields have unexpected types is not an error: :func:`chunk_from_dict`
keeps what it can read, as a lenient upstream parser should.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["Choice", "Chunk", "Delta", "chunk_from_dict", "decode_chunk"]


class Delta(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[Any] | None = None


class Choice(msgspec.Struct):
    delta: Delta | None = None
    text: str | None = None  # legacy completions stream
    finish_reason: str | None = None


class Chunk(msgspec.Struct):
    model: str | None = None
    choices: list[Choice] | None = None
    usage: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None  # llama.cpp
    error: Any = None


_decoder = msgspec.json.Decoder(Chunk)


def decode_chunk(payload: bytes) -> Chunk | None:
    """The chunk in ``payload``; None when it is not a JSON object (a malformed event)."""
    try:
        return _decoder.decode(payload)
    except msgspec.ValidationError:
        pass
    except msgspec.DecodeError:
        return None
    try:
        value = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return None
    return chunk_from_dict(value) if isinstance(value, dict) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _dict(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def chunk_from_dict(value: dict[str, Any]) -> Chunk:
    """A chunk from any decoded object, keeping the fields that have the expected type."""
    choices = []
    for item in value.get("choices") or () if isinstance(value.get("choices"), list) else ():
        if not isinstance(item, dict):
            continue
        delta = item.get("delta")
        tool_calls = delta.get("tool_calls") if isinstance(delta, dict) else None
        choices.append(
            Choice(
                Delta(
                    _str(delta.get("content")),
                    _str(delta.get("reasoning_content")),
                    _str(delta.get("reasoning")),
                    tool_calls if isinstance(tool_calls, list) else None,
                )
                if isinstance(delta, dict)
                else None,
                _str(item.get("text")),
                _str(item.get("finish_reason")),
            )
        )
    return Chunk(
        _str(value.get("model")),
        choices if isinstance(value.get("choices"), list) else None,
        _dict(value.get("usage")),
        _dict(value.get("timings")),
        value.get("error"),
    )
