"""Beyond one machine (issue 14): two wlm replicas behind nginx against one wlm, and the
PostgreSQL writer against DuckDB's, in one run.

    .venv/bin/python benchmarks/replicas.py [--duration 5] [--rounds 1]

Starts benchmarks/fake_upstream.py, a throwaway PostgreSQL (tests/pg.py: Debian's
postgresql, fsync off) and four targets, each measured with wrk (non-stream chat, c=1 and
c=32; benchmarks/proxy.py's client) in turn, after the servers go idle:

    direct     the fake itself
    duckdb     one wlm, telemetry in its DuckDB file (the default)
    postgres   one wlm, telemetry in PostgreSQL (WLM_TELEMETRY_URL)
    nginx      nginx running docs/nginx.conf (tests/nginx.py) over two wlm replicas that
               share one PostgreSQL database

For each wlm target it also counts the rows its store holds after the run and how long
the writer took to have them all: rows written per second of load. Prints the figures
and the ratios (postgres/duckdb: the request path with the PostgreSQL writer; nginx/
postgres: what the second hop adds). Every process sits on the same cores, so two
replicas here share the CPU one had: the figures say what nginx and PostgreSQL cost, not
how replicas on their own machines scale.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

import httpx

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from proxy import KEY, free_port, settle, start, stop, wait_healthy, wrk_run  # noqa: E402

from tests.nginx import Nginx  # noqa: E402
from tests.pg import start_cluster  # noqa: E402

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}]}


@dataclass(frozen=True)
class Target:
    name: str
    url: str  # the chat completions URL wrk sends to
    sql_url: str | None  # a wlm whose /api/sql counts the target's rows; None for direct


def count_rows(sql_url: str) -> int:
    body = {"sql": "SELECT count(*) AS n FROM requests"}
    answer = httpx.post(f"{sql_url}/api/sql", json=body, timeout=30).json()
    return int(answer["rows"][0][0])


def rows_written(sql_url: str, before: int, sent: int, started: float) -> float:
    """Rows per second from the start of the load until the store holds all ``sent``."""
    deadline = time.monotonic() + 60
    while count_rows(sql_url) - before < sent and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the store with a deadline
    written = count_rows(sql_url) - before
    return written / (time.monotonic() - started)


def measure(target: Target, concurrency: int, duration: float) -> dict[str, float]:
    before = count_rows(target.sql_url) if target.sql_url else 0
    started = time.monotonic()
    result = wrk_run(target.url, concurrency, duration, BODY)
    if target.sql_url:
        result["rows_per_s"] = rows_written(target.sql_url, before, int(result["count"]), started)
        result["rows"] = count_rows(target.sql_url) - before
    return result


@contextmanager
def wlm(env: dict[str, str], workdir: Path, servers: list[Popen[bytes]]) -> Iterator[str]:
    """A ``wlm serve`` on a free port (its address), added to ``servers`` while it runs."""
    port = free_port()
    (workdir / "models").mkdir(parents=True)
    process = start(
        [sys.executable, "-m", "wlm.cli", "serve"],
        env={
            **env,
            "WLM_PORT": str(port),
            "WLM_DATA_DIR": str(workdir / "data"),
            "WLM_MODELS_DIR": str(workdir / "models"),
        },
        cwd=workdir,
    )
    servers.append(process)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health")
        yield f"127.0.0.1:{port}"
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds; best kept")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (1 min), cpus: {os.cpu_count()}")

    root = Path(tempfile.mkdtemp(prefix="wlm-bench-replicas-"))
    with ExitStack() as stack:
        fake_port = free_port()
        fake = start([sys.executable, str(HERE / "fake_upstream.py"), "--port", str(fake_port)])
        stack.callback(stop, fake)
        upstream = f"http://127.0.0.1:{fake_port}/v1"
        wait_healthy(f"http://127.0.0.1:{fake_port}/")
        cluster = start_cluster()
        stack.callback(cluster.destroy)

        base = {
            "OPENAI_API_KEY": KEY,
            "OPENAI_BASE_URL": upstream,
            "WLM_ROUTES": "gpt-*=openai",
            "WLM_LOG_LEVEL": "WARNING",
            "WLM_LOG_CONTENT": "true",
        }
        servers: list[Popen[bytes]] = []
        one_duck = stack.enter_context(wlm(base, root / "duckdb", servers))
        alone = {**base, "WLM_TELEMETRY_URL": cluster.create_database()}
        one_pg = stack.enter_context(wlm(alone, root / "postgres", servers))
        shared = {**base, "WLM_TELEMETRY_URL": cluster.create_database()}
        replicas = (
            stack.enter_context(wlm(shared, root / "replica-1", servers)),
            stack.enter_context(wlm(shared, root / "replica-2", servers)),
        )
        proxy = Nginx(replicas).start()
        stack.callback(proxy.stop)

        targets = [
            Target("direct", f"{upstream}/chat/completions", None),
            Target("duckdb", f"http://{one_duck}/v1/chat/completions", f"http://{one_duck}"),
            Target("postgres", f"http://{one_pg}/v1/chat/completions", f"http://{one_pg}"),
            Target("nginx", f"{proxy.base_url}/v1/chat/completions", f"http://{replicas[0]}"),
        ]
        results: dict[tuple[str, int], dict[str, float]] = {}
        for _ in range(args.rounds):
            for concurrency in (1, 32):
                for target in targets:
                    settle(servers)  # every wlm idle: the last run's rows written
                    result = measure(target, concurrency, args.duration)
                    key = (target.name, concurrency)
                    if key not in results or result["rps"] > results[key]["rps"]:
                        results[key] = result

    print(f"load average after: {os.getloadavg()[0]:.2f} (1 min)")
    print(f"{'target':<9} {'c':>3} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'rows/s':>8} errors")
    for (name, concurrency), r in results.items():
        rows = f"{r['rows_per_s']:8.0f}" if "rows_per_s" in r else f"{'':>8}"
        print(
            f"{name:<9} {concurrency:>3} {r['rps']:8.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
            f"{rows} {int(r['errors'])}"
        )
        if "rows" in r and r["rows"] < r["count"]:  # more: wrk stops with requests in flight
            print(f"  {name}: {r['count']:.0f} requests but {r['rows']:.0f} rows")
    for concurrency in (1, 32):

        def get(name: str, field: str, c: int = concurrency) -> float:
            return results[(name, c)][field]

        pg_duck = get("postgres", "rps") / get("duckdb", "rps")
        pg_duck_rows = get("postgres", "rows_per_s") / get("duckdb", "rows_per_s")
        nginx_pg = get("nginx", "rps") / get("postgres", "rps")
        print(
            f"c={concurrency}: postgres/duckdb req/s {pg_duck:.2f}, rows/s {pg_duck_rows:.2f}; "
            f"nginx/postgres req/s {nginx_pg:.2f}, added by nginx: "
            f"p50 {get('nginx', 'p50_ms') - get('postgres', 'p50_ms'):+.2f} ms, "
            f"p99 {get('nginx', 'p99_ms') - get('postgres', 'p99_ms'):+.2f} ms"
        )


if __name__ == "__main__":
    main()
