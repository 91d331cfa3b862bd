"""OpenAI Chat Completions (and the legacy completions and embeddings endpoints): the
hub dialect every adapter speaks, so it is never translated on the way in."""

from __future__ import annotations

from typing import Any

import msgspec

from wlm.config import ProviderConfig
from wlm.dialects.base import AS_SENT, ParsedRequest, Passage, Translation
from wlm.errors import BadRequest, Failure, render_error, render_error_event

__all__ = ["ChatDialect", "decode_object", "required_model"]

_decode = msgspec.json.decode

# The field each endpoint cannot do without (also what telemetry stores as content).
_REQUIRED_FIELD = {"chat/completions": "messages", "completions": "prompt", "embeddings": "input"}


def decode_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object; a BadRequest saying what is wrong otherwise."""
    if not raw:
        raise BadRequest("The request body is empty; send a JSON object.")
    try:
        body = _decode(raw)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}.") from None
    except RecursionError:
        raise BadRequest("The request body is nested too deeply to be read.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def required_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise BadRequest(
            "Missing required field 'model'.", param="model", code="missing_required_parameter"
        )
    if not isinstance(model, str) or not model.strip():
        raise BadRequest(
            "Field 'model' must be a non-empty string.", param="model", code="invalid_type"
        )
    return model


def optional_stream(body: dict[str, Any]) -> bool:
    stream = body.get("stream")
    if stream is None:  # nullable, default false (OpenAI's spec; Anthropic's too)
        return False
    if not isinstance(stream, bool):
        raise BadRequest("Field 'stream' must be a boolean.", param="stream", code="invalid_type")
    return stream


class ChatDialect:
    """Chat Completions, completions and embeddings: OpenAI's error shapes."""

    name = "chat"

    def parse(self, raw: bytes, endpoint: str) -> ParsedRequest:
        body = decode_object(raw)
        model = required_model(body)
        required = _REQUIRED_FIELD[endpoint]
        if required not in body:
            raise BadRequest(
                f"Missing required field '{required}'.",
                param=required,
                code="missing_required_parameter",
            )
        if endpoint == "chat/completions" and not isinstance(body["messages"], list):
            raise BadRequest(
                "Field 'messages' must be an array.", param="messages", code="invalid_type"
            )
        stream = optional_stream(body) and endpoint != "embeddings"
        options = body.get("stream_options")
        wants_usage = isinstance(options, dict) and options.get("include_usage") is True
        return ParsedRequest(endpoint, body, raw, model, stream, wants_usage, required)

    def pass_through(self, request: ParsedRequest, config: ProviderConfig) -> Passage | None:
        return AS_SENT  # every adapter speaks chat

    def translate(self, request: ParsedRequest) -> Translation:
        raise AssertionError("chat is the hub: it is never translated")  # pragma: no cover

    def error_body(self, failure: Failure) -> tuple[int, bytes]:
        return failure.status, render_error(failure)

    def error_event(self, failure: Failure) -> bytes:
        return render_error_event(failure)
