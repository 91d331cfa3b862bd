"""Cache-aware slots through a real `wlm serve` and a real two-slot engine (the tiny
GGUF model): two interleaved conversations each go back to the slot that holds their
prompt, so a later turn computes only its new tokens (llama.cpp's ``timings``).

The engine runs with llama.cpp's own slot choice off (``--slot-prompt-similarity 0``,
no host-memory prompt cache): it then picks its least recently used slot, which the
order below makes the wrong one for the second conversation's second turn. With
``WLM_LOCAL_SLOT_AFFINITY=0`` the test shows that turn recomputing its whole prompt.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import WlmServer
from wlm.local.testmodel import write_tiny_gguf

pytestmark = [pytest.mark.e2e, pytest.mark.local]

WORDS = ["alpha", "beta", "gamma", "delta", "house", "river", "stone", "light", "water", "tree"]


def text(seed: int, words: int) -> str:
    return " ".join(WORDS[(seed * 7 + i * (seed + 1)) % len(WORDS)] for i in range(words))


@pytest.fixture(params=["1", "0"], ids=["affinity", "no-affinity"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WlmServer]:
    write_tiny_gguf(tmp_path / "models" / "tiny.gguf", context_length=8192)
    options = tmp_path / "engines.toml"
    options.write_text(
        '[defaults]\nextra_args = ["--slot-prompt-similarity", "0", "--cache-ram", "0"]\n'
    )
    env = {
        "WLM_LOCAL_THREADS": "1",
        "WLM_LOCAL_CTX_SIZE": "16384",  # 8192 tokens a slot
        "WLM_LOCAL_PARALLEL": "2",
        "WLM_LOCAL_OPTIONS": str(options),
        "WLM_LOCAL_SLOT_AFFINITY": request.param,
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    server = WlmServer(env, tmp_path).start()
    yield server
    server.stop()


def ask(http: httpx.Client, messages: list[dict[str, str]]) -> dict[str, Any]:
    response = http.post(
        "/v1/chat/completions", json={"model": "tiny", "messages": messages, "max_tokens": 4}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    messages.append(body["choices"][0]["message"])
    timings: dict[str, Any] = body["timings"]
    return timings


def test_each_conversation_returns_to_its_slot(server: WlmServer) -> None:
    a = [{"role": "user", "content": text(1, 1500)}]
    b = [{"role": "user", "content": text(2, 1500)}]
    affinity = server.env["WLM_LOCAL_SLOT_AFFINITY"] == "1"
    with httpx.Client(base_url=server.base_url, timeout=120) as http:
        first_a = ask(http, a)
        first_b = ask(http, b)
        assert first_a["prompt_n"] > 2500 and first_b["prompt_n"] > 2500  # a long prompt each
        # b's second turn first: the least recently used slot is a's
        b.append({"role": "user", "content": "and then?"})
        second_b = ask(http, b)
        a.append({"role": "user", "content": "and then?"})
        second_a = ask(http, a)
        if not affinity:  # the engine's own pick: b lands on a's slot and starts over
            assert second_b["prompt_n"] > first_b["prompt_n"]
            return
        for first, second in ((first_a, second_a), (first_b, second_b)):
            assert second["cache_n"] >= first["prompt_n"]  # its earlier prompt, from the cache
            assert second["prompt_n"] < 100  # only the new turn computed
        # and the third turns, in the other order, still each on its own slot
        for conversation, second in ((a, second_a), (b, second_b)):
            conversation.append({"role": "user", "content": "go on"})
            third = ask(http, conversation)
            assert third["cache_n"] >= second["cache_n"] + second["prompt_n"]
            assert third["prompt_n"] < 100
