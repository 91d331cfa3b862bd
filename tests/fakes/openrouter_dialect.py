"""OpenRouter's variant of the OpenAI wire format for the fake upstream (shared/wire/WIRE.md section 4).

Differences from OpenAI that the fake reproduces: `/api/v1` prefix, `gen-<unix>-<random>`
ids and an `X-Generation-Id` header, compact JSON bodies, top-level `provider`, per-choice
`native_finish_reason`, `role` repeated on every delta, `: OPENROUTER PROCESSING` comments
before the first event, a usage chunk with `cost` on every stream (current docs: usage is
always returned, `include_usage` is a no-op), integer error codes with `metadata` and
`user_id`, and a model list with pricing as strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tests.fakes.dialect import (
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    Headers,
    compact,
    data_event,
    random_id,
)
from tests.fakes.openai_dialect import ChunkContext, OpenAIDialect, bearer_key
from tests.fakes.scenarios import Reply

PROCESSING = b": OPENROUTER PROCESSING\n\n"
_USER_ID = "user_2wT5FakeUpstream0000000000"
_PROVIDERS = {
    "openai": "OpenAI",
    "anthropic": "Anthropic",
    "google": "Google",
    "meta-llama": "Together",
    "mistralai": "Mistral",
}
_OR_ERRORS: dict[int, tuple[str, dict[str, Any] | None]] = {
    400: ("{model} is not a valid model ID", None),
    402: (
        "This request requires more credits, or fewer max_tokens. You requested up to 16384 "
        "tokens, but can only afford 1093. To increase, visit "
        "https://openrouter.ai/settings/credits and add more credits",
        None,
    ),
    403: (
        '{model} requires moderation on OpenAI. Your input was flagged for "harassment". '
        "No credits were charged.",
        {
            "reasons": ["harassment"],
            "flagged_input": "...",
            "provider_name": "OpenAI",
            "model_slug": "{model}",
        },
    ),
    408: ("Request timed out. Please try again later.", None),
    429: (
        "Provider returned error",
        {
            "provider_name": "Google",
            "raw": "{model} is temporarily rate-limited upstream. Please retry shortly, or add "
            "your own key to accumulate your rate limits: "
            "https://openrouter.ai/settings/integrations",
        },
    ),
    502: (
        "Provider returned error",
        {
            "provider_name": "OpenAI",
            "raw": "upstream connect error or disconnect/reset before headers",
        },
    ),
    503: ("No allowed providers are available for the selected model.", None),
}


def _fill(value: Any, model: str) -> Any:
    """Substitute `{model}` in a message or metadata template."""
    if isinstance(value, str):
        return value.replace("{model}", model)
    if isinstance(value, dict):
        return {k: _fill(v, model) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, model) for v in value]
    return value


def _model_entry(model_id: str) -> dict[str, Any]:
    """A realistic `/api/v1/models` entry for an OpenRouter id like `openai/gpt-4o-mini`."""
    vendor = model_id.split("/", 1)[0]
    return {
        "id": model_id,
        "canonical_slug": model_id,
        "hugging_face_id": "",
        "name": f"{_PROVIDERS.get(vendor, vendor.title())}: {model_id.split('/')[-1]}",
        "created": 1721260800,
        "description": f"Fake catalogue entry for {model_id}.",
        "context_length": 128000,
        "architecture": {
            "modality": "text->text",
            "input_modalities": ["text"],
            "output_modalities": ["text"],
            "tokenizer": "GPT",
            "instruct_type": None,
        },
        "pricing": {
            "prompt": "0.00000015",
            "completion": "0.0000006",
            "request": "0",
            "image": "0",
            "web_search": "0",
            "internal_reasoning": "0",
        },
        "top_provider": {
            "context_length": 128000,
            "max_completion_tokens": 16384,
            "is_moderated": True,
        },
        "per_request_limits": None,
        "supported_parameters": [
            "max_tokens",
            "temperature",
            "top_p",
            "stop",
            "tools",
            "tool_choice",
            "response_format",
            "seed",
        ],
        "default_parameters": {},
    }


class OpenRouterDialect(OpenAIDialect):
    """OpenRouter's chat completions, completions, embeddings and model list."""

    flavor = "openrouter"
    prefix = "/api/v1"

    def _new_id(self, created: int) -> str:
        return f"gen-{created}-{random_id(20)}"

    def _headers(
        self, content_type: str, *, stream: bool = False, response_id: str = ""
    ) -> Headers:
        headers: list[tuple[str, str]] = [
            ("content-type", content_type),
            ("access-control-allow-origin", "*"),
        ]
        if stream:
            headers.append(("cache-control", "no-cache"))
        headers.append(("referrer-policy", "no-referrer, strict-origin-when-cross-origin"))
        if response_id:
            headers.append(("x-generation-id", response_id))
        return tuple(headers)

    def _json(self, obj: Any) -> bytes:
        return compact(obj)

    def auth_error(self, headers: Mapping[str, str], api_key: str) -> Reply | None:
        """401 `No cookie auth credentials found` (no key) or `User not found.` (wrong key)."""
        key = bearer_key(headers)
        if key is None:
            return self.error(401, message="No cookie auth credentials found")
        if key != api_key:
            return self.error(401, message="User not found.")
        return None

    def _error_body(
        self, status: int, variant: str, model: str, key: str, message: str
    ) -> dict[str, Any]:
        model = model or "openai/gpt-4o-mini"
        if status == 401:
            text = message or (
                f"Invalid API key: {key}" if variant == "echo" else "User not found."
            )
            return {"error": {"message": text, "code": 401}}
        text, metadata = _OR_ERRORS.get(status, (f"Fake upstream error {status}.", None))
        error: dict[str, Any] = {"message": message or _fill(text, model), "code": status}
        if metadata is not None and not message:
            error["metadata"] = _fill(metadata, model)
        return {"error": error, "user_id": _USER_ID}

    def not_found(self, method: str, path: str) -> Reply:
        """OpenRouter's 404 for an unknown API route."""
        return Reply(
            404,
            self._headers("application/json"),
            compact({"error": {"message": "Not Found", "code": 404}}),
        )

    def _usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
            "cost": 0.00042,
            "is_byok": False,
            "prompt_tokens_details": {
                "cached_tokens": 0,
                "cache_write_tokens": 0,
                "audio_tokens": 0,
                "video_tokens": 0,
            },
            "cost_details": {
                "upstream_inference_cost": 0.00042,
                "upstream_inference_prompt_cost": 0.00011,
                "upstream_inference_completions_cost": 0.00031,
            },
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "image_tokens": 0,
                "audio_tokens": 0,
            },
        }

    def _provider(self, model: str) -> str:
        return _PROVIDERS.get(model.split("/", 1)[0], "OpenAI")

    def _choice(self, message: dict[str, Any], finish: str) -> dict[str, Any]:
        message = {k: v for k, v in message.items() if k != "annotations"}
        message["reasoning"] = None
        return {
            "logprobs": None,
            "finish_reason": finish,
            "native_finish_reason": finish,
            "index": 0,
            "message": message,
        }

    def _completion(self, cid: str, created: int, model: str, choice: dict[str, Any]) -> dict:
        return {
            "id": cid,
            "provider": self._provider(model),
            "model": model,
            "object": "chat.completion",
            "created": created,
            "choices": [choice],
            "usage": self._usage(),
        }

    def _wants_usage(self, body: Mapping[str, Any]) -> bool:
        return True

    def _null_usage(self, body: Mapping[str, Any]) -> bool:
        return False

    def _chunk(self, ctx: ChunkContext, choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": ctx.cid,
            "object": "chat.completion.chunk",
            "created": ctx.created,
            "model": ctx.model,
            "provider": self._provider(ctx.model),
            "choices": choices,
        }
        if usage is not None:
            chunk["usage"] = usage
        return data_event(chunk)

    def _delta(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "index": 0,
            "delta": delta,
            "finish_reason": finish,
            "native_finish_reason": finish,
            "logprobs": None,
        }

    def _role_delta(self) -> dict[str, Any]:
        return {"role": "assistant", "content": ""}

    def _content_delta(self, text: str) -> dict[str, Any]:
        return {"role": "assistant", "content": text}

    def _finish_delta(self) -> dict[str, Any]:
        return {"role": "assistant", "content": ""}

    def _preamble(self) -> tuple[bytes, ...]:
        return (PROCESSING, PROCESSING)

    def _stream_content_type(self) -> str:
        return "text/event-stream"

    def _midstream_error(self, ctx: ChunkContext) -> tuple[bytes, ...]:
        # Documented shape: normal chunk fields, top-level `error`, finish_reason "error";
        # the stream still ends with [DONE].
        chunk = {
            "id": ctx.cid,
            "object": "chat.completion.chunk",
            "created": ctx.created,
            "model": ctx.model,
            "provider": self._provider(ctx.model),
            "error": {"code": "server_error", "message": "Provider disconnected unexpectedly"},
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": ""},
                    "finish_reason": "error",
                    "native_finish_reason": "error",
                    "logprobs": None,
                }
            ],
        }
        return (data_event(chunk), b"data: [DONE]\n\n")

    def _model_entry(self, model_id: str) -> dict[str, Any]:
        return _model_entry(model_id)

    def models(self, models: Sequence[str | Mapping[str, Any]]) -> Reply:
        """`{data: [...]}` with OpenRouter's catalogue fields."""
        return self._reply({"data": self._entries(models)})

    def model(self, model_id: str, models: Sequence[str | Mapping[str, Any]]) -> Reply:
        """OpenRouter has no `GET /models/{id}`: its 404."""
        return self.not_found("GET", f"{self.prefix}/models/{model_id}")
