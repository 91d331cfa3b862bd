"""Providers that fail, with somewhere else to go: retries, fallbacks, cooldowns, spillover.

Real wlm servers in front of real fakes (their own, so their retry-after can be set):
a 429 storm, Anthropic's 529, a refused connection, a flapping provider, a local model
that cannot load and a local engine whose one slot is busy past WLM_LOCAL_MAX_WAIT_S.
For every case: the client gets an answer from the chain (the model that answered,
x-wlm-provider, x-wlm-attempts), each fake saw exactly the tries expected, and the
telemetry has the provider that answered, after how many tries, and one row per try
in the ``attempts`` view that matches what the fakes saw.

Waits are small: WLM_RETRY_MAX_WAIT_S=0.3 caps every backoff, and a retry-after the
fakes send beyond it is not waited (the fallback answers at once).
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import WlmServer
from tests.fakes import FakeUpstream
from tests.faults.conftest import StartWlm, closed_port
from tests.faults.helpers import (
    KEYS,
    Ledger,
    RecordingTransport,
    chat,
    data_events,
    new_request_id,
    telemetry_row,
    wait_for,
)
from wlm.local.testmodel import write_tiny_gguf

pytestmark = pytest.mark.e2e

MAX_WAIT_S = 0.3
COOLDOWN_S = 2
ENGINE = Path(__file__).resolve().parent.parent / "fakes" / "engine.py"


@pytest.fixture(scope="module")
def own() -> Iterator[dict[str, FakeUpstream]]:
    """This module's own fakes (it sets their retry-after)."""
    started = {
        "openai": FakeUpstream("openai", KEYS.openai).start(),
        "openrouter": FakeUpstream("openrouter", KEYS.openrouter).start(),
        "anthropic": FakeUpstream("anthropic", KEYS.anthropic).start(),
    }
    yield started
    for fake in started.values():
        fake.stop()


def upstreams(fakes: dict[str, FakeUpstream]) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": fakes["openai"].base_url,
        "OPENROUTER_BASE_URL": fakes["openrouter"].base_url,
        "ANTHROPIC_BASE_URL": fakes["anthropic"].base_url,
        "WLM_OPENAI_MODELS": "gpt-4o-mini",
        "WLM_OPENROUTER_MODELS": "openai/gpt-4o-mini",
        "WLM_ANTHROPIC_MODELS": "claude-haiku-4-5",
    }


class Client:
    """A client key's httpx client and the admin's, on one server."""

    def __init__(self, server: WlmServer, ledger: Ledger) -> None:
        self.server = server
        self.http = httpx.Client(
            base_url=server.base_url,
            headers={"authorization": f"Bearer {KEYS.alice}"},
            timeout=30,
            transport=RecordingTransport(ledger),
        )
        self.admin = httpx.Client(
            base_url=server.base_url,
            headers={"authorization": f"Bearer {KEYS.admin}"},
            timeout=30,
            transport=RecordingTransport(ledger),
        )

    def post(
        self,
        body: dict[str, Any],
        *,
        fallbacks: str | None = None,
        path: str = "/v1/chat/completions",
        request_id: str | None = None,
    ) -> httpx.Response:
        headers = {"x-request-id": request_id or new_request_id()}
        if fallbacks is not None:
            headers["x-wlm-fallbacks"] = fallbacks
        return self.http.post(path, json=body, headers=headers)

    def close(self) -> None:
        self.http.close()
        self.admin.close()


@pytest.fixture(scope="module")
def wlm(start_wlm: StartWlm, own: dict[str, FakeUpstream], ledger: Ledger) -> Iterator[Client]:
    env = {
        **upstreams(own),
        "WLM_PROVIDERS": "dead",
        "DEAD_BASE_URL": f"http://127.0.0.1:{closed_port()}/v1",
        "DEAD_NO_KEY": "true",
        "WLM_DEAD_MODELS": "",
        "WLM_RETRY_MAX_WAIT_S": str(MAX_WAIT_S),
        "WLM_COOLDOWN_S": str(COOLDOWN_S),
        "WLM_FALLBACKS": "dead/*=openai/gpt-4o-mini,openai/error:429=openrouter/openai/gpt-4o-mini",
    }
    client = Client(start_wlm(env, "resilient"), ledger)
    yield client
    client.close()


def posts(fake: FakeUpstream, model: str) -> list[float]:
    """When ``fake`` received each POST naming ``model`` (monotonic seconds)."""
    return [
        r.received_at
        for r in fake.requests
        if r.method == "POST" and isinstance(r.json, dict) and r.json.get("model") == model
    ]


def answered_by(response: httpx.Response, provider: str, attempts: int) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["x-wlm-provider"] == provider
    assert response.headers["x-wlm-attempts"] == str(attempts)


def recorded(
    client: Client, request_id: str, provider: str, attempts: int
) -> list[tuple[Any, ...]]:
    """Check the request's telemetry row; its rows of the ``attempts`` view, in order
    (provider, HTTP status, why wlm moved on)."""
    row = telemetry_row(client.admin, request_id)
    assert (row["status"], row["provider"], row["attempts"]) == ("ok", provider, attempts)
    sql = (
        "SELECT provider, http_status, moved_on FROM attempts "
        f"WHERE request_id = '{row['id']}' ORDER BY number"
    )
    response = client.admin.post("/api/sql", json={"sql": sql})
    assert response.status_code == 200, response.text
    return [tuple(r) for r in response.json()["rows"]]


def test_a_429_storm_goes_to_the_fallback_without_waiting_then_skips_the_cooling_pair(
    wlm: Client, own: dict[str, FakeUpstream]
) -> None:
    """openai answers 429 with retry-after: 1 (beyond WLM_RETRY_MAX_WAIT_S): each request
    goes to OpenRouter at once; after three in a row the pair cools down and the rest
    skip it. Client: 200 every time, from OpenRouter."""
    started = time.monotonic()
    ids = [new_request_id() for _ in range(8)]
    responses = [wlm.post(chat("openai/error:429"), request_id=request_id) for request_id in ids]
    elapsed = time.monotonic() - started

    for index, response in enumerate(responses):
        answered_by(response, "openrouter", 2 if index < 3 else 1)
        assert response.json()["model"] == "openrouter/openai/gpt-4o-mini"
    assert elapsed < 8  # eight retry-afters of 1 s were never waited
    assert len(posts(own["openai"], "error:429")) == 3  # the cooldown began at the third
    assert len(posts(own["openrouter"], "openai/gpt-4o-mini")) >= 8
    assert recorded(wlm, ids[0], "openrouter", 2) == [
        ("openai", 429, "fallback"),
        ("openrouter", 200, None),
    ]
    assert recorded(wlm, ids[-1], "openrouter", 1) == [
        ("openai", None, "cooldown_skip"),
        ("openrouter", 200, None),
    ]
    metrics = wlm.admin.get("/metrics").text.split("\n")
    assert 'wlm_cooldowns_started_total{provider="openai"} 1' in metrics
    assert 'wlm_cooldown_skips_total{provider="openai"} 5' in metrics


@pytest.fixture
def retry_after(own: dict[str, FakeUpstream]) -> Iterator[dict[str, FakeUpstream]]:
    """The fakes with a short retry-after (restored after the test)."""
    before = {name: fake.retry_after for name, fake in own.items()}
    for fake in own.values():
        fake.retry_after = "0.2"
    yield own
    for name, fake in own.items():
        fake.retry_after = before[name]


def test_a_short_retry_after_is_waited_and_the_same_model_answers(
    wlm: Client, retry_after: dict[str, FakeUpstream]
) -> None:
    request_id = new_request_id()
    response = wlm.post(chat("openai/flaky:2-429:honoured", stream=True), request_id=request_id)

    answered_by(response, "openai", 3)
    assert data_events(response.text)[-1] == "[DONE]"
    arrivals = posts(retry_after["openai"], "flaky:2-429:honoured")
    assert len(arrivals) == 3
    assert all(b - a >= 0.2 for a, b in itertools.pairwise(arrivals))
    assert recorded(wlm, request_id, "openai", 3) == [
        ("openai", 429, "retry"),
        ("openai", 429, "retry"),
        ("openai", 200, None),
    ]


def test_anthropic_overloaded_is_retried_then_answered(
    wlm: Client, retry_after: dict[str, FakeUpstream]
) -> None:
    response = wlm.post(chat("anthropic/flaky:1-529:overloaded"))

    answered_by(response, "anthropic", 2)
    assert len(posts(retry_after["anthropic"], "flaky:1-529:overloaded")) == 2


def test_anthropic_overloaded_sends_a_messages_client_to_an_openai_model(
    wlm: Client, own: dict[str, FakeUpstream]
) -> None:
    """529 with retry-after: 1, beyond the maximum wait: the header's alternative
    answers at once, translated, in the Messages shape the client asked for."""
    before = len(posts(own["openai"], "gpt-4o-mini"))
    body = {"model": "anthropic/error:529", "max_tokens": 16, "messages": chat("x")["messages"]}

    response = wlm.post(body, path="/v1/messages", fallbacks="openai/gpt-4o-mini")

    answered_by(response, "openai", 2)
    answer = response.json()
    assert (answer["type"], answer["model"]) == ("message", "openai/gpt-4o-mini")
    assert len(posts(own["anthropic"], "error:529")) == 1
    assert len(posts(own["openai"], "gpt-4o-mini")) == before + 1


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_refused_connection_is_retried_then_falls_back(
    wlm: Client, own: dict[str, FakeUpstream], stream: bool
) -> None:
    request_id = new_request_id()
    before = len(posts(own["openai"], "gpt-4o-mini"))

    # A model of its own per case: three refusals in a row cool a pair down.
    model = f"dead/model-{'stream' if stream else 'whole'}"
    response = wlm.post(chat(model, stream=stream), request_id=request_id)

    answered_by(response, "openai", 4)  # three refused (WLM_RETRIES=2), then the fallback
    assert len(posts(own["openai"], "gpt-4o-mini")) == before + 1
    if stream:
        assert data_events(response.text)[-1] == "[DONE]"
    assert recorded(wlm, request_id, "openai", 4) == [
        ("dead", None, "retry"),
        ("dead", None, "retry"),
        ("dead", None, "fallback"),
        ("openai", 200, None),
    ]


def test_a_flapping_provider_cools_down_then_one_probe_brings_it_back(
    wlm: Client, retry_after: dict[str, FakeUpstream]
) -> None:
    """flaky:3-503 fails three times (retry-after: 0.2), then answers. The first request
    fails there three times (its retries) and is answered by OpenRouter; the pair cools
    down, so the next skips it; once the cooldown is up, one probe goes and is answered."""
    own = retry_after
    model, chain = "openai/flaky:3-503:flapping", "openrouter/openai/gpt-4o-mini"

    first = wlm.post(chat(model), fallbacks=chain)
    answered_by(first, "openrouter", 4)
    second = wlm.post(chat(model), fallbacks=chain)
    answered_by(second, "openrouter", 1)
    assert len(posts(own["openai"], "flaky:3-503:flapping")) == 3

    def probe_due() -> bool:
        cooling = wlm.admin.get("/index.json").json()["cooldowns"]
        return any(
            c["model"] == "flaky:3-503:flapping" and c["state"] == "probe_due" for c in cooling
        )

    wait_for(probe_due, COOLDOWN_S + 5, "the cooldown to end")
    probe = wlm.post(chat(model), fallbacks=chain)
    answered_by(probe, "openai", 1)
    assert len(posts(own["openai"], "flaky:3-503:flapping")) == 4
    cooling = wlm.admin.get("/index.json").json()["cooldowns"]
    assert not any(c["model"] == "flaky:3-503:flapping" for c in cooling)


def test_without_an_alternative_the_error_still_reaches_the_client(wlm: Client) -> None:
    response = wlm.post(chat("openai/error:400"), fallbacks="openrouter/openai/gpt-4o-mini")
    assert response.status_code == 400  # the request is at fault: no other model is asked
    assert response.headers["x-wlm-attempts"] == "1"


# -- local engines ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_chain(
    start_wlm: StartWlm, own: dict[str, FakeUpstream], ledger: Ledger
) -> Iterator[Client]:
    """A wlm whose llama-server is tests/fakes/engine.py, with one slot per engine."""
    env = {
        **upstreams(own),
        "WLM_LOCAL_PARALLEL": "1",
        "WLM_IDLE_UNLOAD_S": "0",
        "WLM_LOCAL_MAX_WAIT_S": "0.5",
        "WLM_FALLBACKS": "busy=openai/gpt-4o-mini,refuse-me=openai/gpt-4o-mini",
    }
    server = start_wlm(env, "local-chain", wait=False)
    models = Path(server.env["WLM_MODELS_DIR"])
    write_tiny_gguf(models / "busy.gguf", seed=5)
    write_tiny_gguf(models / "refuse-me.gguf", seed=6)
    script = server.workdir / "llama-server"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{ENGINE}" "$@"\n')
    script.chmod(0o755)
    server.env["WLM_LLAMA_SERVER"] = str(script)
    client = Client(server.start(), ledger)
    yield client
    (models / "busy.go").touch()  # let any held request go
    client.close()


def test_a_local_model_that_fails_to_load_is_answered_by_its_fallback(
    local_chain: Client, own: dict[str, FakeUpstream]
) -> None:
    request_id = new_request_id()
    before = len(posts(own["openai"], "gpt-4o-mini"))

    response = local_chain.post(chat("refuse-me"), request_id=request_id)

    answered_by(response, "openai", 2)
    assert response.json()["model"] == "openai/gpt-4o-mini"
    assert len(posts(own["openai"], "gpt-4o-mini")) == before + 1
    assert recorded(local_chain, request_id, "openai", 2) == [
        ("local", None, "spillover"),
        ("openai", 200, None),
    ]
    instances = local_chain.admin.get("/api/instances").json()["data"]
    assert [i["state"] for i in instances if i["model_id"] == "refuse-me"] == ["failed"]


def test_a_local_engine_busy_past_the_maximum_wait_spills_over_to_the_cloud(
    local_chain: Client, own: dict[str, FakeUpstream]
) -> None:
    """The engine's one slot is held by a request with no alternative (x-wlm-fallbacks:
    none, so it waits as long as it takes); the next request for the model goes to its
    fallback once WLM_LOCAL_MAX_WAIT_S has passed, with no loading comment; the held
    one is answered by the engine when it is let go."""
    models = Path(local_chain.server.env["WLM_MODELS_DIR"])
    held: dict[str, httpx.Response] = {}

    def hold() -> None:
        held["response"] = local_chain.post(chat("busy"), fallbacks="none")

    holder = threading.Thread(target=hold)
    holder.start()

    def in_flight() -> bool:
        instances = local_chain.admin.get("/api/instances").json()["data"]
        return any(i["model_id"] == "busy" and i["in_flight"] == 1 for i in instances)

    wait_for(lambda: (models / "busy.requests").exists() and in_flight(), 20, "the held request")
    request_id = new_request_id()
    before = len(posts(own["openai"], "gpt-4o-mini"))
    started = time.monotonic()

    spilled = local_chain.post(chat("busy", stream=True), request_id=request_id)

    elapsed = time.monotonic() - started
    answered_by(spilled, "openai", 2)
    assert not spilled.text.startswith(":")  # no loading comment committed it to the engine
    assert data_events(spilled.text)[0]["model"] == "openai/gpt-4o-mini"
    assert 0.5 <= elapsed < 5
    assert len(posts(own["openai"], "gpt-4o-mini")) == before + 1
    assert (models / "busy.requests").read_text().count("\n") == 1  # the engine saw one
    (models / "busy.go").touch()
    holder.join(timeout=20)
    answered_by(held["response"], "local", 1)
    assert held["response"].json()["choices"][0]["message"]["content"] == "from the engine"
    assert recorded(local_chain, request_id, "openai", 2) == [
        ("local", None, "spillover"),
        ("openai", 200, None),
    ]
