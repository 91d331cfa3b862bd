"""wlm's own check of the OpenAI request fields whose type an engine may misreport.

llama.cpp answers a wrongly typed field with a bare ``[json.exception.type_error.302]``
and no ``param``; the cloud providers name the field. This check runs before a call
reaches a local engine so that every backend gives the same clear 400.
"""

from __future__ import annotations

from typing import Any

from wlm.errors import BadRequest
from wlm.translate.json_values import is_int, is_number

__all__ = ["check_field_types"]

_POSITIVE_INTS = (
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",  # Responses
    "n",
    "top_logprobs",
    "top_k",
)
_NUMBERS = (
    "temperature",
    "top_p",
    "min_p",
    "frequency_penalty",
    "presence_penalty",
    "repeat_penalty",
)
_INTS = ("seed",)
_BOOLS = ("logprobs", "parallel_tool_calls", "echo")
_OBJECTS = ("stream_options", "response_format")  # logit_bias: llama.cpp takes a list too


def check_field_types(body: dict[str, Any]) -> None:
    """Raise :class:`BadRequest` naming the first wrongly typed well-known field.

    ``null`` means "not set" for every field here, as in OpenAI's spec.

    >>> check_field_types({"max_tokens": 8, "temperature": 0.2, "seed": None})
    >>> check_field_types({"max_tokens": "many"})
    Traceback (most recent call last):
    ...
    wlm.errors.BadRequest: 'max_tokens' must be an integer of at least 0.
    """
    for name in _POSITIVE_INTS:
        value = body.get(name)
        if value is not None and not (is_int(value) and value >= 0):
            raise BadRequest(
                f"'{name}' must be an integer of at least 0.", param=name, code="invalid_type"
            )
    for name in _NUMBERS:
        value = body.get(name)
        if value is not None and not is_number(value):
            raise BadRequest(f"'{name}' must be a number.", param=name, code="invalid_type")
    for name in _INTS:
        value = body.get(name)
        if value is not None and not is_int(value):
            raise BadRequest(f"'{name}' must be an integer.", param=name, code="invalid_type")
    for name in _BOOLS:
        value = body.get(name)
        if value is not None and not isinstance(value, bool):
            raise BadRequest(f"'{name}' must be a boolean.", param=name, code="invalid_type")
    for name in _OBJECTS:
        value = body.get(name)
        if value is not None and not isinstance(value, dict):
            raise BadRequest(f"'{name}' must be an object.", param=name, code="invalid_type")
    stop = body.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise BadRequest(
            "'stop' must be a string or a list of strings.", param="stop", code="invalid_type"
        )
