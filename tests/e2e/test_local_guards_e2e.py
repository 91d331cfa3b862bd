"""The guards of local engines through a real `wlm serve` (docs/local-models.md#guards).

- The stall watchdog: the engine is frozen for real (SIGSTOP) in the middle of a
  stream; with WLM_LOCAL_STALL_S=1 the client gets a ``local_stalled`` error event
  within a few seconds, the telemetry row says so, and once the engine runs again
  (SIGCONT) its ``/slots`` shows the slot freed (wlm closed the connection).
- Crash recovery: an engine killed with SIGKILL is restarted by the next request;
  three kills within a minute hold the model (failed, with its last log lines, in the
  error a request gets and on /api/instances) until an explicit load; every crash is
  an ``engine_events`` row and counted on /analytics.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import WlmServer
from tests.e2e.telemetry_helpers import sql_api
from wlm.local.testmodel import write_tiny_gguf

pytestmark = [pytest.mark.e2e, pytest.mark.local]

HI = [{"role": "user", "content": "hi"}]
StartServer = Callable[..., WlmServer]


def instance(http: httpx.Client, model_id: str) -> dict[str, Any]:
    response = http.get("/api/instances")
    assert response.status_code == 200, response.text
    found = {i["model_id"]: i for i in response.json()["data"]}
    return found[model_id]


def until(check: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    """Poll ``check`` (state outside this process: a server, an engine) until truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # polling another process's state, not synchronising the test


@pytest.fixture
def server(wlm_factory: StartServer, tmp_path: Path) -> WlmServer:
    models = tmp_path / "models"
    # A long context, so that a stream runs for many seconds (it is frozen after its
    # first token).
    write_tiny_gguf(models / "tiny.gguf", seed=1, context_length=32768)
    return wlm_factory(
        {
            "WLM_LOCAL_THREADS": "1",
            "WLM_LOCAL_CTX_SIZE": "32768",
            "WLM_LOCAL_PARALLEL": "1",
            "WLM_LOCAL_STALL_S": "1",
        }
    )


def test_a_frozen_engine_ends_the_stream_with_a_stall_error_and_frees_the_slot(
    server: WlmServer,
) -> None:
    http = httpx.Client(base_url=server.base_url, timeout=30)
    body = {"model": "tiny", "messages": HI, "max_tokens": 30000, "stream": True}
    pid: int | None = None
    try:
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            lines = (line for line in response.iter_lines() if line)
            first = next(lines)
            assert first.startswith("data:")
            engine = instance(http, "tiny")
            pid, port = engine["pid"], engine["port"]
            os.kill(pid, signal.SIGSTOP)
            stopped_at = time.monotonic()
            rest = list(lines)
            ended_after = time.monotonic() - stopped_at
        # stall_s (1) + a sweep tick (0.25) + /slots that does not answer (1 s), and slack.
        assert ended_after < 6.0, ended_after
        events = [line.removeprefix("data:").strip() for line in rest if line.startswith("data:")]
        errors = [json.loads(e)["error"] for e in events if e != "[DONE]" and "error" in e]
        assert errors, rest[-5:]
        error = errors[-1]
        assert error["code"] == "local_stalled"
        assert "produced no token" in error["message"]
        assert "WLM_LOCAL_STALL_S=1" in error["message"]
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGCONT)

    # Running again, the engine notices the closed connection and frees the slot.
    def slot_free() -> bool:
        slots = httpx.get(f"http://127.0.0.1:{port}/slots", timeout=5).json()
        return not any(s["is_processing"] for s in slots)

    until(slot_free, what="the engine's slot to be freed")
    # The row says why it ended.
    rows = until(
        lambda: sql_api(
            http,
            "SELECT status, http_status, error_type, error_code, stream FROM requests "
            "WHERE model = 'tiny'",
        ),
        what="the telemetry row",
    )
    assert rows == [
        {
            "status": "error",
            "http_status": 200,
            "error_type": "timeout_error",
            "error_code": "local_stalled",
            "stream": True,
        }
    ]
    # The engine serves again once it runs.
    reply = http.post(
        "/v1/chat/completions", json={"model": "tiny", "messages": HI, "max_tokens": 3}
    )
    assert reply.status_code == 200, reply.text
    http.close()


def test_a_messages_stream_gets_the_stall_as_an_anthropic_error_event(server: WlmServer) -> None:
    http = httpx.Client(base_url=server.base_url, timeout=30)
    body = {"model": "tiny", "messages": HI, "max_tokens": 30000, "stream": True}
    pid: int | None = None
    try:
        with http.stream("POST", "/v1/messages", json=body) as response:
            assert response.status_code == 200
            lines = (line for line in response.iter_lines() if line)
            for line in lines:  # up to the first text delta: it is generating
                if "text_delta" in line:
                    break
            pid = instance(http, "tiny")["pid"]
            os.kill(pid, signal.SIGSTOP)
            rest = list(lines)
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
    assert "event: error" in rest, rest[-4:]
    error = json.loads(rest[rest.index("event: error") + 1].removeprefix("data:"))
    assert error["type"] == "error"
    assert error["error"]["type"] == "timeout_error"
    assert "produced no token" in error["error"]["message"]
    http.close()


def test_a_frozen_engine_answers_a_non_stream_request_with_504(server: WlmServer) -> None:
    http = httpx.Client(base_url=server.base_url, timeout=30)
    assert http.post("/api/models/tiny/load").status_code == 200
    engine = instance(http, "tiny")
    os.kill(engine["pid"], signal.SIGSTOP)
    try:
        started = time.monotonic()
        reply = http.post(
            "/v1/chat/completions", json={"model": "tiny", "messages": HI, "max_tokens": 3}
        )
        took = time.monotonic() - started
    finally:
        os.kill(engine["pid"], signal.SIGCONT)
    assert reply.status_code == 504, reply.text
    assert reply.json()["error"]["code"] == "local_stalled"
    assert took < 6.0, took
    http.close()


def test_killed_engines_restart_then_three_kills_in_a_minute_hold_the_model(
    wlm_factory: StartServer, tmp_path: Path
) -> None:
    write_tiny_gguf(tmp_path / "models" / "tiny.gguf", seed=2)
    server = wlm_factory({"WLM_LOCAL_THREADS": "1", "WLM_LOCAL_CTX_SIZE": "512"})
    http = httpx.Client(base_url=server.base_url, timeout=30)
    ask = {"model": "tiny", "messages": HI, "max_tokens": 2}
    pids = []
    for kill in range(3):
        reply = http.post("/v1/chat/completions", json=ask)
        assert reply.status_code == 200, (kill, reply.text)  # restarted after each crash
        pid = instance(http, "tiny")["pid"]
        pids.append(pid)
        os.kill(pid, signal.SIGKILL)
        until(lambda: instance(http, "tiny")["state"] == "failed", what="the crash to be seen")
    assert len(set(pids)) == 3

    held = instance(http, "tiny")
    assert held["crashes"] == 3
    assert held["held_s"] is not None and held["held_s"] > 0
    assert "crashed 3 times within 60 s" in held["last_error"]
    assert "Last engine log lines:" in held["last_error"]

    reply = http.post("/v1/chat/completions", json=ask)
    assert reply.status_code == 503, reply.text
    error = reply.json()["error"]
    assert error["code"] == "model_unavailable"
    assert "crashed 3 times within 60 s" in error["message"]
    assert "Last engine log lines:" in error["message"]
    assert "POST /api/models/tiny/load" in error["message"]
    assert int(reply.headers["retry-after"]) > 0
    assert instance(http, "tiny")["pid"] is None  # not restarted

    # The Models and Instances pages show why.
    page = http.get("/models")
    assert "crashed 3 times within 60 s" in page.text
    page = http.get("/instances")
    assert "crashed 3 times within 60 s" in page.text
    assert "held, " in page.text and "(3 crashes)" in page.text

    # An explicit load clears the hold.
    loaded = http.post("/api/models/tiny/load")
    assert loaded.status_code == 200, loaded.text
    assert instance(http, "tiny")["held_s"] is None
    assert http.post("/v1/chat/completions", json=ask).status_code == 200

    # Telemetry: a row per crash and one for the hold, and /analytics counts them.
    def events() -> list[dict[str, Any]]:
        found = sql_api(
            http, "SELECT event, count(*) AS n FROM engine_events WHERE model = 'tiny' GROUP BY 1"
        )
        return found if {r["event"]: r["n"] for r in found} == {"crash": 3, "held": 1} else []

    until(events, what="the engine_events rows")
    crashes = http.get("/analytics.json").json()["engine_crashes"]
    assert [(c["model"], c["crashes"], c["holds"]) for c in crashes] == [("tiny", 3, 1)]
    page = http.get("/analytics")
    assert 'id="engine-crashes"' in page.text
    assert '<td class="num crashes">3</td>' in page.text
    http.close()
