"""A proxied request's body, read and checked: :func:`parse_request` -> :class:`ParsedRequest`."""

from __future__ import annotations

from typing import Any

import msgspec
from attrs import frozen

from wlm.errors import BadRequest

__all__ = ["REQUIRED_FIELD", "ParsedRequest", "parse_request"]

_decode = msgspec.json.decode

# The field each endpoint cannot do without (also what telemetry stores as content).
REQUIRED_FIELD = {"chat/completions": "messages", "completions": "prompt", "embeddings": "input"}


@frozen
class ParsedRequest:
    """The client's JSON body and what the gateway reads from it."""

    endpoint: str
    body: dict[str, Any]
    raw: bytes
    model: str
    stream: bool
    wants_usage: bool  # the client asked for stream_options.include_usage


def parse_request(raw: bytes, endpoint: str) -> ParsedRequest:
    """Decode and check ``raw``; raises :class:`BadRequest` with the field at fault."""
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
    model = body.get("model")
    if model is None:
        raise BadRequest(
            "Missing required field 'model'.", param="model", code="missing_required_parameter"
        )
    if not isinstance(model, str) or not model.strip():
        raise BadRequest(
            "Field 'model' must be a non-empty string.", param="model", code="invalid_type"
        )
    required = REQUIRED_FIELD[endpoint]
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
    stream = body.get("stream")
    if stream is None:  # OpenAI's spec: nullable, default false
        stream = False
    elif not isinstance(stream, bool):
        raise BadRequest("Field 'stream' must be a boolean.", param="stream", code="invalid_type")
    if endpoint == "embeddings":
        stream = False
    options = body.get("stream_options")
    wants_usage = isinstance(options, dict) and options.get("include_usage") is True
    return ParsedRequest(endpoint, body, raw, model, stream, wants_usage)
