"""Rerank (``POST /v1/rerank``): the Jina/Cohere shape llama.cpp's server also speaks.

``{"model", "query", "documents": [...], "top_n"?}`` in, ``{"model", "object": "list",
"usage", "results": [{"index", "relevance_score"}, ...]}`` out. It goes only to a
provider that serves it (``rerank`` in ``WLM_<PROVIDER>_DIALECTS``, and every local
engine, which answers it when started with ``reranking = true``): there is nothing to
translate it into, so any other provider is a 400 that says what to set.
"""

from __future__ import annotations

from typing import Any

import msgspec

from wlm.config import ProviderConfig
from wlm.dialects.base import AS_SENT, ParsedRequest, Passage, Translation
from wlm.dialects.chat import decode_object, required_model
from wlm.errors import BadRequest, Failure, render_error, render_error_event

__all__ = ["RerankDialect", "RerankNotServed"]


class RerankNotServed(BadRequest):
    """The request's model is on a provider that has no rerank endpoint."""

    code = "rerank_not_supported"


def _check(body: dict[str, Any]) -> list[str] | None:
    """Raise BadRequest naming the first bad field; the documents as plain strings when
    some came as ``{"text": ...}`` objects (None when all were strings already)."""
    query = body.get("query")
    if query is None:
        raise BadRequest(
            "Missing required field 'query'.", param="query", code="missing_required_parameter"
        )
    if not isinstance(query, str):
        raise BadRequest("Field 'query' must be a string.", param="query", code="invalid_type")
    documents = body.get("documents")
    if documents is None:
        raise BadRequest(
            "Missing required field 'documents'.",
            param="documents",
            code="missing_required_parameter",
        )
    if not isinstance(documents, list) or not documents:
        raise BadRequest(
            "Field 'documents' must be a non-empty array of strings (or of {\"text\": ...} "
            "objects).",
            param="documents",
            code="invalid_type",
        )
    texts: list[str] = []
    objects = False
    for index, document in enumerate(documents):
        if isinstance(document, dict) and isinstance(document.get("text"), str):
            objects = True
            texts.append(document["text"])
        elif isinstance(document, str):
            texts.append(document)
        else:
            raise BadRequest(
                f"documents[{index}] must be a string or an object with a string 'text'.",
                param=f"documents[{index}]",
                code="invalid_type",
            )
    top_n = body.get("top_n")
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise BadRequest(
            "Field 'top_n' must be a whole number of at least 1.",
            param="top_n",
            code="invalid_type",
        )
    return texts if objects else None


class RerankDialect:
    """Rerank requests: checked here, passed through as they came, OpenAI's error shape."""

    name = "rerank"

    def parse(self, raw: bytes, endpoint: str) -> ParsedRequest:
        body = decode_object(raw)
        model = required_model(body)
        texts = _check(body)
        if texts is not None:
            # llama.cpp reads only strings; Jina and Cohere read strings too.
            body = {**body, "documents": texts}
            raw = msgspec.json.encode(body)
        return ParsedRequest(endpoint, body, raw, model, False, False, "query")

    def pass_through(self, request: ParsedRequest, config: ProviderConfig) -> Passage | None:
        if self.name in config.dialects:
            return AS_SENT
        remedy = (
            f"if it has a /rerank endpoint (Jina, Cohere, llama-server), add rerank to "
            f"WLM_{config.env_prefix}_DIALECTS (docs/routing.md), or ask a model that reranks"
            if config.kind == "openai"
            else "ask a model that reranks"
        )
        raise RerankNotServed(
            f"Model '{request.model}' cannot rerank: its provider '{config.name}' does not "
            f"serve /v1/rerank; {remedy}.",
            param="model",
        )

    def translate(self, request: ParsedRequest) -> Translation:
        raise AssertionError("rerank is never translated")  # pragma: no cover

    def error_body(self, failure: Failure) -> tuple[int, bytes]:
        return failure.status, render_error(failure)

    def error_event(self, failure: Failure) -> bytes:
        return render_error_event(failure)  # pragma: no cover (rerank never streams)
