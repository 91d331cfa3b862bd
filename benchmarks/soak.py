"""Soak: mixed traffic at a modest, bounded rate for N minutes; wlm's memory over time.

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--rate 10] [--concurrency 16]
                                        [--env WLM_NAME=value ...]

Starts the fake providers (tests/fakes, in this process) and ``wlm serve`` (telemetry
on, client and admin keys set), then sends ``--rate`` requests per second (open loop,
at most ``--concurrency`` in flight) drawn from a fixed mix: whole and streamed
answers from OpenAI, OpenRouter and Anthropic, upstream error statuses, streams that
break, clients that leave mid-stream or before the first byte, unknown models and
wrong keys. Every 10 s it samples the RSS of wlm's processes. At the end it stops wlm
gracefully and prints the memory curve, its growth per hour (least squares over the
samples after the first minute), the status counts, any unexpected 5xx, and the
telemetry row count against the requests sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import duckdb
import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes import FakeUpstream  # noqa: E402

CLIENT_KEY = "soak-client-key-5e1b9c3a7d"
ADMIN_KEY = "soak-admin-key-8f2d4b6a1c"
SAMPLE_EVERY_S = 10.0

# (weight, kind, model, stream); kinds decide how the client behaves and what it expects.
MIX = [
    (20, "ok", "gpt-4o-mini", False),
    (10, "ok", "gpt-4o-mini", True),
    (8, "ok", "openrouter/openai/gpt-4o-mini", True),
    (8, "ok", "anthropic/claude-sonnet-4-5-20250929", False),
    (8, "ok", "anthropic/claude-sonnet-4-5-20250929", True),
    (3, "error", "openai/error:429", False),
    (3, "error", "openai/error:500", False),
    (2, "error", "openai/error:503", True),
    (2, "error", "anthropic/error:529", False),
    (2, "broken", "openai/reset:3", True),
    (2, "broken", "openai/midstream-error", True),
    (2, "broken", "anthropic/midstream-error", True),
    (2, "broken", "openai/malformed", True),
    (10, "leave-mid-stream", "openai/paced:50:20", True),
    (5, "leave-before-first-byte", "openai/slow-first:2000", False),
    (3, "unknown-model", "no-such-model", False),
    (3, "wrong-key", "gpt-4o-mini", False),
]
UPSTREAM_5XX = {"openai/error:500", "openai/error:503", "anthropic/error:529"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_wlm(
    workdir: Path, fakes: dict[str, FakeUpstream], extra_env: dict[str, str]
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(workdir),
        "WLM_PORT": str(port),
        "WLM_DATA_DIR": str(workdir / "data"),
        "WLM_MODELS_DIR": str(workdir / "models"),
        "WLM_API_KEYS": f"soak:{CLIENT_KEY}",
        "WLM_ADMIN_KEY": ADMIN_KEY,
        "WLM_ROUTES": "gpt-*=openai",
        "OPENAI_API_KEY": fakes["openai"].api_key or "",
        "OPENAI_BASE_URL": fakes["openai"].base_url,
        "OPENROUTER_API_KEY": fakes["openrouter"].api_key or "",
        "OPENROUTER_BASE_URL": fakes["openrouter"].base_url,
        "ANTHROPIC_API_KEY": fakes["anthropic"].api_key or "",
        "ANTHROPIC_BASE_URL": fakes["anthropic"].base_url,
        **extra_env,
    }
    log = (workdir / "wlm.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "wlm.cli", "serve"],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("wlm did not start")


def rss_mib(process: subprocess.Popen) -> float:
    """RSS of wlm's processes (the Granian main process and its worker), MiB."""
    main = psutil.Process(process.pid)
    total = 0
    for p in [main, *main.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


class Tally:
    def __init__(self) -> None:
        self.sent = Counter[str]()
        self.statuses = Counter[int]()
        self.unexpected: list[str] = []
        self.proxied = 0


async def one(client: httpx.AsyncClient, kind: str, model: str, stream: bool, tally: Tally) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "soak"}], "stream": stream}
    key = "wrong-key-000000" if kind == "wrong-key" else CLIENT_KEY
    headers = {"authorization": f"Bearer {key}"}
    tally.sent[kind] += 1
    tally.proxied += 1
    try:
        if kind == "leave-before-first-byte":
            try:
                await client.post("/v1/chat/completions", json=body, headers=headers, timeout=0.3)
            except httpx.TimeoutException:
                tally.statuses[0] += 1  # the client left; no status
            return
        async with client.stream(
            "POST", "/v1/chat/completions", json=body, headers=headers
        ) as response:
            tally.statuses[response.status_code] += 1
            seen = 0
            async for line in response.aiter_lines():
                if kind == "leave-mid-stream" and line.startswith("data: {"):
                    seen += 1
                    if seen == 2:
                        break
            if response.status_code >= 500 and model not in UPSTREAM_5XX:
                tally.unexpected.append(f"{response.status_code} for {kind} {model}")
    except httpx.HTTPError as exc:
        tally.unexpected.append(f"{type(exc).__name__} for {kind} {model}")


async def drive(base: str, minutes: float, rate: float, limit: int, tally: Tally) -> None:
    weights = [w for w, *_ in MIX]
    gate = asyncio.Semaphore(limit)
    tasks: set[asyncio.Task[None]] = set()
    rng = random.Random(7)

    async def guarded(kind: str, model: str, stream: bool) -> None:
        async with gate:
            await one(client, kind, model, stream, tally)

    limits = httpx.Limits(max_connections=limit * 2, max_keepalive_connections=limit)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < minutes * 60:
            _, kind, model, stream = rng.choices(MIX, weights)[0]
            if gate.locked():
                tally.sent["skipped-at-limit"] += 1  # open loop, bounded: never queue up
            else:
                task = asyncio.create_task(guarded(kind, model, stream))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            n += 1
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
        await asyncio.gather(*tasks)


async def sample(
    process: subprocess.Popen, samples: list[tuple[float, float]], started: float
) -> None:
    while True:
        samples.append((time.monotonic() - started, rss_mib(process)))
        await asyncio.sleep(SAMPLE_EVERY_S)


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB), in MiB per hour."""
    if len(points) < 2:
        return float("nan")
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_m = sum(m for _, m in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    cov = sum((t - mean_t) * (m - mean_m) for t, m in points)
    return cov / var * 3600 if var else float("nan")


async def soak(args: argparse.Namespace, process: subprocess.Popen, base: str) -> tuple:
    tally = Tally()
    samples: list[tuple[float, float]] = []
    started = time.monotonic()
    sampler = asyncio.create_task(sample(process, samples, started))
    try:
        await drive(base, args.minutes, args.rate, args.concurrency, tally)
    finally:
        sampler.cancel()
    samples.append((time.monotonic() - started, rss_mib(process)))  # after the last request
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        health = (await client.get("/health")).json()
    return tally, samples, health


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second")
    parser.add_argument("--concurrency", type=int, default=16, help="most requests in flight")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep wlm's directory (log, DuckDB)")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="extra setting for wlm"
    )
    args = parser.parse_args()

    fakes = {name: FakeUpstream(name).start() for name in ("openai", "openrouter", "anthropic")}
    workdir = Path(tempfile.mkdtemp(prefix="wlm-soak-"))
    extra_env = dict(item.split("=", 1) for item in args.env)
    process, base = start_wlm(workdir, fakes, extra_env)
    try:
        tally, samples, health = asyncio.run(soak(args, process, base))
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
        for fake in fakes.values():
            fake.stop()
    with duckdb.connect(str(workdir / "data" / "telemetry.duckdb"), read_only=True) as con:
        (rows,) = con.execute("SELECT count(*) FROM requests").fetchone()
    if args.keep:
        print(f"wlm's log and telemetry are in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)

    # The first minute is warm-up (pools, DuckDB's buffers); shorter runs have no trend.
    warm = [(t, m) for t, m in samples if t >= 60]
    slope = slope_per_hour(warm)
    growth = None if math.isnan(slope) else round(slope, 1)
    third = max(1, len(samples) // 3)
    first_third = statistics.median(m for _, m in samples[:third])
    last_third = statistics.median(m for _, m in samples[-third:])
    figures = {
        "minutes": args.minutes,
        "rate_per_s": args.rate,
        "requests": tally.proxied,
        "by_kind": dict(sorted(tally.sent.items())),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "unexpected": tally.unexpected,
        "telemetry_rows": rows,
        "rows_lost": tally.proxied - rows,
        "health_at_end": health,
        "exit_code": code,
        "rss_mib": [(round(t), round(m, 1)) for t, m in samples],
        "rss_growth_mib_per_hour": growth,
        "rss_median_first_third_mib": round(first_third, 1),
        "rss_median_last_third_mib": round(last_third, 1),
    }
    print(f"wlm soak: {args.minutes} min at {args.rate}/s, {tally.proxied} requests")
    print(f"statuses: {figures['statuses']}  (0 = client left before any status)")
    print(f"unexpected: {len(tally.unexpected)} {tally.unexpected[:5]}")
    print(f"telemetry rows: {rows} of {tally.proxied} (lost {figures['rows_lost']})")
    print(f"health at end: {health.get('status')}, telemetry {health.get('telemetry')}")
    print("rss (s, MiB):", " ".join(f"{t}:{m}" for t, m in figures["rss_mib"]))
    shown = "n/a (run under 2 minutes)" if growth is None else f"{growth} MiB/hour"
    print(f"rss growth after the first minute (least squares): {shown}")
    print(
        f"rss median, first third of the run: {first_third:.1f} MiB, last third: {last_third:.1f}"
    )
    print(f"wlm exit code: {code}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0 if not tally.unexpected and code == 0 and rows == tally.proxied else 1


if __name__ == "__main__":
    sys.exit(main())
