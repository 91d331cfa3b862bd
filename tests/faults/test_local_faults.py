"""Local engine faults: a crash mid-stream, files that cannot load, an engine that hangs.

The engines serve the tiny random-weight model (wlm.local.testmodel), one thread each.
For every case: what the client sees, the telemetry row, and that no engine process
is left behind (checked by pid, and by scanning the process table after wlm stops).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from tests.conftest import WlmServer
from tests.faults.conftest import StartWlm
from tests.faults.helpers import (
    KEYS,
    Ledger,
    RecordingTransport,
    all_gone,
    chat,
    data_events,
    error_of,
    new_request_id,
    telemetry_row,
)
from tests.integration.local.localhelpers import write_unloadable_gguf
from wlm.local.testmodel import write_tiny_gguf

pytestmark = [pytest.mark.e2e, pytest.mark.local]

LIGHT = {"WLM_LOCAL_THREADS": "1", "WLM_LOCAL_PARALLEL": "1", "WLM_IDLE_UNLOAD_S": "0"}
LOAD_TIMEOUT_S = 2


class Local:
    """A wlm serving local models, with a client and an admin client."""

    def __init__(self, server: WlmServer, ledger: Ledger) -> None:
        self.server = server
        self.models = Path(server.env["WLM_MODELS_DIR"])
        self.http = httpx.Client(
            base_url=server.base_url,
            headers={"authorization": f"Bearer {KEYS.alice}"},
            timeout=60,
            transport=RecordingTransport(ledger),
        )
        self.admin = httpx.Client(
            base_url=server.base_url,
            headers={"authorization": f"Bearer {KEYS.admin}"},
            timeout=60,
            transport=RecordingTransport(ledger),
        )

    def instance(self, model_id: str) -> dict:
        response = self.admin.get("/api/instances")
        assert response.status_code == 200, response.text
        return next(i for i in response.json()["data"] if i["model_id"] == model_id)

    def close(self) -> None:
        self.http.close()
        self.admin.close()


def leftover_engines(models: Path) -> list[psutil.Process]:
    """Processes whose command line names a file under ``models`` (engines of this test)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or ())
        if str(models) in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


@pytest.fixture(scope="module")
def local(start_wlm: StartWlm, ledger: Ledger) -> Iterator[Local]:
    server = start_wlm(LIGHT, "local", wait=False)
    models = Path(server.env["WLM_MODELS_DIR"])
    write_tiny_gguf(models / "tiny.gguf", seed=1)
    noise = np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    (models / "corrupt.gguf").write_bytes(b"GGUF" + noise)
    write_unloadable_gguf(models / "refused.gguf")
    world = Local(server.start(), ledger)
    yield world
    world.close()
    assert server.stop() == 0
    assert not leftover_engines(models), "an engine outlived wlm"


@pytest.fixture(scope="module")
def hanging(start_wlm: StartWlm, ledger: Ledger) -> Iterator[Local]:
    """A wlm whose llama-server never becomes healthy (it records its pid, then sleeps)."""
    server = start_wlm(
        {**LIGHT, "WLM_LOCAL_LOAD_TIMEOUT_S": str(LOAD_TIMEOUT_S)}, "hanging", wait=False
    )
    write_tiny_gguf(server.workdir / "models" / "stuck.gguf", seed=2)
    script = server.workdir / "llama-server"
    script.write_text(
        f'#!/bin/sh\necho $$ >> "{server.workdir}/engine.pids"\n'
        'echo "pretending to load"\nexec sleep 600\n'
    )
    script.chmod(0o755)
    server.env["WLM_LLAMA_SERVER"] = str(script)
    world = Local(server.start(), ledger)
    yield world
    world.close()
    assert server.stop() == 0


def test_engine_killed_mid_stream_ends_the_stream_with_an_error(local: Local) -> None:
    """kill -9 of the engine during a long stream (max_tokens far beyond what is read).
    Client: 200, the chunks so far, then an error event and the end (no [DONE]).
    Telemetry: error, http_status 200, error_type set.
    Left: the engine is gone, its instance says why, the next request starts a new one."""
    assert local.admin.post("/api/models/tiny/load").status_code == 200
    request_id = new_request_id()
    body = chat("tiny", stream=True, max_tokens=100_000)
    killed = None
    text: list[str] = []
    chunks = 0
    with local.http.stream(
        "POST", "/v1/chat/completions", json=body, headers={"x-request-id": request_id}
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            text.append(line)
            chunks += line.startswith("data: {")
            if killed is None and chunks == 3:
                killed = local.instance("tiny")["pid"]
                os.kill(killed, signal.SIGKILL)

    assert killed is not None, "the stream ended before the engine could be killed"
    events = data_events("\n".join(text))
    assert "[DONE]" not in events
    assert set(events[-1]) == {"error"} and error_of_event(events[-1])
    assert sum(1 for e in events if isinstance(e, dict) and e.get("choices")) >= 3
    assert not all_gone({killed}, timeout=5), "the killed engine is still there"
    row = telemetry_row(local.admin, request_id)
    assert (row["status"], row["http_status"]) == ("error", 200)
    assert row["error_type"]
    info = local.instance("tiny")
    assert info["pid"] is None and "SIGKILL" in (info["last_error"] or "")

    again = local.http.post("/v1/chat/completions", json=chat("tiny", max_tokens=4))

    assert again.status_code == 200
    assert local.instance("tiny")["pid"] not in (None, killed)


def error_of_event(event: dict) -> dict:
    error = event["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ("corrupt", "cannot be loaded"),  # GGUF magic, then noise: refused before any engine
        ("refused", "failed to start"),  # well-formed GGUF that llama.cpp rejects
    ],
)
def test_model_that_cannot_load_is_503_with_the_reason(
    local: Local, model: str, reason: str
) -> None:
    """Client: 503 model_unavailable naming the reason. Telemetry: error/503.
    Left: no engine for that model."""
    request_id = new_request_id()

    response = local.http.post(
        "/v1/chat/completions", json=chat(model), headers={"x-request-id": request_id}
    )

    assert response.status_code == 503
    error = error_of(response)
    assert error["code"] == "model_unavailable" and reason in error["message"]
    row = telemetry_row(local.admin, request_id)
    assert (row["status"], row["http_status"], row["error_code"]) == (
        "error",
        503,
        "model_unavailable",
    )
    instances = local.admin.get("/api/instances").json()["data"]
    assert all(i["pid"] is None for i in instances if i["model_id"] == model)
    assert not [
        p for p in leftover_engines(local.models) if f"{model}.gguf" in " ".join(p.cmdline())
    ]


def test_engine_that_never_gets_healthy_is_503_and_killed(hanging: Local) -> None:
    """WLM_LOCAL_LOAD_TIMEOUT_S=2 and an engine that never answers /health.
    Client: 503 after about 2 s, with the engine's last words. Telemetry: error/503.
    Left: the engine process is killed (no orphan), the instance is 'failed'."""
    request_id = new_request_id()
    started = time.monotonic()

    response = hanging.http.post(
        "/v1/chat/completions", json=chat("stuck"), headers={"x-request-id": request_id}
    )

    elapsed = time.monotonic() - started
    assert response.status_code == 503
    error = error_of(response)
    assert error["code"] == "model_unavailable"
    assert "not ready after" in error["message"] and "pretending to load" in error["message"]
    assert LOAD_TIMEOUT_S * 0.9 <= elapsed < LOAD_TIMEOUT_S + 5
    pids = {int(p) for p in (hanging.server.workdir / "engine.pids").read_text().split()}
    assert pids and not all_gone(pids, timeout=5), "the hanging engine was left running"
    assert hanging.instance("stuck")["state"] == "failed"
    row = telemetry_row(hanging.admin, request_id)
    assert (row["status"], row["http_status"], row["error_code"]) == (
        "error",
        503,
        "model_unavailable",
    )
    assert hanging.http.get("/health").status_code == 200
