"""Proxy overhead: direct to a fast fake upstream vs through wlm, measured in one run.

    .venv/bin/python benchmarks/proxy.py [--duration 8] [--translated] [--yardstick]
                                         [--vs-litellm] [--json FILE]

Starts the fake upstream (benchmarks/fake_upstream.py) and ``wlm serve`` (telemetry
on, one worker), then runs every scenario against every target: non-stream at c=1
and c=32 (wrk when installed, else a Python closed-loop client), streams at c=1 and
c=32 and paced streams (a closed-loop asyncio client reading every event). Each
scenario also records the server's CPU per request (its whole process tree, user +
system). Scenarios run interleaved across targets, each after the servers go idle, each
round in a rotated order of targets.

``--yardstick`` also starts benchmarks/yardstick.py, a featureless proxy of wlm's
stack (Litestar on Granian, one aiohttp session), and prints wlm/yardstick ratios
against the targets of issue 10.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MESSAGES = [{"role": "user", "content": "Say hello."}]
KEY = "sk-bench-upstream-key"
CLIENT_HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-client"}
STREAM_EVENTS = 21  # content + finish chunks at least; fewer is a short stream


@dataclass(frozen=True)
class Target:
    """Something to measure: where to send, which models, whose CPU to count."""

    name: str
    url: str
    server: subprocess.Popen[bytes]
    model: str = "gpt-4o-mini"
    paced_model: str = "paced:10"  # benchmarks/fake_upstream.py paces `paced:<ms>` streams
    dialect: str = "chat"  # the client dialect: chat, messages or responses

    def body(self, *, stream: bool = False, paced: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.paced_model if paced else self.model}
        if self.dialect == "responses":
            body["input"] = MESSAGES[0]["content"]
        else:
            body["messages"] = MESSAGES
        if self.dialect == "messages":
            body["max_tokens"] = 256
        if stream:
            body["stream"] = True
        return body


Scenario = Callable[[Target, argparse.Namespace], dict[str, float]]


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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * q) - 1)]


# -- server CPU -----------------------------------------------------------------------


def cpu_seconds(process: subprocess.Popen[bytes]) -> float:
    """User + system CPU of the process and all its descendants (Granian's worker)."""
    total = 0.0
    try:
        root = psutil.Process(process.pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return total
    for proc in tree:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def settle(servers: list[subprocess.Popen[bytes]], timeout: float = 5.0) -> None:
    """Wait until every server is idle (under 5% of a core), e.g. telemetry flushed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = sum(cpu_seconds(server) for server in servers)
        time.sleep(0.25)
        if sum(cpu_seconds(server) for server in servers) - before < 0.0125:
            return


def with_cpu(target: Target, scenario: Scenario, args: argparse.Namespace) -> dict[str, float]:
    """Run one scenario; add the server's CPU per request (µs) to its figures."""
    before = cpu_seconds(target.server)
    result = scenario(target, args)
    used = cpu_seconds(target.server) - before
    result["cpu_us_per_req"] = used * 1e6 / result["count"] if result["count"] else 0.0
    return result


# -- non-stream -----------------------------------------------------------------------


def wrk_run(url: str, concurrency: int, duration: float, body: dict) -> dict[str, float]:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    lua_headers = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in CLIENT_HEADERS.items())
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(body))}\n{lua_headers}'
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

    def find(pattern: str) -> str:
        match = re.search(pattern, out, re.M)
        if match is None:
            raise RuntimeError(f"could not read wrk's output:\n{out}")
        return match.group(1)

    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "p50_ms": ms(find(r"^\s+50%\s+(\S+)")),
        "p99_ms": ms(find(r"^\s+99%\s+(\S+)")),
        "rps": float(find(r"Requests/sec:\s+([\d.]+)")),
        "count": int(find(r"(\d+) requests in")),
        "errors": int(non2xx.group(1)) if non2xx else 0,
    }


async def py_run(url: str, concurrency: int, duration: float, body: dict) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    payload = json.dumps(body).encode()
    deadline = time.perf_counter() + duration

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            async with session.post(url, data=payload, headers=CLIENT_HEADERS) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
            latencies.append((time.perf_counter() - t0) * 1000)

    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "p50_ms": statistics.median(latencies),
        "p99_ms": percentile(latencies, 0.99),
        "rps": len(latencies) / elapsed,
        "count": len(latencies),
        "errors": errors,
    }


def non_stream(target: Target, concurrency: int, duration: float) -> dict[str, float]:
    if shutil.which("wrk"):
        return wrk_run(target.url, concurrency, duration, target.body())
    return asyncio.run(py_run(target.url, concurrency, duration, target.body()))


# -- streams --------------------------------------------------------------------------


async def stream_run(url: str, concurrency: int, duration: float, body: dict) -> dict[str, float]:
    ttfc: list[float] = []
    totals: list[float] = []
    events = 0
    short = 0
    payload = json.dumps(body).encode()

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal events, short
        t0 = time.perf_counter()
        first = None
        seen = 0
        async with session.post(url, data=payload, headers=CLIENT_HEADERS) as response:
            async for chunk in response.content.iter_any():
                if first is None:
                    first = time.perf_counter() - t0
                seen += chunk.count(b"data:")
        totals.append((time.perf_counter() - t0) * 1000)
        ttfc.append((first or 0) * 1000)
        events += seen
        if seen < STREAM_EVENTS:
            short += 1

    async def worker(session: aiohttp.ClientSession, deadline: float) -> None:
        while time.perf_counter() < deadline:
            await one(session)

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        # One stream per connection first, not timed: every target's figures are then of
        # streams on open connections (the first ones' TCP setup was the p99 otherwise).
        await asyncio.gather(*(one(session) for _ in range(concurrency)))
        warm_up = len(totals)
        del ttfc[:], totals[:]
        events = short = 0
        started = time.perf_counter()
        deadline = started + duration
        await asyncio.gather(*(worker(session, deadline) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "ttfc_p50_ms": statistics.median(ttfc),
        "ttfc_p99_ms": percentile(ttfc, 0.99),
        "total_p50_ms": statistics.median(totals),
        "streams_per_s": len(totals) / elapsed,
        "events_per_s": events / elapsed,
        # The server's CPU is measured around the whole run: per stream, warm-up included.
        "count": len(totals) + warm_up,
        "short_streams": short,
    }


def streams(
    target: Target, concurrency: int, duration: float, *, paced: bool = False
) -> dict[str, float]:
    body = target.body(stream=True, paced=paced)
    return asyncio.run(stream_run(target.url, concurrency, duration, body))


# -- the run --------------------------------------------------------------------------

SCENARIOS: dict[str, Scenario] = {
    "c1": lambda t, a: non_stream(t, 1, a.duration),
    "c32": lambda t, a: non_stream(t, 32, a.duration),
    "s1": lambda t, a: streams(t, 1, a.duration),
    "s32": lambda t, a: streams(t, 32, a.duration),
    "paced": lambda t, a: streams(t, a.paced_concurrency, a.duration, paced=True),
}


def measure(targets: list[Target], args: argparse.Namespace) -> dict[str, dict]:
    """Every scenario against every target, interleaved, each on idle servers."""
    servers = list({id(t.server): t.server for t in targets}.values())
    for target in targets:  # warm up connections and code paths
        non_stream(target, 4, 1.0)
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    for scenario, run in SCENARIOS.items():
        for round_ in range(args.repeat):
            # Rounds interleave the targets, each round starting one target later: no
            # target is always measured right after the same other one.
            shift = round_ % len(targets)
            for target in targets[shift:] + targets[:shift]:
                print(
                    f"measuring {scenario} on {target.name} ({round_ + 1}/{args.repeat}) ...",
                    file=sys.stderr,
                    flush=True,
                )
                settle(servers)
                runs.setdefault((target.name, scenario), []).append(with_cpu(target, run, args))
    results: dict[str, dict] = {target.name: {} for target in targets}
    for (name, scenario), measured in runs.items():
        results[name][scenario] = {
            key: statistics.median(m[key] for m in measured) for key in measured[0]
        }
    return results


# -- the report -----------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One figure compared with the yardstick, with issue 10's bound on the ratio if any."""

    label: str
    value: Callable[[dict, dict], float]  # (target's results, direct's results) -> figure
    fmt: str
    at_least: float | None = None
    at_most: float | None = None

    def verdict(self, ratio: float | None) -> str:
        if ratio is None or (self.at_least is None and self.at_most is None):
            return "–"
        if self.at_least is not None:
            return f"≥ {self.at_least}×: {'met' if ratio >= self.at_least else 'missed'}"
        return f"≤ {self.at_most}×: {'met' if ratio <= self.at_most else 'missed'}"  # type: ignore[operator]


FIGURES = [
    Figure("added p50 ms, c=1", lambda r, d: r["c1"]["p50_ms"] - d["c1"]["p50_ms"], ".3f"),
    Figure("req/s, c=1", lambda r, d: r["c1"]["rps"], ",.0f"),
    Figure("req/s, c=32", lambda r, d: r["c32"]["rps"], ",.0f", at_least=0.85),
    Figure("CPU µs/request, c=32", lambda r, d: r["c32"]["cpu_us_per_req"], ",.0f", at_most=1.2),
    Figure(
        "added first chunk ms, c=1",
        lambda r, d: r["s1"]["ttfc_p50_ms"] - d["s1"]["ttfc_p50_ms"],
        ".3f",
    ),
    Figure("streams/s, c=32", lambda r, d: r["s32"]["streams_per_s"], ",.0f", at_least=0.85),
    Figure("CPU µs/stream, c=32", lambda r, d: r["s32"]["cpu_us_per_req"], ",.0f"),
    Figure("paced first chunk p99 ms", lambda r, d: r["paced"]["ttfc_p99_ms"], ".2f", at_most=1.2),
]


def ratios(results: dict[str, dict], name: str) -> list[dict[str, Any]]:
    """Each figure of `name` beside the yardstick's, with the ratio and its verdict."""
    direct, yardstick = results["direct"], results["yardstick"]
    rows = []
    for figure in FIGURES:
        ours = figure.value(results[name], direct)
        theirs = figure.value(yardstick, direct)
        ratio = ours / theirs if theirs > 0 else None
        rows.append(
            {
                "figure": figure.label,
                name: ours,
                "yardstick": theirs,
                "ratio": ratio,
                "verdict": figure.verdict(ratio),
            }
        )
    return rows


def report(results: dict[str, dict], paced_label: str) -> dict[str, list[dict[str, Any]]]:
    direct = results["direct"]
    print()
    print(
        "| target | c=1 p50 ms | added p50 ms | c=1 req/s | c=32 req/s | c=32 p50/p99 ms "
        "| c=32 CPU µs/req |"
    )
    print("| --- " * 7 + "|")
    for name, r in results.items():
        added = r["c1"]["p50_ms"] - direct["c1"]["p50_ms"]
        print(
            f"| {name} | {r['c1']['p50_ms']:.3f} | {added:+.3f} | {r['c1']['rps']:,.0f} "
            f"| {r['c32']['rps']:,.0f} | {r['c32']['p50_ms']:.2f}/{r['c32']['p99_ms']:.2f} "
            f"| {r['c32']['cpu_us_per_req']:,.0f} |"
        )
    print()
    print(
        "| target | stream c=1 TTFC ms | added TTFC ms | c=1 streams/s | c=32 streams/s "
        f"| c=32 events/s | c=32 CPU µs/stream | {paced_label} TTFC p50/p99 ms |"
    )
    print("| --- " * 8 + "|")
    for name, r in results.items():
        added_ttfc = r["s1"]["ttfc_p50_ms"] - direct["s1"]["ttfc_p50_ms"]
        print(
            f"| {name} | {r['s1']['ttfc_p50_ms']:.3f} | {added_ttfc:+.3f} "
            f"| {r['s1']['streams_per_s']:,.0f} | {r['s32']['streams_per_s']:,.0f} "
            f"| {r['s32']['events_per_s']:,.0f} | {r['s32']['cpu_us_per_req']:,.0f} "
            f"| {r['paced']['ttfc_p50_ms']:.2f}/{r['paced']['ttfc_p99_ms']:.2f} |"
        )
    print()
    for name, r in results.items():
        if name == "direct":
            continue
        print(
            f"{name}/direct: c=32 req/s {r['c32']['rps'] / direct['c32']['rps']:.3f}, "
            f"c=32 streams/s {r['s32']['streams_per_s'] / direct['s32']['streams_per_s']:.3f}, "
            f"errors {r['c1']['errors'] + r['c32']['errors']}, "
            f"short streams {sum(r[s]['short_streams'] for s in ('s1', 's32', 'paced'))}"
        )
    if "messages-native" in results:
        dialect_report(results)
    if "wlm-resilience" in results:
        resilience_report(results)
    if "yardstick" not in results:
        return {}
    compared = {
        name: ratios(results, name)
        for name in results
        if name not in ("direct", "yardstick", "litellm")
    }
    for name, rows in compared.items():
        print()
        print(f"| {name} vs yardstick | {name} | yardstick | {name}/yardstick | issue 10 target |")
        print("| --- " * 5 + "|")
        for figure, row in zip(FIGURES, rows, strict=True):
            ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}×"
            print(
                f"| {row['figure']} | {row[name]:{figure.fmt}} | {row['yardstick']:{figure.fmt}} "
                f"| {ratio} | {row['verdict']} |"
            )
    print()
    print("Against issue 10's targets (ratios to the yardstick, same run):")
    for name, rows in compared.items():
        parts = [
            f"{row['figure']} {row['ratio']:.2f}× ({row['verdict']})"
            for row in rows
            if row["verdict"] != "–"
        ]
        print(f"  {name}: " + "; ".join(parts))
    return compared


def resilience_report(results: dict[str, dict]) -> None:
    """Issue 12's bound: with a client key, WLM_KEY_LIMITS and WLM_FALLBACKS set, the
    happy path's overhead within 1.05x of wlm without them."""
    direct, base, guarded = results["direct"], results["wlm"], results["wlm-resilience"]
    figures = [
        (
            "added p50 ms, c=1",
            base["c1"]["p50_ms"] - direct["c1"]["p50_ms"],
            guarded["c1"]["p50_ms"] - direct["c1"]["p50_ms"],
            False,
        ),
        ("req/s, c=32", base["c32"]["rps"], guarded["c32"]["rps"], True),
        (
            "CPU µs/request, c=32",
            base["c32"]["cpu_us_per_req"],
            guarded["c32"]["cpu_us_per_req"],
            False,
        ),
        ("streams/s, c=32", base["s32"]["streams_per_s"], guarded["s32"]["streams_per_s"], True),
        (
            "CPU µs/stream, c=32",
            base["s32"]["cpu_us_per_req"],
            guarded["s32"]["cpu_us_per_req"],
            False,
        ),
    ]
    print()
    print("| wlm with key limits and fallbacks vs without | without | with | overhead | bound |")
    print("| --- " * 5 + "|")
    for figure, without, with_, higher_is_better in figures:
        # Overhead as "how many times the cost": a rate's inverse, a cost as is.
        ratio = (
            (without / with_ if higher_is_better else with_ / without)
            if without and with_
            else None
        )
        shown = "n/a" if ratio is None else f"{ratio:.2f}×"
        verdict = "–" if ratio is None else ("met" if ratio <= 1.05 else "missed")
        print(f"| {figure} | {without:,.3f} | {with_:,.3f} | {shown} | ≤ 1.05×: {verdict} |")


def dialect_report(results: dict[str, dict]) -> None:
    """Issue 11's bounds: a dialect's pass-through within 1.1x of chat's overhead, its
    translation within 1.3x of its pass-through (CPU per request, streams/s, added p50)."""
    direct = results["direct"]

    def added(r: dict) -> float:
        return r["c1"]["p50_ms"] - direct["c1"]["p50_ms"]

    print()
    print(
        "| comparison | added p50 c=1 | CPU µs/req c=32 | CPU µs/stream c=32 | streams/s c=32 | bound |"
    )
    print("| --- " * 6 + "|")
    pairs = [
        ("messages-native", "wlm", 1.1),
        ("responses-native", "wlm", 1.1),
        ("messages-translated", "messages-native", 1.3),
        ("responses-translated", "responses-native", 1.3),
    ]
    for name, base, bound in pairs:
        r, b = results[name], results[base]
        cpu = r["c32"]["cpu_us_per_req"] / b["c32"]["cpu_us_per_req"]
        cpu_s = r["s32"]["cpu_us_per_req"] / b["s32"]["cpu_us_per_req"]
        speed = b["s32"]["streams_per_s"] / r["s32"]["streams_per_s"]
        print(
            f"| {name} / {base} | {added(r) / added(b):.2f}× | {cpu:.2f}× | {cpu_s:.2f}× "
            f"| {1 / speed:.2f}× | ≤ {bound}× cost: "
            f"{'met' if max(cpu, cpu_s, speed) <= bound else 'missed'} |"
        )


def start_litellm(
    upstream: str, port: int, workdir: Path, paced_model: str
) -> subprocess.Popen[bytes]:
    venv = Path(tempfile.gettempdir()) / "wlm-bench-litellm"
    if not (venv / "bin" / "litellm").exists():
        print("installing LiteLLM's proxy into its own venv ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([venv / "bin" / "pip", "install", "-q", "litellm[proxy]"], check=True)
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        + "".join(
            f'  - model_name: "{name}"\n'
            "    litellm_params:\n"
            f'      model: "openai/{name}"\n'
            f"      api_base: {upstream}\n"
            f"      api_key: {KEY}\n"
            for name in ("gpt-4o-mini", paced_model)
        )
        + "litellm_settings:\n  set_verbose: false\n"
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
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of every measurement; each figure is the median of its rounds",
    )
    parser.add_argument(
        "--yardstick", action="store_true", help="also measure a featureless proxy of wlm's stack"
    )
    parser.add_argument("--vs-litellm", action="store_true", help="also measure LiteLLM's proxy")
    parser.add_argument(
        "--resilience",
        action="store_true",
        help="also measure wlm with a client key, WLM_KEY_LIMITS and WLM_FALLBACKS set "
        "(issue 12: happy-path overhead within 1.05x of without)",
    )
    parser.add_argument(
        "--dialects",
        action="store_true",
        help="also measure /v1/messages and /v1/responses, pass-through and translated",
    )
    parser.add_argument(
        "--translated", action="store_true", help="also measure the Anthropic-translated path"
    )
    parser.add_argument(
        "--pace-ms", type=float, default=10.0, help="ms between content chunks of paced streams"
    )
    parser.add_argument(
        "--paced-concurrency", type=int, default=32, help="concurrent paced streams"
    )
    parser.add_argument(
        "--json", metavar="FILE", help="also write every figure as JSON ('-': stdout)"
    )
    args = parser.parse_args()
    paced_model = f"paced:{args.pace_ms:g}"

    workdir = Path(tempfile.mkdtemp(prefix="wlm-bench-"))
    processes = []
    try:
        fake_port = free_port()
        fake = start([sys.executable, str(HERE / "fake_upstream.py"), "--port", str(fake_port)])
        processes.append(fake)
        upstream = f"http://127.0.0.1:{fake_port}/v1"
        wait_healthy(f"http://127.0.0.1:{fake_port}/")
        targets = [Target("direct", f"{upstream}/chat/completions", fake, paced_model=paced_model)]

        wlm_port = free_port()
        env = {
            "OPENAI_API_KEY": KEY,
            "OPENAI_BASE_URL": upstream,
            "WLM_PORT": str(wlm_port),
            "WLM_DATA_DIR": str(workdir / "data"),
            "WLM_MODELS_DIR": str(workdir / "models"),
            "WLM_ROUTES": "gpt-*=openai,paced:*=openai",
            "WLM_LOG_LEVEL": "WARNING",
        }
        if args.translated or args.dialects:
            env |= {
                "ANTHROPIC_API_KEY": KEY,
                "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{fake_port}",
                "WLM_ALIASES": "claude=anthropic/claude-bench",
            }
        if args.dialects:
            # The same fake as a provider that speaks only chat: Responses get translated.
            env |= {
                "WLM_PROVIDERS": "chatonly",
                "CHATONLY_BASE_URL": upstream,
                "CHATONLY_API_KEY": KEY,
                "WLM_CHATONLY_MODELS": "gpt-4o-mini",
            }
        wlm = start([sys.executable, "-m", "wlm.cli", "serve"], env=env, cwd=workdir)
        processes.append(wlm)
        wait_healthy(f"http://127.0.0.1:{wlm_port}/health")
        wlm_url = f"http://127.0.0.1:{wlm_port}/v1/chat/completions"
        targets.append(Target("wlm", wlm_url, wlm, paced_model=paced_model))
        if args.translated:
            targets.append(
                Target(
                    "wlm-anthropic",
                    wlm_url,
                    wlm,
                    model="claude",
                    paced_model=f"anthropic/{paced_model}",
                )
            )
        if args.dialects:
            origin = f"http://127.0.0.1:{wlm_port}"
            targets += [
                Target(
                    "messages-native",
                    f"{origin}/v1/messages",
                    wlm,
                    model="claude",
                    paced_model=f"anthropic/{paced_model}",
                    dialect="messages",
                ),
                Target(
                    "messages-translated",
                    f"{origin}/v1/messages",
                    wlm,
                    paced_model=paced_model,
                    dialect="messages",
                ),
                Target(
                    "responses-native",
                    f"{origin}/v1/responses",
                    wlm,
                    paced_model=paced_model,
                    dialect="responses",
                ),
                Target(
                    "responses-translated",
                    f"{origin}/v1/responses",
                    wlm,
                    model="chatonly/gpt-4o-mini",
                    paced_model=f"chatonly/{paced_model}",
                    dialect="responses",
                ),
            ]
        if args.resilience:
            # The same wlm with issue 12's features set up but not triggered: a client key
            # with limits it never reaches, and a fallback chain for every model.
            port = free_port()
            guarded = start(
                [sys.executable, "-m", "wlm.cli", "serve"],
                env=env
                | {
                    "WLM_PORT": str(port),
                    "WLM_DATA_DIR": str(workdir / "data-resilience"),
                    "WLM_API_KEYS": "bench:sk-client",
                    "WLM_KEY_LIMITS": (
                        "bench:rpm=100000000;tpm=100000000000;usd_per_day=1000000;"
                        "usd_per_month=1000000,*:concurrency=10000"
                    ),
                    "WLM_FALLBACKS": "gpt-*=openai/gpt-4o|openai/gpt-4.1,paced:*=openai/gpt-4o",
                },
                cwd=workdir,
            )
            processes.append(guarded)
            wait_healthy(f"http://127.0.0.1:{port}/health")
            targets.append(
                Target(
                    "wlm-resilience",
                    f"http://127.0.0.1:{port}/v1/chat/completions",
                    guarded,
                    paced_model=paced_model,
                )
            )
        if args.yardstick:
            port = free_port()
            yardstick = start(
                [
                    sys.executable,
                    str(HERE / "yardstick.py"),
                    "--port",
                    str(port),
                    "--upstream",
                    upstream,
                    "--api-key",
                    KEY,
                ]
            )
            processes.append(yardstick)
            wait_healthy(f"http://127.0.0.1:{port}/health")
            targets.append(
                Target(
                    "yardstick",
                    f"http://127.0.0.1:{port}/v1/chat/completions",
                    yardstick,
                    paced_model=paced_model,
                )
            )
        if args.vs_litellm:
            port = free_port()
            litellm = start_litellm(upstream, port, workdir, paced_model)
            processes.append(litellm)
            wait_healthy(f"http://127.0.0.1:{port}/health/liveliness", timeout=120)
            targets.append(
                Target(
                    "litellm",
                    f"http://127.0.0.1:{port}/v1/chat/completions",
                    litellm,
                    paced_model=paced_model,
                )
            )

        results = measure(targets, args)
        machine = (
            f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}"
        )
        print(f"machine: {machine}, load average {os.getloadavg()[0]:.2f}")
        compared = report(results, f"paced c={args.paced_concurrency} ({paced_model})")
        if args.json:
            document = {
                "machine": machine,
                "args": vars(args),
                "results": results,
                "vs_yardstick": compared,
            }
            text = json.dumps(document, indent=1, ensure_ascii=False)
            if args.json == "-":
                print(text)
            else:
                Path(args.json).write_text(text + "\n")
    finally:
        for process in reversed(processes):
            stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
