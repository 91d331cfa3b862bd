"""POST /v1/rerank in-process: to providers that serve it, local engines, and errors."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from wlm.config import ConfigError, load_settings
from wlm.providers.local import LocalAdapter, local_provider_config
from wlm.transport import MockResponse, UpstreamRequest

from .pipeline import ENV, FakeLocal, body, drive, make_gateway

JINA = {
    "WLM_PROVIDERS": "jina",
    "JINA_BASE_URL": "https://api.jina.ai/v1",
    "JINA_API_KEY": "jina-secret-9999",
    "WLM_JINA_DIALECTS": "chat,rerank",
    "WLM_ROUTES": "gpt-*=openai,claude-*=anthropic,jina-*=jina",
}
DOCS = ["pandas eat bamboo", "the stock market fell", "a bear from China"]


def ranked(model: str = "jina-reranker-v2", **usage: int) -> dict[str, Any]:
    return {
        "model": model,
        "object": "list",
        "usage": usage or {"total_tokens": 42},
        "results": [
            {"index": 0, "relevance_score": 0.91},
            {"index": 2, "relevance_score": 0.55},
            {"index": 1, "relevance_score": 0.02},
        ],
    }


def rerank(**fields: Any) -> bytes:
    return body(**{"model": "jina-reranker-v2", "query": "panda", "documents": DOCS, **fields})


def sent_json(request: UpstreamRequest) -> Any:
    assert request.body is not None
    return msgspec.json.decode(request.body)


async def test_a_provider_with_the_rerank_dialect_gets_it_as_sent() -> None:
    gateway, transport, sink = make_gateway(lambda request: MockResponse.json(ranked()), JINA)

    reply = await drive(gateway, rerank(top_n=3), endpoint="rerank")

    assert reply.status == 200
    assert reply.json()["results"] == ranked()["results"]
    (sent,) = transport.requests
    assert sent.url == "https://api.jina.ai/v1/rerank"
    assert sent.headers["authorization"] == "Bearer jina-secret-9999"
    assert sent_json(sent) == {
        "model": "jina-reranker-v2",
        "query": "panda",
        "documents": DOCS,
        "top_n": 3,
    }
    record = sink.only
    assert (record.endpoint, record.provider, record.status, record.http_status) == (
        "rerank",
        "jina",
        "ok",
        200,
    )
    assert (record.total_tokens, record.stream) == (42, False)
    assert record.latency_ms is not None and record.latency_ms >= 0
    assert "jina-secret-9999" not in repr(sink.rows) + reply.body.decode()


async def test_text_objects_go_upstream_as_plain_strings() -> None:
    gateway, transport, _ = make_gateway(lambda request: MockResponse.json(ranked()), JINA)
    documents = [{"text": DOCS[0]}, DOCS[1], {"text": DOCS[2]}]

    reply = await drive(gateway, rerank(documents=documents), endpoint="rerank")

    assert reply.status == 200
    assert sent_json(transport.requests[0])["documents"] == DOCS


async def test_the_upstream_model_name_goes_back_as_the_client_asked() -> None:
    gateway, _, _ = make_gateway(
        lambda request: MockResponse.json(ranked(model="jina-reranker-v2-base-multilingual")),
        {**JINA, "WLM_ALIASES": "ranker=jina-reranker-v2"},
    )
    reply = await drive(gateway, rerank(model="ranker"), endpoint="rerank")
    assert reply.status == 200
    assert reply.json()["model"] == "ranker"


@pytest.mark.parametrize(
    ("model", "provider", "remedy"),
    [
        ("gpt-4o", "openai", "add rerank to WLM_OPENAI_DIALECTS"),
        ("claude-sonnet-4-5", "anthropic", "ask a model that reranks"),
    ],
)
async def test_a_provider_without_it_is_a_400_that_says_what_to_set(
    model: str, provider: str, remedy: str
) -> None:
    gateway, transport, sink = make_gateway(lambda request: MockResponse.json(ranked()), JINA)

    reply = await drive(gateway, rerank(model=model), endpoint="rerank")

    assert reply.status == 400
    error = reply.error
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "rerank_not_supported",
        "model",
    )
    assert f"provider '{provider}' does not serve /v1/rerank" in error["message"]
    assert remedy in error["message"]
    assert transport.requests == []
    record = sink.only
    assert (record.endpoint, record.provider, record.http_status) == ("rerank", provider, 400)
    assert record.error_code == "rerank_not_supported"


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        ({"query": None}, "query", "Missing required field 'query'"),
        ({"query": ["panda"]}, "query", "'query' must be a string"),
        ({"documents": None}, "documents", "Missing required field 'documents'"),
        ({"documents": []}, "documents", "non-empty array"),
        ({"documents": "pandas"}, "documents", "non-empty array"),
        ({"documents": ["a", 3]}, "documents[1]", "documents[1] must be a string"),
        ({"documents": [{"title": "a"}]}, "documents[0]", "object with a string 'text'"),
        ({"top_n": 0}, "top_n", "whole number of at least 1"),
        ({"top_n": "2"}, "top_n", "whole number of at least 1"),
        ({"top_n": True}, "top_n", "whole number of at least 1"),
        ({"top_n": 1.5}, "top_n", "whole number of at least 1"),
        ({"model": None}, "model", "Missing required field 'model'"),
    ],
)
async def test_a_bad_body_is_a_clear_400_before_any_upstream(
    fields: dict[str, Any], param: str, message: str
) -> None:
    gateway, transport, sink = make_gateway(lambda request: MockResponse.json(ranked()), JINA)
    payload = {"model": "jina-reranker-v2", "query": "panda", "documents": DOCS, **fields}
    payload = {k: v for k, v in payload.items() if v is not None}

    reply = await drive(gateway, body(**payload), endpoint="rerank")

    assert reply.status == 400
    assert reply.error["type"] == "invalid_request_error"
    assert reply.error["param"] == param
    assert message in reply.error["message"]
    assert transport.requests == []
    assert (sink.only.endpoint, sink.only.http_status) == ("rerank", 400)


async def test_not_json_is_a_400() -> None:
    gateway, transport, _ = make_gateway(lambda request: MockResponse.json(ranked()), JINA)
    reply = await drive(gateway, b"{not json", endpoint="rerank")
    assert reply.status == 400
    assert "not valid JSON" in reply.error["message"]
    assert transport.requests == []


def local_gateway(handler: Any) -> tuple[Any, Any, Any, FakeLocal]:
    local = FakeLocal()
    gateway, transport, sink = make_gateway(handler, local=local)
    gateway.adapters["local"] = LocalAdapter(
        local_provider_config(60.0), transport, local, loading_every_s=0.01
    )
    return gateway, transport, sink, local


async def test_a_local_model_reranks_on_its_engine() -> None:
    answer = ranked(model="tiny", prompt_tokens=80, total_tokens=80)
    gateway, transport, sink, local = local_gateway(lambda request: MockResponse.json(answer))

    reply = await drive(gateway, rerank(model="tiny"), endpoint="rerank")

    assert reply.status == 200
    assert reply.json()["results"] == answer["results"]
    (sent,) = transport.requests
    assert sent.url == f"{local.url}/v1/rerank"
    record = sink.only
    assert (record.endpoint, record.provider, record.model) == ("rerank", "local", "tiny")
    assert (record.prompt_tokens, record.total_tokens) == (80, 80)
    assert local.leased == 0


async def test_a_local_model_not_started_as_a_reranker_says_which_option_to_set() -> None:
    error = {
        "error": {
            "code": 501,
            "message": "This server does not support reranking. Start it with `--reranking`",
            "type": "not_supported_error",
        }
    }
    gateway, _, sink, local = local_gateway(lambda request: MockResponse.json(error, 501))

    reply = await drive(gateway, rerank(model="tiny"), endpoint="rerank")

    assert (reply.status, reply.error["code"]) == (400, "reranking_disabled")
    assert "reranking = true" in reply.error["message"]
    assert "WLM_LOCAL_OPTIONS" in reply.error["message"]
    assert "--reranking" not in reply.error["message"]
    assert (sink.only.endpoint, sink.only.http_status) == ("rerank", 400)
    assert local.leased == 0


def test_rerank_is_a_dialect_providers_can_declare() -> None:
    settings = load_settings({**ENV, **JINA})
    jina = next(p for p in settings.providers if p.name == "jina")
    assert jina.dialects == ("chat", "rerank")
    with pytest.raises(ConfigError, match="WLM_ANTHROPIC_DIALECTS: Anthropic's API has no rerank"):
        load_settings({**ENV, "WLM_ANTHROPIC_DIALECTS": "messages,rerank"})
    with pytest.raises(ConfigError, match="chat, messages, responses, rerank"):
        load_settings({**ENV, **JINA, "WLM_JINA_DIALECTS": "score"})
