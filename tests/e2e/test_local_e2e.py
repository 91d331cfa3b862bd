"""Local llama.cpp models through a real `wlm serve`: the official SDK, swaps, crashes, shutdown.

Every engine serves the tiny random-weight model (wlm.local.testmodel): replies are
gibberish and always run to ``max_tokens``, so the tests assert shapes, usage and
lifecycle, never text. Most tests share one server (``WLM_MAX_LOADED_MODELS=1``, so
using another model swaps engines); the ones that kill or stop wlm get their own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import psutil
import pytest

from tests.conftest import ROOT, WlmServer, all_gone
from tests.e2e.telemetry_helpers import sql_file, telemetry_file
from tests.integration.local.localhelpers import write_unloadable_gguf
from wlm.local.testmodel import write_tiny_gguf

pytestmark = [pytest.mark.e2e, pytest.mark.local]

# Light engines (shared/LOCAL_ENGINE.md: one thread keeps a busy 2-core machine responsive).
LIGHT = {"WLM_LOCAL_THREADS": "1", "WLM_LOCAL_CTX_SIZE": "512", "WLM_LOCAL_PARALLEL": "2"}
HI = [{"role": "user", "content": "hi"}]
StartServer = Callable[..., WlmServer]


# -- helpers -------------------------------------------------------------------------------


def sdk(server: WlmServer) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=30
    )


def instances(http: httpx.Client) -> dict[str, dict[str, Any]]:
    """``GET /api/instances`` keyed by model id."""
    response = http.get("/api/instances")
    assert response.status_code == 200, response.text
    return {i["model_id"]: i for i in response.json()["data"]}


def engine_log(http: httpx.Client, model_id: str) -> list[str]:
    response = http.get(f"/api/instances/{model_id}/logs")
    assert response.status_code == 200, response.text
    return response.json()["lines"]


def sse_lines(response: httpx.Response) -> Iterator[str]:
    """The non-blank lines of an SSE body as they arrive."""
    for line in response.iter_lines():
        if line:
            yield line


def data_events(lines: list[str]) -> list[str]:
    return [line.removeprefix("data:").strip() for line in lines if line.startswith("data:")]


def reaped(pid: int, timeout: float = 10.0) -> bool:
    """Wait until ``pid`` is gone from the process table (exited and reaped by wlm)."""
    deadline = time.monotonic() + timeout
    while psutil.pid_exists(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)  # polling the process table, not synchronising the test
    return True


def running(pid: int) -> bool:
    return bool(all_gone({pid}, timeout=0))


def write_models(models: Path) -> None:
    """tiny-a, sub/tiny-b, cold (never used before its own test), emb (embeddings on),
    and three broken files: GGUF magic then noise, a cut-off tiny model, and a
    well-formed GGUF llama.cpp refuses."""
    write_tiny_gguf(models / "tiny-a.gguf", seed=1)
    write_tiny_gguf(models / "sub" / "tiny-b.gguf", seed=2)
    write_tiny_gguf(models / "cold.gguf", seed=3)
    write_tiny_gguf(models / "emb.gguf", seed=4)
    noise = np.random.default_rng(5).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    (models / "noise.gguf").write_bytes(b"GGUF" + noise)
    whole = write_tiny_gguf(models.parent / "whole.gguf", seed=6).read_bytes()
    (models / "cut.gguf").write_bytes(whole[: len(whole) // 2])
    write_unloadable_gguf(models / "bad-arch.gguf")


class World:
    def __init__(self, server: WlmServer) -> None:
        self.server = server
        self.client = sdk(server)
        self.http = httpx.Client(base_url=server.base_url, timeout=30)

    def load(self, model_id: str) -> dict[str, Any]:
        response = self.http.post(f"/api/models/{model_id}/load")
        assert response.status_code == 200, response.text
        return response.json()

    def unload(self, model_id: str) -> dict[str, Any]:
        response = self.http.post(f"/api/models/{model_id}/unload")
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("wlm-local")
    write_models(workdir / "models")
    options = workdir / "local-models.toml"
    options.write_text('[models."emb"]\nembeddings = true\npooling = "mean"\n')
    env = {**LIGHT, "WLM_MAX_LOADED_MODELS": "1", "WLM_LOCAL_OPTIONS": str(options)}
    server = WlmServer(env, workdir).start()
    world = World(server)
    yield world
    world.http.close()
    server.stop()


@pytest.fixture
def start_server(wlm_factory: StartServer, tmp_path: Path) -> StartServer:
    """A dedicated server over tiny-a and sub/tiny-b (for tests that stop or kill it)."""

    def start(**env: str) -> WlmServer:
        models = tmp_path / "models"
        write_tiny_gguf(models / "tiny-a.gguf", seed=1)
        write_tiny_gguf(models / "sub" / "tiny-b.gguf", seed=2)
        return wlm_factory({**LIGHT, **env})

    return start


# -- requests ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["tiny-a", "local/tiny-a", "sub/tiny-b"])
def test_chat_non_stream_has_usage_and_respects_max_tokens(world: World, model: str) -> None:
    reply = world.client.chat.completions.create(model=model, messages=HI, max_tokens=7)

    assert reply.model == model  # the name asked for, not the engine's alias
    assert reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 0
    assert reply.usage.completion_tokens == 7
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 7


def test_chat_stream_ends_with_done_after_a_usage_chunk(world: World) -> None:
    body = {
        "model": "sub/tiny-b",
        "messages": HI,
        "max_tokens": 6,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with world.http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = data_events(list(sse_lines(response)))

    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    *deltas, usage_chunk = chunks
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["prompt_tokens"] > 0
    assert usage_chunk["usage"]["completion_tokens"] == 6
    assert {c["model"] for c in chunks} == {"sub/tiny-b"}
    assert deltas[-1]["choices"][0]["finish_reason"] == "length"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in deltas)
    assert text


def test_sdk_stream_without_include_usage_gets_no_usage_chunk(world: World) -> None:
    plain = list(
        world.client.chat.completions.create(
            model="local/tiny-a", messages=HI, max_tokens=5, stream=True
        )
    )
    with_usage = list(
        world.client.chat.completions.create(
            model="local/tiny-a",
            messages=HI,
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert all(chunk.choices for chunk in plain)
    assert plain[-1].choices[0].finish_reason == "length"
    assert with_usage[-1].choices == []
    assert with_usage[-1].usage is not None
    assert with_usage[-1].usage.completion_tokens == 5
    assert {c.model for c in plain + with_usage} == {"local/tiny-a"}


def test_completions_non_stream_and_stream(world: World) -> None:
    reply = world.client.completions.create(model="tiny-a", prompt="the model", max_tokens=9)
    chunks = list(
        world.client.completions.create(
            model="sub/tiny-b",
            prompt="the model",
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert reply.model == "tiny-a"
    assert reply.choices[0].text
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 0
    assert reply.usage.completion_tokens == 9
    assert "".join(c.choices[0].text for c in chunks if c.choices)
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


def test_embeddings_from_an_engine_started_with_embeddings_on(world: World) -> None:
    result = world.client.embeddings.create(model="emb", input=["the model", "a local gateway"])

    assert [e.index for e in result.data] == [0, 1]
    assert [len(e.embedding) for e in result.data] == [64, 64]  # the tiny model's width
    assert result.data[0].embedding != result.data[1].embedding
    assert result.usage.prompt_tokens > 0
    [command] = [line for line in engine_log(world.http, "emb") if "wlm: starting" in line]
    assert "--embeddings --pooling mean" in command  # from WLM_LOCAL_OPTIONS


def test_embeddings_on_a_chat_engine_say_embeddings_are_off(world: World) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        world.client.embeddings.create(model="tiny-a", input="the model")

    assert caught.value.status_code == 501  # the engine's own status
    assert "does not support embeddings" in caught.value.message
    # ... with wlm's remedy rather than llama.cpp's command-line flag.
    assert "embeddings = true" in caught.value.message
    assert "WLM_LOCAL_OPTIONS" in caught.value.message


def test_cold_stream_gets_headers_and_completes(world: World) -> None:
    world.unload("tiny-a")
    assert instances(world.http)["tiny-a"]["state"] == "stopped"
    body = {"model": "tiny-a", "messages": HI, "max_tokens": 3, "stream": True}

    with world.http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = list(sse_lines(response))

    events = data_events(lines)
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["choices"][0]["finish_reason"] == "length"
    assert instances(world.http)["tiny-a"]["state"] == "ready"


# -- swapping ------------------------------------------------------------------------------


def test_alternating_requests_swap_the_one_loaded_engine(world: World) -> None:
    seen = []
    for model in ["tiny-a", "sub/tiny-b", "tiny-a"]:
        world.client.chat.completions.create(model=model, messages=HI, max_tokens=2)
        now = instances(world.http)
        ready = {m for m, i in now.items() if i["state"] == "ready"}
        assert ready == {model}
        assert all(i["pid"] is None for m, i in now.items() if m != model)
        seen.append(now[model]["pid"])

    assert len(set(seen)) == 3  # tiny-a came back in a new engine
    assert not running(seen[0]) and not running(seen[1])
    log = engine_log(world.http, "tiny-a")
    assert "wlm: stopping (evicted to make room for sub/tiny-b)" in log


def test_a_long_stream_is_not_cut_when_another_model_is_requested(world: World) -> None:
    world.load("tiny-a")
    body = {
        "model": "tiny-a",
        "messages": HI,
        "max_tokens": 200,
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    def request_b() -> tuple[Any, float]:
        reply = world.client.chat.completions.create(model="sub/tiny-b", messages=HI, max_tokens=3)
        return reply, time.monotonic()

    with (
        ThreadPoolExecutor(1) as pool,
        world.http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        lines = sse_lines(response)
        first = next(lines)  # tiny-a is generating
        b_done = pool.submit(request_b)
        rest = list(lines)
        a_done_at = time.monotonic()
    b_reply, b_done_at = b_done.result(30)

    events = data_events([first, *rest])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[-1]["usage"]["completion_tokens"] == 200
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")) > 0
    assert b_reply.usage.completion_tokens == 3
    assert b_done_at > a_done_at
    # The eviction began while tiny-a's request was still running, and it finished anyway.
    log = engine_log(world.http, "tiny-a")
    stopping = log.index("wlm: stopping (evicted to make room for sub/tiny-b)")
    finished = max(i for i, line in enumerate(log) if "stop processing" in line)
    assert stopping < finished
    assert instances(world.http)["sub/tiny-b"]["state"] == "ready"


async def test_ten_concurrent_first_requests_start_one_engine(world: World) -> None:
    assert "cold" not in instances(world.http)
    async with openai.AsyncOpenAI(
        base_url=f"{world.server.base_url}/v1", api_key="unused", max_retries=0, timeout=30
    ) as client:
        replies = await asyncio.gather(
            *(
                client.chat.completions.create(model="cold", messages=HI, max_tokens=2)
                for _ in range(10)
            )
        )

    assert [r.usage.completion_tokens for r in replies if r.usage] == [2] * 10
    info = instances(world.http)["cold"]
    assert info["state"] == "ready"
    assert info["restarts"] == 0
    log = engine_log(world.http, "cold")
    assert sum(line.startswith("wlm: starting") for line in log) == 1
    assert sum("listening on" in line for line in log) == 1


# -- failures ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ("noise", "unsupported gguf version"),
        ("cut", "truncated file"),
        ("bad-arch", "key not found in model: llama.attention.layer_norm_rms_epsilon"),
    ],
)
def test_a_broken_model_gets_503_with_the_reason(world: World, model: str, reason: str) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        world.client.chat.completions.create(model=model, messages=HI, max_tokens=2)

    assert caught.value.status_code == 503
    body = caught.value.body
    assert isinstance(body, dict)
    assert model in body["message"]
    assert reason in body["message"].lower()


def test_a_killed_engine_is_restarted_by_the_next_request(world: World) -> None:
    world.load("tiny-a")
    pid = instances(world.http)["tiny-a"]["pid"]
    os.kill(pid, signal.SIGKILL)
    assert reaped(pid)

    reply = world.client.chat.completions.create(model="tiny-a", messages=HI, max_tokens=2)

    assert reply.usage is not None and reply.usage.completion_tokens == 2
    info = instances(world.http)["tiny-a"]
    assert info["state"] == "ready"
    assert info["pid"] not in (None, pid)
    assert info["restarts"] >= 1
    assert info["last_error"] is None
    assert "wlm: engine killed by SIGKILL unexpectedly" in engine_log(world.http, "tiny-a")


def test_a_request_right_after_an_engine_crash_is_not_lost(world: World) -> None:
    # A request that reaches wlm while a killed engine is still dying used to go to the
    # dead port and get a 502 (about half the tries); the proxy now notices the crash
    # and retries once on a restarted engine, so all five tries must succeed.
    statuses = []
    for _ in range(5):
        world.load("tiny-a")
        pid = instances(world.http)["tiny-a"]["pid"]
        os.kill(pid, signal.SIGKILL)
        response = world.http.post(
            "/v1/chat/completions", json={"model": "tiny-a", "messages": HI, "max_tokens": 2}
        )
        statuses.append((response.status_code, response.json().get("error")))
        assert reaped(pid)  # wlm saw this crash before the next round

    assert statuses == [(200, None)] * 5


# -- management ----------------------------------------------------------------------------


def test_explicit_load_and_unload(world: World) -> None:
    assert world.load("local/sub/tiny-b") == {"id": "sub/tiny-b", "state": "ready"}
    pid = instances(world.http)["sub/tiny-b"]["pid"]
    assert running(pid)
    listed = {m["id"]: m for m in world.client.models.list().model_dump()["data"]}
    assert listed["sub/tiny-b"]["state"] == "ready"

    assert world.unload("sub/tiny-b") == {"id": "sub/tiny-b", "state": "stopped"}
    assert instances(world.http)["sub/tiny-b"]["state"] == "stopped"
    assert not all_gone({pid})
    listed = {m["id"]: m for m in world.client.models.list().model_dump()["data"]}
    assert listed["sub/tiny-b"]["state"] == "stopped"


def test_engine_logs_stream_live_over_sse(world: World) -> None:
    world.load("emb")
    with world.http.stream("GET", "/api/instances/emb/logs/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = sse_lines(response)
        assert next(lines) == "event: log"
        start = next(line for line in lines if line.startswith("data: wlm: starting "))

    assert start.startswith("data: wlm: starting embedded: ")
    assert "--alias emb" in start


def test_loading_an_unknown_model_is_404(world: World) -> None:
    response = world.http.post("/api/models/no-such-model/load")
    assert response.status_code == 404
    assert "no-such-model" in response.json()["error"]["message"]


def test_v1_models_and_the_cli_list_local_models_with_state(world: World) -> None:
    failed = world.http.post("/api/models/bad-arch/load")
    world.load("tiny-a")
    expected = {
        "tiny-a": "ready",
        "sub/tiny-b": "stopped",
        "cold": "stopped",
        "emb": "stopped",
        "bad-arch": "failed",  # its header reads fine; the engine refused it
    }

    listed = world.http.get("/v1/models").json()["data"]
    cli = subprocess.run(
        [sys.executable, "-m", "wlm.cli", "models", "--format", "json"],
        cwd=world.server.workdir,
        env=world.server.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    from_cli = json.loads(cli.stdout)

    for models in (listed, from_cli):
        local = {m["id"]: m for m in models if m["provider"] == "local"}
        # Files whose header cannot be read (noise, cut) are not listed.
        assert {m: e["state"] for m, e in local.items()} == expected
        assert {e["owned_by"] for e in local.values()} == {"local"}
    assert failed.status_code == 503
    assert "key not found in model" in failed.json()["error"]["message"]
    broken = {m["id"]: m for m in world.http.get("/api/models").json()["local"]}
    assert "truncated" in broken["cut"]["broken_reason"]
    assert broken["tiny-a"]["broken_reason"] is None
    assert broken["tiny-a"]["architecture"] == "llama"


# -- a slow engine -------------------------------------------------------------------------


def test_a_slow_load_sends_loading_comments_before_the_first_event(
    start_server: StartServer, tmp_path: Path
) -> None:
    # A stand-in llama-server that takes 3 s to start, then runs the embedded engine
    # (which accepts llama-server's flags and serves on the port it is given).
    stand_in = tmp_path / "slow-llama-server"
    stand_in.write_text(
        "#!/bin/sh\nsleep 3\n"
        f'PYTHONPATH="{ROOT}" exec "{sys.executable}" -m wlm.local.launcher "$@"\n'
    )
    stand_in.chmod(0o755)
    server = start_server(WLM_LLAMA_SERVER=str(stand_in))
    body = {"model": "tiny-a", "messages": HI, "max_tokens": 3, "stream": True}

    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        started = time.monotonic()
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            headers_after = time.monotonic() - started
            assert response.status_code == 200
            lines = list(sse_lines(response))
        engines = instances(http)

    assert headers_after < 3  # the headers did not wait for the engine
    assert lines[0] == ": loading tiny-a ..."
    first_data = next(i for i, line in enumerate(lines) if line.startswith("data:"))
    assert all(line.startswith(":") for line in lines[:first_data])
    assert data_events(lines)[-1] == "[DONE]"
    assert engines["tiny-a"]["engine"] == "llama-server"


# -- wlm's own end -------------------------------------------------------------------------


def _engines_up(server: WlmServer) -> tuple[set[int], set[int]]:
    """Start both models' engines; (engine pids, every descendant pid of wlm)."""
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        for model in ("tiny-a", "sub/tiny-b"):
            assert http.post(f"/api/models/{model}/load").status_code == 200
        engines = {i["pid"] for i in instances(http).values()}
    assert None not in engines and len(engines) == 2
    assert server.process is not None
    descendants = {p.pid for p in psutil.Process(server.process.pid).children(recursive=True)}
    assert engines <= descendants
    return engines, descendants


def test_sigkill_of_wlm_takes_its_engines_down(start_server: StartServer) -> None:
    server = start_server(WLM_MAX_LOADED_MODELS="2")
    engines, descendants = _engines_up(server)
    assert server.process is not None

    server.process.kill()  # the main pid only: engines run in sessions of their own
    server.process.wait(10)

    assert all_gone(engines) == set()
    assert all_gone(descendants) == set()


def test_sigkill_of_wlm_mid_stream_takes_engine_and_worker_down_at_once(
    start_server: StartServer,
) -> None:
    """SIGKILL of `wlm serve` while a local engine streams a long reply.

    The worker must not start a graceful stop that waits for the open stream (it did,
    for ~24 s): the engine and the worker are gone within seconds, the client's stream
    ends without [DONE], and a request finished before the kill is in the telemetry file.
    """
    server = start_server(WLM_LOCAL_CTX_SIZE="4096", WLM_LOCAL_PARALLEL="1")
    assert server.process is not None
    body = {"model": "tiny-a", "messages": HI, "max_tokens": 100_000, "stream": True}
    lines: list[str] = []
    cut = False
    killed_at: float | None = None
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        finished = http.post(
            "/v1/chat/completions", json={"model": "tiny-a", "messages": HI, "max_tokens": 2}
        )
        assert finished.status_code == 200
        engine = instances(http)["tiny-a"]["pid"]
        wlm = psutil.Process(server.process.pid)
        workers = {p.pid for p in wlm.children()}
        everything = {p.pid for p in wlm.children(recursive=True)}
        assert engine in everything and engine not in workers and workers
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            try:
                for line in sse_lines(response):
                    lines.append(line)
                    if len(data_events(lines)) == 3:
                        server.process.kill()  # the main pid only, as the OOM killer would
                        killed_at = time.monotonic()
            except httpx.TransportError:
                cut = True  # the worker went before it could end the stream

    assert killed_at is not None, "the stream ended before wlm could be killed"
    left = all_gone(everything, timeout=10)
    gone_after = time.monotonic() - killed_at
    server.process.wait(5)

    assert left == set(), f"still running {gone_after:.1f} s after the kill: {left}"
    assert gone_after < 5, f"the engine and worker took {gone_after:.1f} s to go"
    events = data_events(lines)
    assert len(events) >= 3 and "[DONE]" not in events
    assert cut or '"error"' in events[-1]
    assert "the wlm main process is gone: killed 1 engine process group(s)" in server.log()
    # The finished request's row was written (the cut stream's is an error, if any).
    rows = sql_file(telemetry_file(server), "SELECT status, completion_tokens FROM requests")
    assert [r for r in rows if r["status"] == "ok"] == [{"status": "ok", "completion_tokens": 2}]


def test_sigterm_stops_the_engines_and_wlm_exits_zero(start_server: StartServer) -> None:
    server = start_server(WLM_MAX_LOADED_MODELS="2")
    engines, _ = _engines_up(server)
    assert server.process is not None

    server.process.send_signal(signal.SIGTERM)

    assert server.process.wait(20) == 0
    assert all_gone(engines, timeout=0) == set()  # stopped before wlm exited
    assert "local model tiny-a stopped (shutdown)" in server.log()
