"""Cache-aware slots (issue 13): prompt processing of later turns with wlm's slot
affinity and without, in one run.

    .venv/bin/python benchmarks/slot_affinity.py [--conversations 3] [--slots N] [--turns 6]

Writes the tiny GGUF model (wlm.local.testmodel, trained context 16384) and starts
`wlm serve` four times on it, one engine with as many slots as conversations (or
``--slots``; ``WLM_LOCAL_PARALLEL``) and one thread each time:

    engine picks   llama.cpp's defaults: its own slot choice by prompt similarity
                   (``--slot-prompt-similarity 0.1``) and its host-memory prompt
                   cache (``--cache-ram 8192``)
    engine LRU     both off: the engine takes its least recently used slot, as a
                   llama-server without them does (an older build, or a model whose
                   prompts do not fit the cache)

each with ``WLM_LOCAL_SLOT_AFFINITY=1`` and ``=0``. Each server gets the same
conversations (a long first message each, thousands of tokens) in the same shuffled,
interleaved order of turns, one request at a time, greedy replies of 4 tokens. For
every turn after the first it reads llama.cpp's ``timings`` (``prompt_n`` tokens
computed, ``prompt_ms``, ``cache_n`` reused) and prints the totals and the ratio
without/with affinity.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]

from wlm.local.testmodel import write_tiny_gguf  # noqa: E402

WORDS = ["alpha", "beta", "gamma", "delta", "house", "river", "stone", "light", "water", "tree"]
ENGINES = {
    "engine picks": [],
    "engine LRU": ["--slot-prompt-similarity", "0", "--cache-ram", "0"],
}


def text(seed: int, words: int) -> str:
    return " ".join(WORDS[(seed * 7 + i * (seed + 1)) % len(WORDS)] for i in range(words))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve(workdir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    full = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(HERE.parent),
        "HOME": str(workdir),
        "WLM_DATA_DIR": str(workdir / "data"),
        "WLM_PORT": str(port),
        **env,
    }
    log = (workdir / f"wlm-{port}.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "wlm.cli", "serve"],
        cwd=workdir,
        env=full,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"wlm exited early; see {log.name}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.05)  # polling for readiness
    raise SystemExit("wlm did not become healthy")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def run(url: str, order: list[int], conversations: int, words: int) -> dict[str, float]:
    """Send the turns in ``order``; totals over every turn after each one's first."""
    chats: list[list[dict[str, Any]]] = [
        [{"role": "user", "content": text(k + 1, words)}] for k in range(conversations)
    ]
    totals = {"turns": 0.0, "prompt_n": 0.0, "prompt_ms": 0.0, "cache_n": 0.0, "first_ms": 0.0}
    with httpx.Client(base_url=url, timeout=600) as http:
        for step, k in enumerate(order):
            chat = chats[k]
            first = len(chat) == 1
            response = http.post(
                "/v1/chat/completions",
                json={"model": "tiny", "messages": chat, "max_tokens": 4, "temperature": 0},
            )
            response.raise_for_status()
            body = response.json()
            timings = body["timings"]
            chat.append(body["choices"][0]["message"])
            chat.append({"role": "user", "content": f"turn {step}: " + text(step, 40)})
            if first:
                totals["first_ms"] += timings["prompt_ms"]
                continue
            totals["turns"] += 1
            for field in ("prompt_n", "prompt_ms", "cache_n"):
                totals[field] += timings[field]
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=3)
    parser.add_argument("--slots", type=int, help="the engine's slots (default: one each)")
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--words", type=int, default=1800, help="first message's length")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    slots = args.slots or args.conversations
    order = [k for k in range(args.conversations) for _ in range(args.turns)]
    random.Random(args.seed).shuffle(order)
    results: dict[tuple[str, str], dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="wlm-slots-") as tmp:
        root = Path(tmp)
        write_tiny_gguf(root / "models" / "tiny.gguf", context_length=16384)
        for engine, extra in ENGINES.items():
            options = root / f"{engine.replace(' ', '-')}.toml"
            options.write_text(f"[defaults]\nextra_args = {extra!r}\n".replace("'", '"'))
            for affinity in ("1", "0"):
                workdir = root / f"{engine.replace(' ', '-')}-{affinity}"
                workdir.mkdir()
                env = {
                    "WLM_MODELS_DIR": str(root / "models"),
                    "WLM_LOCAL_THREADS": "1",
                    "WLM_LOCAL_PARALLEL": str(slots),
                    "WLM_LOCAL_CTX_SIZE": str(8192 * slots),
                    "WLM_LOCAL_OPTIONS": str(options),
                    "WLM_LOCAL_SLOT_AFFINITY": affinity,
                }
                process, url = serve(workdir, env)
                try:
                    results[engine, affinity] = run(url, order, args.conversations, args.words)
                finally:
                    stop(process)
    print(
        f"{args.conversations} conversations on {slots} slots, "
        f"{args.turns} turns each, interleaved: {''.join('abcdefgh'[k] for k in order)}"
    )
    print(
        f"{'engine':<14}{'affinity':>9}{'turns':>7}{'prompt_n/turn':>15}"
        f"{'prompt_ms/turn':>16}{'cache_n/turn':>14}"
    )
    for (engine, affinity), r in results.items():
        n = r["turns"] or 1
        print(
            f"{engine:<14}{'on' if affinity == '1' else 'off':>9}{int(r['turns']):>7}"
            f"{r['prompt_n'] / n:>15.0f}{r['prompt_ms'] / n:>16.1f}{r['cache_n'] / n:>14.0f}"
        )
    for engine in ENGINES:
        on, off = results[engine, "1"], results[engine, "0"]
        ratio = off["prompt_ms"] / on["prompt_ms"] if on["prompt_ms"] else float("inf")
        print(f"{engine}: prompt processing of later turns, without/with affinity: {ratio:.1f}x")


if __name__ == "__main__":
    main()
