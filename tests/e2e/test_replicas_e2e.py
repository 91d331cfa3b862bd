"""Two `wlm serve` replicas sharing one PostgreSQL, behind a real nginx running the shipped
docs/nginx.conf (tests/nginx.py): streams come through unbuffered, and under mixed load
with one replica SIGKILLed mid-run every request the clients saw answered has exactly one
row once the killed replica is back (its journal replayed), readable with `wlm sql` on
either replica."""

from __future__ import annotations

import json
import os
import queue
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import psycopg
import pytest
from attrs import frozen

from tests.conftest import WlmServer
from tests.e2e.telemetry_helpers import wlm_cli
from tests.fakes import FakeUpstream
from tests.nginx import Nginx
from tests.pg import PASSWORD, wait_until

pytestmark = pytest.mark.e2e

THREADS = 20
REQUESTS = 360
KILL_AFTER = 120  # answered requests before one replica is SIGKILLed


@frozen
class Outcome:
    """What one client saw: answered means 200 and a complete body or a stream to [DONE]."""

    request_id: str
    stream: bool
    answered: bool
    ended: float


@pytest.fixture
def nginx_factory() -> Iterator[Callable[[tuple[str, str]], Nginx]]:
    started: list[Nginx] = []

    def start(replicas: tuple[str, str]) -> Nginx:
        try:
            proxy = Nginx(replicas)
        except LookupError as exc:
            pytest.skip(str(exc))
        started.append(proxy)
        return proxy.start()

    yield start
    for proxy in started:
        proxy.stop()


def one_request(http: httpx.Client, stream: bool) -> Outcome:
    request_id = f"replica-test-{uuid.uuid4().hex}"
    model = "openai/paced:30:3" if stream else "gpt-4o-mini"
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-request-id": request_id}
    answered = False
    try:
        if stream:
            with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
                lines = list(r.iter_lines())
                answered = r.status_code == 200 and "data: [DONE]" in lines
        else:
            r = http.post("/v1/chat/completions", json=body, headers=headers)
            answered = r.status_code == 200 and bool(r.json()["choices"][0]["message"]["content"])
    except (httpx.HTTPError, json.JSONDecodeError):
        answered = False  # the replica died under this request: nginx cut it short
    return Outcome(request_id, stream, answered, time.monotonic())


def run_load(base_url: str, on_kill_point: threading.Event) -> list[Outcome]:
    """``REQUESTS`` requests, every other one a stream, from ``THREADS`` threads."""
    work: queue.SimpleQueue[bool] = queue.SimpleQueue()
    for index in range(REQUESTS):
        work.put(index % 2 == 0)
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(base_url=base_url, timeout=30) as http:
            while True:
                try:
                    stream = work.get_nowait()
                except queue.Empty:
                    return
                outcome = one_request(http, stream)
                with lock:
                    outcomes.append(outcome)
                    if sum(o.answered for o in outcomes) >= KILL_AFTER:
                        on_kill_point.set()

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return outcomes


def rows_by_request_id(pg_url: str) -> Counter[str]:
    with psycopg.connect(pg_url) as con:
        return Counter(row[0] for row in con.execute("SELECT request_id FROM requests"))


def test_two_replicas_behind_nginx_one_killed_mid_run(
    wlm_factory: Callable[..., WlmServer],
    nginx_factory: Callable[[tuple[str, str]], Nginx],
    openai_fake: FakeUpstream,
    pg_url: str,
    tmp_path: Path,
) -> None:
    env = {
        "OPENAI_API_KEY": openai_fake.api_key,
        "OPENAI_BASE_URL": openai_fake.base_url,
        "WLM_ROUTES": "gpt-*=openai",
        "WLM_TELEMETRY_URL": pg_url,
    }
    replicas: list[WlmServer] = []
    for name in ("one", "two"):
        (tmp_path / name / "models").mkdir(parents=True)
        replicas.append(wlm_factory(env, tmp_path / name))
    victim, survivor = replicas
    addresses = (f"127.0.0.1:{victim.port}", f"127.0.0.1:{survivor.port}")
    proxy = nginx_factory(addresses)

    # A paced stream through nginx: every event reaches the client before the fake sends
    # the next one, 300 ms later; buffered, they would all arrive at the end.
    arrivals: list[float] = []
    body = {
        "model": "openai/paced:300:5",
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    with (
        httpx.Client(base_url=proxy.base_url, timeout=30) as http,
        http.stream(
            "POST", "/v1/chat/completions", json=body, headers={"x-request-id": "paced"}
        ) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                arrivals.append(time.monotonic())
    (sent,) = openai_fake.sent_at.values()  # the one stream the fake has sent
    paced = [i for i in range(len(sent) - 1) if sent[i + 1] - sent[i] > 0.15]
    assert len(paced) >= 4, sent
    for index in paced:
        assert arrivals[index] < sent[index + 1], f"event {index} was held back by nginx"
    assert arrivals[-1] - arrivals[0] > 1.0

    # The pages stay on one replica per client address (a page session is signed there).
    with httpx.Client(base_url=proxy.base_url, timeout=10) as http:
        for _ in range(6):
            assert http.get("/health", headers={"x-request-id": "page"}).status_code == 200
    assert len({up for rid, up, _, _ in proxy.access_log() if rid == "page"}) == 1

    # Mixed load, one replica SIGKILLed when a third of it has been answered.
    kill_point = threading.Event()
    killed_at: list[float] = []

    def killer() -> None:
        if kill_point.wait(60):
            assert victim.process is not None
            os.killpg(victim.process.pid, signal.SIGKILL)
            killed_at.append(time.monotonic())

    assassin = threading.Thread(target=killer)
    assassin.start()
    outcomes = run_load(proxy.base_url, kill_point)
    kill_point.set()
    assassin.join(10)
    assert killed_at, "the load ended before the kill point"
    kill = killed_at[0]

    assert len(outcomes) == REQUESTS
    answered = [o for o in outcomes if o.answered]
    # Only the requests in flight on the killed replica fail (at most one per client).
    assert len(answered) >= REQUESTS - THREADS, Counter(o.answered for o in outcomes)
    assert any(o.stream for o in answered) and any(not o.stream for o in answered)
    # nginx logs a request once its client has the last byte: the last few may lag.
    assert wait_until(
        lambda: {o.request_id for o in answered} <= {e[0] for e in proxy.access_log()}
    )
    served_by = {rid: upstreams for rid, upstreams, _, _ in proxy.access_log()}
    # The replica that answered: the last one nginx tried.
    answered_by = {o.request_id: served_by[o.request_id].split(", ")[-1] for o in answered}
    assert set(answered_by.values()) == set(addresses), Counter(answered_by.values())
    by_survivor = [o for o in answered if answered_by[o.request_id] == addresses[1]]
    by_victim = [o for o in answered if answered_by[o.request_id] == addresses[0]]
    served_on = sum(o.ended > kill for o in by_survivor)  # without the victim
    assert served_on >= (REQUESTS - KILL_AFTER) // 2, served_on

    assert wait_until(lambda: all(rows_by_request_id(pg_url)[o.request_id] for o in by_survivor))

    # The victim comes back on its port and data dir and replays its journal: the rows of
    # what it answered in its last moments were on its disk, not written yet. Then every
    # answered request has its row, exactly one, and `wlm sql` on either replica reads
    # every row, the same as PostgreSQL holds.
    before = rows_by_request_id(pg_url)
    unwritten = sum(not before[o.request_id] for o in by_victim)  # when it was killed
    revived = WlmServer({**victim.env}, victim.workdir)
    revived.port, revived.base_url = victim.port, victim.base_url
    try:
        revived.start()
        assert wait_until(
            lambda: all(rows_by_request_id(pg_url)[o.request_id] for o in by_victim)
        ), f"{unwritten} of the victim's {len(by_victim)} answers were unwritten at the kill"
        rows = rows_by_request_id(pg_url)
        sent_ids = {o.request_id for o in outcomes} | {"paced"}
        assert set(rows) <= sent_ids, set(rows) - sent_ids
        assert max(rows.values()) == 1, [rid for rid, n in rows.items() if n > 1]
        assert all(rows[o.request_id] == 1 for o in answered)
        query = "SELECT count(*) AS n, count(DISTINCT request_id) AS ids FROM requests"
        expected = ["n,ids", f"{sum(rows.values())},{len(rows)}"]
        for server in (revived, survivor):
            seen = wlm_cli(server, "sql", query, "--url", server.base_url, "--format", "csv")
            assert seen.stdout.splitlines() == expected, seen.stderr
    finally:
        revived.stop()
    for server in (*replicas, revived):
        assert PASSWORD not in server.log()


def test_a_replica_killed_the_moment_it_answered_keeps_every_row(
    wlm_factory: Callable[..., WlmServer],
    openai_fake: FakeUpstream,
    pg_url: str,
    tmp_path: Path,
) -> None:
    """The client has its whole answer (a body, a stream to its end) and the replica is
    SIGKILLed at once: the row went to the journal before the answer's last part did, so
    the replica started again on its data dir writes it."""
    env = {
        "OPENAI_API_KEY": openai_fake.api_key,
        "OPENAI_BASE_URL": openai_fake.base_url,
        "WLM_ROUTES": "gpt-*=openai",
        "WLM_TELEMETRY_URL": pg_url,
    }
    (tmp_path / "models").mkdir()
    answered: list[str] = []
    for index in range(4):
        server = wlm_factory(env, tmp_path)
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)
        request_id = f"killed-at-once-{index}"
        messages: Any = [{"role": "user", "content": "hi"}]
        if index % 2:
            chunks = client.chat.completions.create(
                model="gpt-4o-mini",
                messages=messages,
                stream=True,
                extra_headers={"x-request-id": request_id},
            )
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            completion = client.chat.completions.create(
                model="gpt-4o-mini", messages=messages, extra_headers={"x-request-id": request_id}
            )
            text = completion.choices[0].message.content or ""
        assert server.process is not None
        os.killpg(server.process.pid, signal.SIGKILL)  # the moment the answer is complete
        server.process.wait(10)
        assert text
        answered.append(request_id)
    restarted = wlm_factory(env, tmp_path)
    assert wait_until(lambda: set(answered) <= set(rows_by_request_id(pg_url))), (
        f"rows: {sorted(rows_by_request_id(pg_url))}, answered: {answered}"
    )
    assert all(rows_by_request_id(pg_url)[rid] == 1 for rid in answered)
    assert PASSWORD not in restarted.log()
