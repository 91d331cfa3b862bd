"""The queue in front of the local engines, through a real `wlm serve` and real engines
(the tiny GGUF model): a mixed load of two models and three priorities is served in
priority order, with as few engine swaps as the order allows; cancelling from the API
ends a waiting stream and a running request in their clients' terms.

The engine holding the one slot is paused (SIGSTOP) while the load queues up, so the
queue's state is known before anything moves; no sleep synchronises the test.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import WlmServer
from tests.e2e.telemetry_helpers import sql_api, wait_for_rows
from wlm.local.testmodel import write_tiny_gguf

pytestmark = [pytest.mark.e2e, pytest.mark.local]

ENV = {
    "WLM_LOCAL_THREADS": "1",
    "WLM_LOCAL_CTX_SIZE": "512",
    "WLM_LOCAL_PARALLEL": "1",  # one slot: requests run one at a time, in queue order
    "WLM_MAX_LOADED_MODELS": "1",  # another model means a swap
}
HI = [{"role": "user", "content": "hi"}]

# (request id, model, priority), in the order they arrive behind the paused engine.
LOAD = [
    ("a-batch", "tiny-a", "batch"),
    ("a-normal-1", "tiny-a", "normal"),
    ("b-normal-1", "sub/tiny-b", "normal"),
    ("a-interactive", "tiny-a", "interactive"),
    ("a-normal-2", "tiny-a", "normal"),
    ("b-normal-2", "sub/tiny-b", "normal"),  # a stream: it is told its position
]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[WlmServer]:
    models = tmp_path / "models"
    write_tiny_gguf(models / "tiny-a.gguf", seed=1)
    write_tiny_gguf(models / "sub" / "tiny-b.gguf", seed=2)
    server = WlmServer(ENV, tmp_path).start()
    yield server
    server.stop()


def queue(http: httpx.Client) -> list[dict[str, Any]]:
    response = http.get("/api/queue")
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def until_queued(http: httpx.Client, request_id: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while request_id not in {e["request_id"] for e in queue(http)}:
        assert time.monotonic() < deadline, f"{request_id} never queued: {queue(http)}"
        time.sleep(0.01)  # polling the server's state, not synchronising the test


def starts(http: httpx.Client, model_id: str) -> int:
    response = http.get(f"/api/instances/{model_id}/logs")
    assert response.status_code == 200, response.text
    return sum(line.startswith("wlm: starting") for line in response.json()["lines"])


def test_a_mixed_load_is_served_by_priority_without_swap_thrash(server: WlmServer) -> None:
    http = httpx.Client(base_url=server.base_url, timeout=60)
    assert http.post("/api/models/tiny-a/load").status_code == 200
    [engine] = [i for i in http.get("/api/instances").json()["data"] if i["model_id"] == "tiny-a"]
    pid = engine["pid"]

    # Pause the engine; the blocker takes its only slot and waits for it to answer.
    os.kill(pid, signal.SIGSTOP)
    comments: list[str] = []
    told = threading.Event()

    def send(request_id: str, model: str, priority: str, max_tokens: int = 4) -> int:
        headers = {"x-request-id": request_id, "x-wlm-priority": priority}
        body = {"model": model, "messages": HI, "max_tokens": max_tokens}
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            if request_id not in ("b-normal-2", "blocker"):
                return client.post("/v1/chat/completions", json=body, headers=headers).status_code
            with client.stream(
                "POST", "/v1/chat/completions", json={**body, "stream": True}, headers=headers
            ) as stream:
                for line in stream.iter_lines():
                    if line.startswith(": queued"):
                        comments.append(line)
                        told.set()
                return stream.status_code

    try:
        with ThreadPoolExecutor(len(LOAD) + 1) as pool:
            blocker = pool.submit(send, "blocker", "tiny-a", "normal", 32)
            until_queued(http, "blocker")
            futures: list[Future[int]] = []
            for request_id, model, priority in LOAD:
                futures.append(pool.submit(send, request_id, model, priority))
                until_queued(http, request_id)
            assert told.wait(20)

            # Everyone waits behind the paused engine, ranked: priority, then arrival.
            listed = queue(http)
            assert [(e["request_id"], e["state"], e["position"]) for e in listed] == [
                ("blocker", "running", None),
                ("a-interactive", "waiting", 1),
                ("a-normal-1", "waiting", 2),
                ("b-normal-1", "waiting", 3),
                ("a-normal-2", "waiting", 4),
                ("b-normal-2", "waiting", 5),
                ("a-batch", "waiting", 6),
            ]
            assert {e["model"] for e in listed[1:]} == {"tiny-a", "sub/tiny-b"}
            assert listed[0]["tokens"] == 0  # its engine has not answered yet
            assert starts(http, "tiny-a") == 1  # nothing swapped while a's work waits

            os.kill(pid, signal.SIGCONT)
            assert blocker.result(timeout=60) == 200
            assert [f.result(timeout=60) for f in futures] == [200] * len(LOAD)
    finally:
        if psutil.pid_exists(pid):
            os.kill(pid, signal.SIGCONT)

    wait_for_rows(http, len(LOAD) + 1)
    rows = sql_api(
        http,
        "SELECT request_id, model, status, queue_ms FROM requests ORDER BY ended_at",
    )
    # One slot, one engine at a time: requests ran one after another, in this order.
    assert [r["request_id"] for r in rows] == [
        "blocker",
        "a-interactive",
        "a-normal-1",
        "b-normal-1",
        # tiny-b's batch (what waited for it when it became ready) before swapping back
        "b-normal-2",
        "a-normal-2",
        "a-batch",
    ]
    assert all(r["status"] == "ok" and r["queue_ms"] is not None for r in rows)
    assert all(r["queue_ms"] > 0 for r in rows if r["request_id"] != "blocker")
    # Two swaps: tiny-a (loaded) -> tiny-b -> tiny-a; one start of tiny-b.
    assert (starts(http, "tiny-a"), starts(http, "sub/tiny-b")) == (2, 1)
    # The waiting stream was told its place, and told again when it moved.
    assert comments[0] == ": queued position=5 of 6"
    assert len(set(comments)) > 1
    http.close()


def test_cancelling_from_the_api_ends_a_waiting_stream_and_a_running_request(
    server: WlmServer,
) -> None:
    http = httpx.Client(base_url=server.base_url, timeout=60)
    assert http.post("/api/models/tiny-a/load").status_code == 200
    [engine] = http.get("/api/instances").json()["data"]
    pid = engine["pid"]
    os.kill(pid, signal.SIGSTOP)  # the running request cannot finish: it must be cancelled
    body = {"model": "tiny-a", "messages": HI, "max_tokens": 4}

    def whole() -> httpx.Response:
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            return client.post("/v1/chat/completions", json=body, headers={"x-request-id": "r"})

    def stream() -> list[str]:
        with (
            httpx.Client(base_url=server.base_url, timeout=60) as client,
            client.stream(
                "POST",
                "/v1/chat/completions",
                json={**body, "stream": True},
                headers={"x-request-id": "s"},
            ) as response,
        ):
            assert response.status_code == 200
            return [line for line in response.iter_lines() if line]

    try:
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(whole)
            until_queued(http, "r")
            waiting = pool.submit(stream)
            until_queued(http, "s")
            listed = {e["request_id"]: e for e in queue(http)}
            assert (listed["r"]["state"], listed["s"]["state"]) == ("running", "waiting")

            for request_id in ("s", "r"):
                answer = http.delete(f"/api/queue/{request_id}")  # its x-request-id works too
                assert answer.status_code == 200, answer.text
            lines = waiting.result(timeout=30)
            cancelled = running.result(timeout=30)
    finally:
        os.kill(pid, signal.SIGCONT)

    assert lines[0] == ": queued position=1 of 1"
    assert "request_cancelled" in lines[-1] and "cancelled by an administrator" in lines[-1]
    assert cancelled.status_code == 503
    assert cancelled.headers["x-should-retry"] == "false"
    assert cancelled.json()["error"]["code"] == "cancelled_by_admin"
    assert queue(http) == []
    assert http.delete("/api/queue/r").status_code == 404
    wait_for_rows(http, 2)
    rows = sql_api(http, "SELECT request_id, status, error_type FROM requests ORDER BY 1")
    assert [(r["request_id"], r["status"], r["error_type"]) for r in rows] == [
        ("r", "cancelled", "request_cancelled"),
        ("s", "cancelled", "request_cancelled"),
    ]
    # The engine's slot came back: the next request is answered.
    reply = http.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    http.close()
