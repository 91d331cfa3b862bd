"""The supervisor against the real embedded engine (xllamacpp) and the tiny model."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.integration.local.localhelpers import MakeManager, engine_pids, gone
from wlm.errors import ModelNotFound, ModelUnavailable

pytestmark = pytest.mark.local

CHAT = {"messages": [{"role": "user", "content": "hello world"}], "max_tokens": 8}


async def chat(base_url: str, **extra: object) -> dict:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{base_url}/v1/chat/completions", json={**CHAT, **extra})
    assert response.status_code == 200, response.text
    return response.json()


async def test_first_use_starts_the_engine_and_it_answers(
    make_manager: MakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-for-engines-0123456789")
    monkeypatch.setenv("WLM_ADMIN_KEY", "admin-not-for-engines-0123456789")
    manager = await make_manager()
    assert not manager.is_ready("tiny-a")

    async with manager.use("tiny-a") as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        assert manager.is_ready("tiny-a")
        body = await chat(base_url)

    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 8
    assert body["timings"]["predicted_n"] == 8
    [info] = manager.instances()
    assert (info.model_id, info.state, info.engine, info.in_flight) == (
        "tiny-a",
        "ready",
        "embedded",
        0,
    )
    assert info.pid in engine_pids()
    environ = await asyncio.to_thread(Path(f"/proc/{info.pid}/environ").read_bytes)
    assert b"not-for-engines" not in environ  # the engine is given no key
    assert info.port == int(base_url.rsplit(":", 1)[1])
    assert info.rss_bytes
    assert info.rss_bytes > 1_000_000
    assert info.uptime_s is not None
    assert info.uptime_s >= 0
    assert [m.state for m in manager.list_models() if m.id == "tiny-a"] == ["ready"]


async def test_split_model_loads_from_its_first_part(make_manager: MakeManager) -> None:
    manager = await make_manager()

    async with manager.use("big/tiny-split") as base_url:
        body = await chat(base_url)

    assert body["usage"]["completion_tokens"] == 8


async def test_ten_concurrent_cold_requests_start_one_engine(make_manager: MakeManager) -> None:
    manager = await make_manager()
    before = engine_pids()

    async def one() -> tuple[str, set[int]]:
        async with manager.use("tiny-a") as base_url:
            return base_url, engine_pids() - before

    results = await asyncio.gather(*(one() for _ in range(10)))

    assert len({url for url, _ in results}) == 1
    assert all(len(pids) == 1 for _, pids in results)
    assert sum("wlm: starting" in line for line in manager.logs("tiny-a")) == 1


async def test_swap_waits_for_the_running_stream_then_evicts(make_manager: MakeManager) -> None:
    manager = await make_manager(max_loaded_models=1)
    b_entered = asyncio.Event()

    async def use_b() -> dict:
        async with manager.use("sub/tiny-b") as base_url:
            b_entered.set()
            return await chat(base_url)

    async with manager.use("tiny-a") as url_a:
        pid_a = manager.instances()[0].pid
        request = {
            **CHAT,
            "max_tokens": 64,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        events: list[str] = []
        async with (
            httpx.AsyncClient(timeout=30) as client,
            client.stream("POST", f"{url_a}/v1/chat/completions", json=request) as response,
        ):
            lines = response.aiter_lines()
            events.append(await anext(lines))
            b_task = asyncio.create_task(use_b())
            # B's load picks A as the victim and waits for A's request to finish.
            await manager.wait_for_state("tiny-a", "stopping", timeout=10)
            events += [line async for line in lines]
        assert not b_entered.is_set()
        assert manager.is_ready("sub/tiny-b") is False

    b_body = await asyncio.wait_for(b_task, 30)

    data = [json.loads(e[6:]) for e in events if e.startswith("data: {")]
    assert events[-1] == "data: [DONE]" or events[-2] == "data: [DONE]"
    assert data[-1]["usage"]["completion_tokens"] == 64  # A's stream ran to the end
    assert b_body["usage"]["completion_tokens"] == 8
    states = {m.id: m.state for m in manager.list_models()}
    assert (states["tiny-a"], states["sub/tiny-b"]) == ("stopped", "ready")
    assert await gone(pid_a)


async def test_idle_engine_unloads_but_not_while_a_request_runs(
    make_manager: MakeManager,
) -> None:
    manager = await make_manager(idle_unload_s=0.3)

    async with manager.use("tiny-a"):
        pid = manager.instances()[0].pid
        with pytest.raises(TimeoutError):  # three idle periods pass with a request open
            await manager.wait_for_state("tiny-a", "stopping", "stopped", timeout=1.0)

    assert await manager.wait_for_state("tiny-a", "stopped", timeout=10) == "stopped"
    assert pid is not None
    assert await gone(pid)


async def test_explicit_load_and_unload(make_manager: MakeManager) -> None:
    manager = await make_manager()

    await manager.load("tiny-a")
    pid = manager.instances()[0].pid
    assert manager.is_ready("tiny-a")
    await manager.unload("tiny-a")

    assert not manager.is_ready("tiny-a")
    assert manager.instances()[0].state == "stopped"
    assert pid is not None
    assert await gone(pid)
    with pytest.raises(ModelNotFound):
        await manager.unload("no-such-model")


async def test_unload_waits_for_the_request_in_flight(make_manager: MakeManager) -> None:
    manager = await make_manager()

    async with manager.use("tiny-a") as base_url:
        unload = asyncio.create_task(manager.unload("tiny-a"))
        await manager.wait_for_state("tiny-a", "stopping", timeout=10)
        body = await chat(base_url)  # the engine still serves the request it owes
        assert not unload.done()

    await asyncio.wait_for(unload, 10)
    assert body["usage"]["completion_tokens"] == 8
    assert manager.instances()[0].state == "stopped"


async def test_engine_rejecting_the_file_gives_its_reason(make_manager: MakeManager) -> None:
    manager = await make_manager()

    with pytest.raises(ModelUnavailable) as caught:
        async with manager.use("bad-arch"):
            pass

    assert caught.value.status == 503
    assert "key not found in model: llama.attention.layer_norm_rms_epsilon" in caught.value.message
    [info] = manager.instances()
    assert info.state == "failed"
    assert info.pid is None
    assert info.last_error
    assert "key not found in model" in info.last_error
    assert engine_pids() == set()


async def test_broken_and_unknown_models(make_manager: MakeManager) -> None:
    manager = await make_manager()

    with pytest.raises(ModelUnavailable, match="not a GGUF file"):
        async with manager.use("broken"):
            pass
    with pytest.raises(ModelUnavailable, match=r"missing part\(s\) 2 of 3"):
        await manager.load("partial/half")
    with pytest.raises(ModelNotFound):
        async with manager.use("nope"):
            pass
    assert "broken" not in manager.model_ids()
    assert not manager.has_model("broken")
    assert manager.has_model("tiny-a")
    assert manager.instances() == []


async def test_killed_engine_is_noticed_and_restarted(make_manager: MakeManager) -> None:
    manager = await make_manager()
    await manager.load("tiny-a")
    [before] = manager.instances()
    assert before.pid is not None

    os.kill(before.pid, signal.SIGKILL)
    await manager.wait_for_state("tiny-a", "failed", timeout=10)
    [crashed] = manager.instances()
    assert crashed.last_error
    assert crashed.last_error == "engine killed by SIGKILL unexpectedly"

    async with manager.use("tiny-a") as base_url:
        body = await chat(base_url)

    [after] = manager.instances()
    assert after.pid not in (None, before.pid)
    assert (after.state, after.restarts, after.last_error) == ("ready", 1, None)
    assert body["usage"]["completion_tokens"] == 8


async def test_close_stops_every_engine(make_manager: MakeManager) -> None:
    manager = await make_manager(max_loaded_models=2)
    await asyncio.gather(manager.load("tiny-a"), manager.load("sub/tiny-b"))
    pids = {i.pid for i in manager.instances()}
    assert len(pids) == 2
    assert pids <= engine_pids()

    await manager.close()

    assert all([await gone(pid) for pid in pids if pid is not None])
    assert {i.state for i in manager.instances()} == {"stopped"}
    with pytest.raises(ModelUnavailable, match="shutting down"):
        await manager.load("tiny-a")


async def test_follow_logs_tails_the_engine_live(make_manager: MakeManager) -> None:
    manager = await make_manager()
    follower = manager.follow_logs("tiny-a")
    load = asyncio.create_task(manager.load("tiny-a"))

    seen = [await asyncio.wait_for(anext(follower), 10)]
    while not any("listening on" in line for line in seen):
        seen.append(await asyncio.wait_for(anext(follower), 10))
    await follower.aclose()
    await load

    assert seen[0].startswith("wlm: starting embedded:")
    assert seen == manager.logs("tiny-a")[: len(seen)]


async def test_per_model_options_reach_the_engine(
    make_manager: MakeManager, tmp_path: Path
) -> None:
    options = tmp_path / "local.toml"
    options.write_text(
        '[models."tiny-a"]\nparallel = 2\nctx_size = 1024\n\n'
        '[models."sub/*"]\nembeddings = true\npooling = "mean"\n'
    )
    manager = await make_manager(local_options_file=options, max_loaded_models=2)

    async with (
        manager.use("tiny-a") as url_a,
        manager.use("sub/tiny-b") as url_b,
        httpx.AsyncClient(timeout=30) as client,
    ):
        props = (await client.get(f"{url_a}/props")).json()
        embedding = await client.post(f"{url_b}/v1/embeddings", json={"input": "hello"})
        no_embedding = await client.post(f"{url_a}/v1/embeddings", json={"input": "hello"})

    assert props["total_slots"] == 2
    assert embedding.status_code == 200
    assert len(embedding.json()["data"][0]["embedding"]) == 64
    assert no_embedding.status_code != 200


async def test_projector_is_passed_to_the_engine(make_manager: MakeManager, tmp_path: Path) -> None:
    manager = await make_manager()
    with pytest.raises(ModelUnavailable) as caught:
        await manager.load("vision/tiny-v")
    assert "--mmproj" in "\n".join(manager.logs("vision/tiny-v"))
    assert "mmproj" in caught.value.message.lower()

    options = tmp_path / "local.toml"
    options.write_text('[models."vision/tiny-v"]\nprojector = false\n')
    without = await make_manager(local_options_file=options)
    await without.load("vision/tiny-v")
    assert without.is_ready("vision/tiny-v")


async def test_a_bounded_wait_gives_up_on_a_loading_or_busy_engine_and_the_load_goes_on(
    make_manager: MakeManager,
) -> None:
    """WLM_LOCAL_MAX_WAIT_S: a request with somewhere else to go waits that long at most."""
    manager = await make_manager()  # one parallel slot

    with pytest.raises(ModelUnavailable, match="still loading"):
        await manager.acquire("tiny-a", max_wait_s=0.001)
    await manager.wait_for_state("tiny-a", "ready", timeout=30)  # its load went on

    lease = await manager.acquire("tiny-a", max_wait_s=5)
    with pytest.raises(ModelUnavailable, match="all 1 of its slots are busy"):
        await manager.acquire("tiny-a", max_wait_s=0.05)
    waiting = asyncio.create_task(manager.acquire("tiny-a", max_wait_s=10))
    done, _ = await asyncio.wait({waiting}, timeout=0.2)
    assert not done  # the slot is busy: it waits for it, rather than queue in the engine
    lease.release()  # the slot frees: the waiting request gets it
    second = await asyncio.wait_for(waiting, 5)
    assert [i.in_flight for i in manager.instances()] == [1]
    second.release()
    assert [i.in_flight for i in manager.instances()] == [0]
