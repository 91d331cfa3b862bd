"""Pure translation between the OpenAI and Anthropic chat protocols (no I/O).

Nothing here reads the network, the clock, the environment or the config; ids and
timestamps are arguments. Failures are raised as :mod:`wlm.errors` values.
"""

from wlm.translate.anthropic_errors import anthropic_error_to_openai, stream_error_to_openai
from wlm.translate.anthropic_request import ANSWER_ROOM, REASONING_BUDGETS, to_anthropic_request
from wlm.translate.anthropic_response import (
    FINISH_REASONS,
    finish_reason_from,
    from_anthropic_response,
    usage_from,
)
from wlm.translate.anthropic_stream import AnthropicStreamTranslator

__all__ = [
    "ANSWER_ROOM",
    "FINISH_REASONS",
    "REASONING_BUDGETS",
    "AnthropicStreamTranslator",
    "anthropic_error_to_openai",
    "finish_reason_from",
    "from_anthropic_response",
    "stream_error_to_openai",
    "to_anthropic_request",
    "usage_from",
]
