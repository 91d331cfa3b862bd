"""GGUF files copied into (or removed from) WLM_MODELS_DIR while a real `wlm serve` runs.

Each test starts its own server over a fresh models directory holding tiny-a (the tiny
random-weight model of wlm.local.testmodel), then changes the directory. With
``WLM_LOCAL_RESCAN_S=0`` the background rescan is off, so whatever finds a new file is
the endpoint under test and nothing else.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import WlmServer
from wlm.local.testmodel import write_tiny_gguf

pytestmark = [pytest.mark.e2e, pytest.mark.local]

# Light engines (shared/LOCAL_ENGINE.md: one thread keeps a busy 2-core machine responsive).
LIGHT = {"WLM_LOCAL_THREADS": "1", "WLM_LOCAL_CTX_SIZE": "512", "WLM_LOCAL_PARALLEL": "2"}
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """The models directory the wlm_factory servers use (WLM_MODELS_DIR=<tmp>/models)."""
    write_tiny_gguf(tmp_path / "models" / "tiny-a.gguf", seed=1)
    return tmp_path / "models"


@pytest.fixture
def serve(wlm_factory: Callable[[dict[str, str]], WlmServer], models: Path) -> Iterator[Any]:
    """Start wlm over ``models`` with a rescan interval; yields an httpx client factory."""
    clients: list[httpx.Client] = []

    def start(rescan_s: str, **env: str) -> httpx.Client:
        server = wlm_factory({**LIGHT, "WLM_LOCAL_RESCAN_S": rescan_s, **env})
        client = httpx.Client(base_url=server.base_url, timeout=30)
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.close()


def local_ids(http: httpx.Client) -> set[str]:
    """The local model ids ``GET /v1/models`` lists."""
    response = http.get("/v1/models")
    assert response.status_code == 200, response.text
    return {m["id"] for m in response.json()["data"] if m["provider"] == "local"}


def chat(http: httpx.Client, model: str, max_tokens: int = 3) -> httpx.Response:
    body = {"model": model, "messages": HI, "max_tokens": max_tokens}
    return http.post("/v1/chat/completions", json=body)


def instance_state(http: httpx.Client, model_id: str) -> str | None:
    response = http.get("/api/instances")
    assert response.status_code == 200, response.text
    found = {i["model_id"]: i["state"] for i in response.json()["data"]}
    return found.get(model_id)


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll ``condition`` (an HTTP observation) until it holds; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)  # polling an observable condition with a deadline


def test_rescan_endpoint_lists_a_new_file_at_once(serve: Any, models: Path) -> None:
    http = serve("0")
    assert local_ids(http) == {"tiny-a"}
    write_tiny_gguf(models / "sub" / "late.gguf", seed=2)
    (models / "junk.gguf").write_bytes(b"not a model")

    response = http.post("/api/models/rescan")

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["added"], body["removed"]) == (["junk", "sub/late"], [])
    listed = {m["id"]: m for m in body["local"]}
    assert set(listed) == {"junk", "sub/late", "tiny-a"}
    assert listed["sub/late"]["state"] == "stopped"
    assert listed["sub/late"]["broken_reason"] is None
    assert listed["sub/late"]["architecture"] == "llama"
    assert "not a GGUF file" in listed["junk"]["broken_reason"]
    # Routable and listed right away, no background scan involved.
    assert local_ids(http) == {"sub/late", "tiny-a"}
    reply = chat(http, "sub/late")
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["completion_tokens"] == 3
    # Nothing changed since: nothing to report.
    again = http.post("/api/models/rescan").json()
    assert (again["added"], again["removed"]) == ([], [])

    (models / "junk.gguf").unlink()
    gone = http.post("/api/models/rescan").json()
    assert (gone["added"], gone["removed"]) == ([], ["junk"])
    assert {m["id"] for m in gone["local"]} == {"sub/late", "tiny-a"}


def test_loading_a_just_copied_file_rescans_before_answering(serve: Any, models: Path) -> None:
    http = serve("0")
    write_tiny_gguf(models / "fresh.gguf", seed=3)
    (models / "bad.gguf").write_bytes(b"GGUF" + bytes(64))

    loaded = http.post("/api/models/local/fresh/load")
    broken = http.post("/api/models/bad/load")
    missing = http.post("/api/models/never-copied/load")

    assert loaded.status_code == 200, loaded.text
    assert loaded.json() == {"id": "fresh", "state": "ready"}
    assert instance_state(http, "fresh") == "ready"
    # Found by the same rescan, and refused with its own reason rather than "no such model".
    assert broken.status_code == 503, broken.text
    assert "cannot be loaded" in broken.json()["error"]["message"]
    assert missing.status_code == 404
    assert "never-copied" in missing.json()["error"]["message"]


def test_the_background_rescan_adds_and_drops_models(serve: Any, models: Path) -> None:
    http = serve("0.2")
    assert local_ids(http) == {"tiny-a"}

    write_tiny_gguf(models / "dropped-in.gguf", seed=4)
    wait_until(lambda: "dropped-in" in local_ids(http))
    reply = chat(http, "dropped-in")
    assert reply.status_code == 200, reply.text

    (models / "dropped-in.gguf").unlink()
    wait_until(lambda: "dropped-in" not in local_ids(http))
    assert local_ids(http) == {"tiny-a"}
    assert chat(http, "dropped-in").status_code == 404
    # Its engine was running; it is stopped once the file is gone.
    wait_until(lambda: instance_state(http, "dropped-in") == "stopped")


def test_a_removed_model_finishes_its_stream_then_its_engine_stops(
    serve: Any, models: Path
) -> None:
    # One slot with room for a reply long enough (about 3 s on one thread) to still be
    # generating when the rescan has answered.
    http = serve("0", WLM_LOCAL_CTX_SIZE="2048", WLM_LOCAL_PARALLEL="1")
    assert http.post("/api/models/tiny-a/load").status_code == 200
    body = {
        "model": "tiny-a",
        "messages": HI,
        "max_tokens": 1500,
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))  # generating
        (models / "tiny-a.gguf").unlink()
        with httpx.Client(base_url=str(http.base_url), timeout=30) as admin:
            rescan = admin.post("/api/models/rescan").json()
            refused = chat(admin, "tiny-a")
        rest = [line for line in lines if line.startswith("data:")]

    assert (rescan["added"], rescan["removed"]) == ([], ["tiny-a"])
    assert rescan["local"] == []
    assert refused.status_code == 404  # no longer routed, while its stream still runs
    events = [line.removeprefix("data:").strip() for line in [first, *rest]]
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["usage"]["completion_tokens"] == 1500
    wait_until(lambda: instance_state(http, "tiny-a") == "stopped")
    # The engine's log stays readable and says why it stopped: the stop began while the
    # stream was still generating, and waited for it.
    logs = http.get("/api/instances/tiny-a/logs")
    assert logs.status_code == 200, logs.text
    log = logs.json()["lines"]
    stopping = log.index("wlm: stopping (its file is gone from the models directory)")
    finished = max(i for i, line in enumerate(log) if "stop processing" in line)
    assert stopping < finished, "\n".join(log)


def test_rescan_needs_the_admin_key_when_one_is_set(serve: Any, models: Path) -> None:
    admin_key = "wlm-admin-test-key-0123456789"
    http = serve("0", WLM_ADMIN_KEY=admin_key)
    write_tiny_gguf(models / "guarded.gguf", seed=5)

    refused = http.post("/api/models/rescan")
    wrong = http.post("/api/models/rescan", headers={"authorization": "Bearer nope"})
    allowed = http.post("/api/models/rescan", headers={"authorization": f"Bearer {admin_key}"})

    assert refused.status_code == 401
    assert wrong.status_code == 401
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["added"] == ["guarded"]
