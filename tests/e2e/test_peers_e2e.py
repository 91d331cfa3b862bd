"""GPU boxes as peers: three real `wlm serve` on 127.0.0.1, each with its own tiny GGUFs.

``front`` has ``WLM_PEERS=box2=...,box3=...`` and one model of its own; ``box2`` wants a
client key (``WLM_PEER_BOX2_KEY`` on the front). The models list merges with states
and names (``box2/<id>``, bare when no other box has the id), requests in every
dialect go natively to the box that has the model, a loaded box wins over one that
would have to load, a killed box is skipped and comes back once it answers again,
and the peer key never leaves the front.

The tiny model (wlm.local.testmodel) answers gibberish: the tests assert shapes,
providers and states, never text. Waits poll the servers' own state with a deadline.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import WlmServer, free_port
from tests.e2e.telemetry_helpers import sql_api
from wlm.local.testmodel import write_tiny_gguf

pytestmark = [pytest.mark.e2e, pytest.mark.local]

LIGHT = {"WLM_LOCAL_THREADS": "1", "WLM_LOCAL_CTX_SIZE": "512", "WLM_LOCAL_PARALLEL": "2"}
PEER_KEY = "sk-peer-box2-Zq8vW3nLx"
HI = [{"role": "user", "content": "hi"}]


def _box(workdir: Path, models: dict[str, int], env: dict[str, str], port: int) -> WlmServer:
    for name, seed in models.items():
        write_tiny_gguf(workdir / "models" / f"{name}.gguf", seed=seed)
    server = WlmServer({**LIGHT, "WLM_PORT": str(port), **env}, workdir)
    server.port = port
    server.base_url = f"http://127.0.0.1:{port}"
    return server.start()


class Fleet:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ports = {"box2": free_port(), "box3": free_port()}
        self.box2 = _box(
            root / "box2",
            {"only2": 1, "shared": 2, "mine": 3},
            {"WLM_API_KEYS": f"front:{PEER_KEY}"},
            self.ports["box2"],
        )
        self.box3 = self.start_box3()
        peers = ",".join(f"{name}=http://127.0.0.1:{port}" for name, port in self.ports.items())
        self.front = _box(
            root / "front",
            {"mine": 5},
            {
                "WLM_PEERS": peers,
                "WLM_PEER_BOX2_KEY": PEER_KEY,
                "WLM_PEER_POLL_S": "0.3",
                "WLM_COOLDOWN_S": "1",
                "WLM_RETRY_MAX_WAIT_S": "0.2",
            },
            free_port(),
        )
        self.http = httpx.Client(base_url=self.front.base_url, timeout=60)

    def start_box3(self) -> WlmServer:
        return _box(self.root / "box3", {"shared": 4, "only3": 6}, {}, self.ports["box3"])

    def models(self) -> dict[str, dict[str, Any]]:
        response = self.http.get("/v1/models")
        assert response.status_code == 200, response.text
        return {m["id"]: m for m in response.json()["data"]}

    def wait_models(self, check: Callable[[dict[str, dict[str, Any]]], bool]) -> dict[str, Any]:
        """The front's model list once ``check`` holds (its poll runs every 0.3 s)."""
        deadline = time.monotonic() + 30
        while True:
            models = self.models()
            if check(models):
                return models
            assert time.monotonic() < deadline, f"never held: {sorted(models)}"
            time.sleep(0.05)  # polling the server's state, not synchronising the test

    def chat(self, model: str, **extra: Any) -> httpx.Response:
        body = {"model": model, "messages": HI, "max_tokens": 4, **extra}
        return self.http.post("/v1/chat/completions", json=body)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path_factory.mktemp("wlm-peers"))
    yield fleet
    fleet.http.close()
    for server in (fleet.front, fleet.box2, fleet.box3):
        server.stop()


def _peer_models_listed(models: dict[str, dict[str, Any]]) -> bool:
    return "box2/only2" in models and "box3/only3" in models


def test_models_merge_with_states_and_names(fleet: Fleet) -> None:
    models = fleet.wait_models(_peer_models_listed)
    # Each peer's local models, prefixed with the box and with their state there.
    for listed, provider in (
        ("box2/only2", "peer:box2"),
        ("box2/shared", "peer:box2"),
        ("box2/mine", "peer:box2"),
        ("box3/shared", "peer:box3"),
        ("box3/only3", "peer:box3"),
    ):
        assert models[listed]["provider"] == provider
        assert models[listed]["owned_by"] == provider
        assert models[listed]["state"] in ("stopped", "starting", "ready")
    # Bare only where no other box, this one included, has the id.
    assert models["only2"]["provider"] == "peer:box2"
    assert models["only3"]["provider"] == "peer:box3"
    assert "shared" not in models  # on two peers
    assert models["mine"]["provider"] == "local"  # this box has it: bare is its own
    # A peer lists only its own local models: nothing of the front comes back.
    assert not any(i.startswith(("box2/box", "box3/box")) for i in models)
    page = fleet.http.get("/models")
    assert page.status_code == 200
    assert "box2/only2" in page.text and "peer:box3" in page.text


def test_chat_and_messages_route_to_the_peer_that_has_the_model(fleet: Fleet) -> None:
    fleet.wait_models(_peer_models_listed)
    response = fleet.chat("only2")
    assert response.status_code == 200, response.text
    assert response.headers["x-wlm-provider"] == "peer:box2"
    body = response.json()
    assert body["model"] == "only2"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["completion_tokens"] > 0

    # A stream, by the prefixed name: chunks as the peer sends them, model as asked.
    with fleet.http.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "box3/only3", "messages": HI, "max_tokens": 4, "stream": True},
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["x-wlm-provider"] == "peer:box3"
        events = [line[5:].strip() for line in stream.iter_lines() if line.startswith("data:")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["model"] for c in chunks} == {"box3/only3"}
    assert not any(c.get("usage") for c in chunks)  # the usage wlm asked for is not passed on

    # Legacy completions go to the same path on the peer too.
    response = fleet.http.post(
        "/v1/completions", json={"model": "box2/only2", "prompt": "hi", "max_tokens": 3}
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "box2/only2"
    assert response.json()["choices"][0]["text"] is not None

    # Messages, natively on the peer (Anthropic's shape both ways), whole and streamed.
    messages = {"model": "only2", "max_tokens": 4, "messages": HI}
    response = fleet.http.post("/v1/messages", json=messages)
    assert response.status_code == 200, response.text
    assert response.headers["x-wlm-provider"] == "peer:box2"
    assert response.json()["type"] == "message"
    assert response.json()["model"] == "only2"
    with fleet.http.stream("POST", "/v1/messages", json={**messages, "stream": True}) as stream:
        assert stream.status_code == 200
        kinds = [line[6:].strip() for line in stream.iter_lines() if line.startswith("event:")]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"

    # Responses too, and the peer's errors come back in the client's dialect.
    response = fleet.http.post(
        "/v1/responses", json={"model": "only2", "input": "hi", "max_output_tokens": 4}
    )
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "response"
    assert response.headers["x-wlm-provider"] == "peer:box2"

    # Telemetry says which box answered.
    deadline = time.monotonic() + 10
    while True:
        rows = sql_api(
            fleet.http, "SELECT provider, count(*) AS n FROM requests GROUP BY 1 ORDER BY 1"
        )
        by_provider = {r["provider"]: r["n"] for r in rows}
        if by_provider.get("peer:box2", 0) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # polling the writer's flush, not synchronising the test
    assert by_provider.get("peer:box2", 0) >= 4
    assert by_provider.get("peer:box3", 0) >= 1


def test_the_box_where_the_model_is_loaded_wins(fleet: Fleet) -> None:
    fleet.wait_models(_peer_models_listed)
    # Both boxes have "shared"; by name box2 would come first. Load it on box3.
    loaded = httpx.post(f"{fleet.box3.base_url}/api/models/shared/load", timeout=60)
    assert loaded.status_code == 200, loaded.text
    fleet.wait_models(lambda m: m.get("box3/shared", {}).get("state") == "ready")
    for _ in range(3):
        response = fleet.chat("shared")
        assert response.status_code == 200, response.text
        assert response.headers["x-wlm-provider"] == "peer:box3"
        assert response.json()["model"] == "shared"


def test_a_killed_peer_is_skipped_and_comes_back(fleet: Fleet) -> None:
    fleet.wait_models(lambda m: m.get("box3/shared", {}).get("state") == "ready")
    assert fleet.box3.stop(signal.SIGKILL) is not None
    # The model on both boxes: answered by the other one (box3 ranked first until seen down).
    for _ in range(3):
        response = fleet.chat("shared")
        assert response.status_code == 200, response.text
        assert response.headers["x-wlm-provider"] == "peer:box2"
    models = fleet.wait_models(lambda m: m.get("box3/only3", {}).get("state") == "unreachable")
    assert models["box3/shared"]["state"] == "unreachable"
    # A model only the dead box has: a clear error that names it, not a hang.
    response = fleet.chat("only3")
    assert response.status_code in (502, 503, 504), response.text
    assert "peer:box3" in response.json()["error"]["message"]

    fleet.box3 = fleet.start_box3()  # the same port again
    fleet.wait_models(lambda m: m.get("box3/only3", {}).get("state") == "stopped")
    response = fleet.chat("only3")
    assert response.status_code == 200, response.text
    assert response.headers["x-wlm-provider"] == "peer:box3"


def test_the_peer_key_is_sent_and_never_shown(fleet: Fleet) -> None:
    fleet.wait_models(_peer_models_listed)
    # box2 wants the key: without it, it refuses; through the front, it answers.
    direct = httpx.post(
        f"{fleet.box2.base_url}/v1/chat/completions",
        json={"model": "only2", "messages": HI, "max_tokens": 2},
        timeout=30,
    )
    assert direct.status_code == 401
    answered = fleet.chat("only2")
    assert answered.status_code == 200
    # An upstream that echoes the key is redacted too: box2 does not, so ask for it back.
    shown = [answered.text, json.dumps(dict(answered.headers))]
    for path in ("/v1/models", "/models", "/settings", "/", "/requests", "/api/models"):
        response = fleet.http.get(path)
        assert response.status_code == 200, path
        shown.append(response.text)
    shown.append(json.dumps(sql_api(fleet.http, "SELECT * FROM requests")))
    shown.append(json.dumps(sql_api(fleet.http, "SELECT * FROM attempts")))
    shown.append(fleet.front.log())
    for text in shown:
        assert PEER_KEY not in text
