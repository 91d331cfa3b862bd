"""POST /v1/rerank through a real ``wlm serve``: to a fake Jina (a real HTTP server on
127.0.0.1) whose provider declares the rerank dialect, and to a real llama.cpp engine
serving a tiny reranker GGUF (started with ``reranking = true``), with telemetry rows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import WlmServer
from tests.e2e.telemetry_helpers import sql_api
from tests.fakes import FakeUpstream
from tests.fakes.rerank import FakeReranker, score_for
from wlm.local.testmodel import write_tiny_gguf

pytestmark = [pytest.mark.e2e, pytest.mark.local]

LIGHT = {"WLM_LOCAL_THREADS": "1", "WLM_LOCAL_CTX_SIZE": "512", "WLM_LOCAL_PARALLEL": "1"}
QUERY = "where do pandas live"
DOCS = ["pandas eat bamboo", "the stock market fell", "a bear from the mountains of China"]


class World:
    def __init__(self, server: WlmServer, jina: FakeReranker, openai: FakeUpstream) -> None:
        self.server = server
        self.jina = jina
        self.openai = openai
        self.http = httpx.Client(base_url=server.base_url, timeout=60)

    def rerank(self, path: str = "/v1/rerank", **fields: Any) -> httpx.Response:
        return self.http.post(path, json={"query": QUERY, "documents": DOCS, **fields})

    def row(self, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The request's telemetry row, once the writer has it."""
        deadline = time.monotonic() + timeout
        sql = f"SELECT * FROM requests WHERE request_id = '{request_id}'"
        while True:
            rows = sql_api(self.http, sql)
            if rows or time.monotonic() >= deadline:
                assert len(rows) == 1, f"no telemetry row for {request_id}"
                return rows[0]
            time.sleep(0.05)  # polling the server's state, not synchronising the test


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("wlm-rerank")
    write_tiny_gguf(workdir / "models" / "ranker.gguf", reranker=True)
    write_tiny_gguf(workdir / "models" / "tiny.gguf")
    options = workdir / "local-models.toml"
    options.write_text('[models."ranker"]\nreranking = true\n')
    with FakeReranker() as jina, FakeUpstream("openai") as openai:
        env = {
            **LIGHT,
            "WLM_MAX_LOADED_MODELS": "2",
            "WLM_LOCAL_OPTIONS": str(options),
            "WLM_PROVIDERS": "jina",
            "JINA_BASE_URL": jina.base_url,
            "JINA_API_KEY": jina.api_key,
            "WLM_JINA_DIALECTS": "chat,rerank",
            "OPENAI_BASE_URL": openai.base_url,
            "OPENAI_API_KEY": openai.api_key or "",
            "WLM_ROUTES": "jina-*=jina,gpt-*=openai",
        }
        server = WlmServer(env, workdir).start()
        world = World(server, jina, openai)
        try:
            yield world
        finally:
            world.http.close()
            server.stop()
            log = server.log()
            assert jina.api_key not in log and (openai.api_key or "") not in log


def expected(documents: list[str], top_n: int | None = None) -> list[dict[str, Any]]:
    scored = sorted(
        ({"index": i, "relevance_score": score_for(QUERY, d)} for i, d in enumerate(documents)),
        key=lambda r: -float(r["relevance_score"]),
    )
    return scored[:top_n] if top_n else scored


# -- a cloud provider that serves rerank -----------------------------------------------------


def test_rerank_goes_to_a_provider_that_declares_it(world: World) -> None:
    documents: list[Any] = [{"text": DOCS[0]}, DOCS[1], {"text": DOCS[2]}]
    response = world.rerank(model="jina-reranker-v2", documents=documents, top_n=2)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == "jina-reranker-v2"
    assert answer["results"] == expected(DOCS, top_n=2)
    assert response.headers["x-wlm-provider"] == "jina"
    sent = world.jina.requests[-1]
    assert sent["documents"] == DOCS  # {"text"} objects as plain strings
    assert world.jina.headers[-1]["authorization"] == f"Bearer {world.jina.api_key}"
    assert world.jina.api_key not in response.text

    row = world.row(response.headers["x-request-id"])
    assert (row["endpoint"], row["provider"], row["model"]) == (
        "rerank",
        "jina",
        "jina-reranker-v2",
    )
    assert (row["status"], row["http_status"], row["stream"]) == ("ok", 200, False)
    assert row["total_tokens"] == answer["usage"]["total_tokens"] > 0
    assert row["latency_ms"] is not None and row["latency_ms"] > 0


@pytest.mark.parametrize("path", ["/rerank", "/reranking", "/v1/reranking", "/api/v1/rerank"])
def test_llama_servers_other_rerank_paths_work_too(world: World, path: str) -> None:
    response = world.rerank(path, model="jina-reranker-v2")
    assert response.status_code == 200, response.text
    assert response.json()["results"] == expected(DOCS)


def test_a_provider_without_the_rerank_dialect_is_a_clear_400(world: World) -> None:
    before = len(world.openai.requests)
    response = world.rerank(model="gpt-4o-mini")

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "rerank_not_supported",
        "model",
    )
    assert "WLM_OPENAI_DIALECTS" in error["message"]
    assert len(world.openai.requests) == before  # nothing went upstream
    row = world.row(response.headers["x-request-id"])
    assert (row["endpoint"], row["provider"], row["http_status"]) == ("rerank", "openai", 400)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"top_n": 0}, "top_n"),
        ({"documents": []}, "documents"),
        ({"documents": ["a", {"image": "x.png"}]}, "documents[1]"),
        ({"query": 7}, "query"),
    ],
)
def test_a_bad_body_is_a_400_in_openai_shape(
    world: World, fields: dict[str, Any], param: str
) -> None:
    before = len(world.jina.requests)
    response = world.rerank(model="jina-reranker-v2", **fields)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert len(world.jina.requests) == before


# -- a local llama.cpp engine started as a reranker ------------------------------------------


def scores(answer: dict[str, Any], documents: list[str]) -> dict[str, float]:
    return {documents[r["index"]]: r["relevance_score"] for r in answer["results"]}


def test_a_local_reranker_scores_every_document(world: World) -> None:
    response = world.rerank(model="ranker")

    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["model"], answer["object"]) == ("ranker", "list")
    results = answer["results"]
    assert sorted(r["index"] for r in results) == [0, 1, 2]  # every document, once
    assert all(0.0 < r["relevance_score"] < 1.0 for r in results)
    ranked = [r["relevance_score"] for r in results]
    assert ranked == sorted(ranked, reverse=True)  # most relevant first
    assert answer["usage"]["prompt_tokens"] > 0

    # Each index names its document: reversed, every document keeps its score.
    again = world.rerank(model="ranker", documents=DOCS[::-1]).json()
    assert scores(again, DOCS[::-1]) == pytest.approx(scores(answer, DOCS), abs=1e-5)

    # top_n keeps the best ones.
    best = world.rerank(model="ranker", top_n=1).json()["results"]
    assert [r["index"] for r in best] == [results[0]["index"]]

    row = world.row(response.headers["x-request-id"])
    assert (row["endpoint"], row["provider"], row["model"]) == ("rerank", "local", "ranker")
    assert (row["status"], row["http_status"]) == ("ok", 200)
    assert row["prompt_tokens"] == answer["usage"]["prompt_tokens"]
    assert row["latency_ms"] is not None and row["latency_ms"] > 0
    logs = world.http.get("/api/instances/ranker/logs").json()["lines"]
    [command] = [line for line in logs if "wlm: starting" in line]
    assert "--reranking" in command  # from WLM_LOCAL_OPTIONS


def test_a_local_model_not_started_as_a_reranker_says_what_to_set(world: World) -> None:
    response = world.rerank(model="tiny")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "reranking_disabled"
    assert "reranking = true" in error["message"]
    assert "WLM_LOCAL_OPTIONS" in error["message"]
    row = world.row(response.headers["x-request-id"])
    assert (row["endpoint"], row["provider"], row["http_status"]) == ("rerank", "local", 400)
