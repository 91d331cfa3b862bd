"""Proxy overhead: direct to a fast fake upstream vs through wlm, measured in one run.

    .venv/bin/python benchmarks/proxy.py [--duration 8] [--vs-litellm] [--translated]

Starts the fake upstream (benchmarks/fake_upstream.py) and ``wlm serve`` (telemetry
on, one worker), then measures non-stream at c=1 and c=32 (wrk when installed,
else a Python closed-loop client) and streams at c=1 and c=32 (a closed-loop
asyncio client reading every event). Prints figures and ratios wlm/direct.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}]}
STREAM_BODY = {**BODY, "stream": True}
KEY = "sk-bench-upstream-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def start(
    cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


# -- non-stream -----------------------------------------------------------------------


def wrk_run(url: str, concurrency: int, duration: float, body: dict) -> dict[str, float]:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        'wrk.headers["Authorization"] = "Bearer sk-client"\n'
    )
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    script.unlink()

    def ms(text: str) -> float:
        match = re.match(r"([\d.]+)(\w+)", text)
        if match is None:
            raise RuntimeError(f"could not read wrk's output:\n{out}")
        value, unit = match.groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    return {"p50_ms": p50, "p99_ms": p99, "rps": rps, "errors": errors}


async def py_run(url: str, concurrency: int, duration: float, body: dict) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    payload = json.dumps(body).encode()
    headers = {"content-type": "application/json", "authorization": "Bearer sk-client"}
    deadline = time.perf_counter() + duration

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            async with session.post(url, data=payload, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
            latencies.append((time.perf_counter() - t0) * 1000)

    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "rps": len(latencies) / elapsed,
        "errors": errors,
    }


def non_stream(url: str, concurrency: int, duration: float) -> dict[str, float]:
    if shutil.which("wrk"):
        return wrk_run(url, concurrency, duration, BODY)
    return asyncio.run(py_run(url, concurrency, duration, BODY))


# -- streams --------------------------------------------------------------------------


async def stream_run(url: str, concurrency: int, duration: float) -> dict[str, float]:
    ttfc: list[float] = []
    totals: list[float] = []
    events = 0
    short = 0
    payload = json.dumps(STREAM_BODY).encode()
    headers = {"content-type": "application/json", "authorization": "Bearer sk-client"}
    deadline = time.perf_counter() + duration

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal events, short
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            first = None
            seen = 0
            buffer = b""
            async with session.post(url, data=payload, headers=headers) as response:
                async for chunk in response.content.iter_any():
                    if first is None:
                        first = time.perf_counter() - t0
                    buffer += chunk
                    seen += chunk.count(b"data:")
            totals.append((time.perf_counter() - t0) * 1000)
            ttfc.append((first or 0) * 1000)
            events += seen
            if seen < 21:
                short += 1

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "ttfc_p50_ms": statistics.median(ttfc),
        "total_p50_ms": statistics.median(totals),
        "streams_per_s": len(totals) / elapsed,
        "events_per_s": events / elapsed,
        "short_streams": short,
    }


# -- the run --------------------------------------------------------------------------


def measure(name: str, url: str, duration: float, results: dict[str, dict]) -> None:
    print(f"measuring {name} ...", file=sys.stderr, flush=True)
    # Warm up connections and code paths.
    non_stream(url, 4, 1.0)
    results[name] = {
        "c1": non_stream(url, 1, duration),
        "c32": non_stream(url, 32, duration),
        "s1": asyncio.run(stream_run(url, 1, duration)),
        "s32": asyncio.run(stream_run(url, 32, duration)),
    }


def report(results: dict[str, dict]) -> None:
    direct = results["direct"]
    print()
    print(
        "| target | c=1 p50 ms | added p50 ms | c=1 req/s | c=32 req/s | c=32 p50/p99 ms "
        "| stream c=1 TTFC ms | added TTFC ms | c=1 streams/s | c=32 streams/s | c=32 events/s |"
    )
    print("| --- " * 11 + "|")
    for name, r in results.items():
        added = r["c1"]["p50_ms"] - direct["c1"]["p50_ms"]
        added_ttfc = r["s1"]["ttfc_p50_ms"] - direct["s1"]["ttfc_p50_ms"]
        print(
            f"| {name} | {r['c1']['p50_ms']:.3f} | {added:+.3f} | {r['c1']['rps']:,.0f} "
            f"| {r['c32']['rps']:,.0f} | {r['c32']['p50_ms']:.2f}/{r['c32']['p99_ms']:.2f} "
            f"| {r['s1']['ttfc_p50_ms']:.3f} | {added_ttfc:+.3f} | {r['s1']['streams_per_s']:,.0f} "
            f"| {r['s32']['streams_per_s']:,.0f} | {r['s32']['events_per_s']:,.0f} |"
        )
    print()
    for name, r in results.items():
        if name == "direct":
            continue
        print(
            f"{name}/direct: c=32 req/s {r['c32']['rps'] / direct['c32']['rps']:.3f}, "
            f"c=32 streams/s {r['s32']['streams_per_s'] / direct['s32']['streams_per_s']:.3f}, "
            f"errors {r['c1']['errors'] + r['c32']['errors']}, "
            f"short streams {r['s1']['short_streams'] + r['s32']['short_streams']}"
        )
    print()
    print(json.dumps(results, indent=1))


def start_litellm(upstream: str, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    venv = Path(tempfile.gettempdir()) / "wlm-bench-litellm"
    if not (venv / "bin" / "litellm").exists():
        print("installing LiteLLM's proxy into its own venv ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([venv / "bin" / "pip", "install", "-q", "litellm[proxy]"], check=True)
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: gpt-4o-mini\n"
        "    litellm_params:\n"
        "      model: openai/gpt-4o-mini\n"
        f"      api_base: {upstream}\n"
        f"      api_key: {KEY}\n"
        "litellm_settings:\n  set_verbose: false\n"
    )
    return start(
        [
            str(venv / "bin" / "litellm"),
            "--config",
            str(config),
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        env={"LITELLM_LOG": "ERROR", "LITELLM_MASTER_KEY": "sk-client"},
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--vs-litellm", action="store_true", help="also measure LiteLLM's proxy")
    parser.add_argument(
        "--translated", action="store_true", help="also measure the Anthropic-translated path"
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="wlm-bench-"))
    processes = []
    try:
        fake_port = free_port()
        processes.append(
            start([sys.executable, str(HERE / "fake_upstream.py"), "--port", str(fake_port)])
        )
        upstream = f"http://127.0.0.1:{fake_port}/v1"
        wait_healthy(f"http://127.0.0.1:{fake_port}/")

        wlm_port = free_port()
        env = {
            "OPENAI_API_KEY": KEY,
            "OPENAI_BASE_URL": upstream,
            "WLM_PORT": str(wlm_port),
            "WLM_DATA_DIR": str(workdir / "data"),
            "WLM_MODELS_DIR": str(workdir / "models"),
            "WLM_ROUTES": "gpt-*=openai",
            "WLM_LOG_LEVEL": "WARNING",
        }
        if args.translated:
            env |= {
                "ANTHROPIC_API_KEY": KEY,
                "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{fake_port}",
                "WLM_ALIASES": "claude=anthropic/claude-bench",
            }
        processes.append(start([sys.executable, "-m", "wlm.cli", "serve"], env=env, cwd=workdir))
        wait_healthy(f"http://127.0.0.1:{wlm_port}/health")

        results: dict[str, dict] = {}
        measure("direct", f"{upstream}/chat/completions", args.duration, results)
        measure("wlm", f"http://127.0.0.1:{wlm_port}/v1/chat/completions", args.duration, results)
        if args.translated:
            global BODY, STREAM_BODY
            BODY = {**BODY, "model": "claude"}
            STREAM_BODY = {**BODY, "stream": True}
            measure(
                "wlm-anthropic",
                f"http://127.0.0.1:{wlm_port}/v1/chat/completions",
                args.duration,
                results,
            )
            BODY = {**BODY, "model": "gpt-4o-mini"}
            STREAM_BODY = {**BODY, "stream": True}
        if args.vs_litellm:
            port = free_port()
            processes.append(start_litellm(upstream, port, workdir))
            wait_healthy(f"http://127.0.0.1:{port}/health/liveliness", timeout=120)
            measure(
                "litellm", f"http://127.0.0.1:{port}/v1/chat/completions", args.duration, results
            )
        print(
            f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}"
        )
        report(results)
    finally:
        for process in reversed(processes):
            stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
