"""GET /metrics and the per-client concurrency limit, under faults.

- /metrics: admin only; valid Prometheus text with the names the docs promise; the
  counters follow what happened (ok, error, cancelled), and ``wlm_in_flight`` goes back
  to 0 when a client leaves a hanging request: nothing is left counted as running;
- WLM_MAX_CONCURRENCY_PER_CLIENT (3 on the shared server): the 4th concurrent request
  of one client gets 429 with Retry-After and an OpenAI error body, never reaches the
  provider, and is one telemetry row; other clients are not affected; once the held
  requests go away, the client's slots are free again.
"""

from __future__ import annotations

import json
import re
import socket
import uuid

import pytest

from tests.faults.conftest import CONCURRENCY_LIMIT, World
from tests.faults.helpers import KEYS, RowChecks, chat, error_of, index_of, new_request_id, wait_for

pytestmark = pytest.mark.e2e

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')
PROMISED = [
    "wlm_requests_total",
    "wlm_request_duration_seconds",
    "wlm_ttft_seconds",
    "wlm_in_flight",
    "wlm_telemetry_queue_depth",
    "wlm_telemetry_dropped_total",
    "wlm_local_instances",
]


def parse(text: str) -> tuple[dict[str, str], list[tuple[str, dict[str, str], float]]]:
    """(metric -> TYPE, samples) of Prometheus text; fails on any malformed line."""
    types: dict[str, str] = {}
    samples = []
    for line in text.split("\n"):  # the format's only line break (not str.splitlines)
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line.startswith("#") or not line:
            continue
        else:
            match = _SAMPLE.match(line)
            assert match, f"malformed sample line: {line!r}"
            name, labels, value = match.groups()
            pairs = _LABEL.findall(labels or "")
            assert ",".join(f'{k}="{v}"' for k, v in pairs) == (labels or ""), line
            samples.append((name, dict(pairs), float(value)))
    return types, samples


def scrape(world: World) -> list[tuple[str, dict[str, str], float]]:
    response = world.admin.get("/metrics")
    assert response.status_code == 200, response.text
    return parse(response.text)[1]


def value(samples: list, name: str, **labels: str) -> float:
    return sum(v for n, ls, v in samples if n == name and labels.items() <= ls.items())


def hold(world: World, key: str, model: str, marker: str) -> socket.socket:
    """Send a chat request over a raw socket and leave it open (close it to disconnect)."""
    body = json.dumps(chat(model, marker=marker)).encode()
    sock = socket.create_connection(("127.0.0.1", world.server.port), timeout=10)
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    world.ledger.count_proxied(world.server.port)
    return sock


def test_metrics_need_the_admin_key(world: World) -> None:
    assert world.client(None).get("/metrics").status_code == 401
    assert world.client(KEYS.alice).get("/metrics").status_code == 401


def test_metrics_are_valid_prometheus_text_with_the_promised_names(world: World) -> None:
    world.http.post("/v1/chat/completions", json=chat("gpt-4o-mini", stream=True))
    response = world.admin.get("/metrics")

    assert response.headers["content-type"].startswith("text/plain")
    types, samples = parse(response.text)
    missing = [name for name in PROMISED if name not in types]
    assert not missing, f"missing metrics: {missing}"
    assert types["wlm_request_duration_seconds"] == types["wlm_ttft_seconds"] == "histogram"
    for name in ("wlm_request_duration_seconds", "wlm_ttft_seconds"):
        series: dict[tuple, list[float]] = {}
        for n, labels, v in samples:
            if n == f"{name}_bucket":
                key = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
                series.setdefault(key, []).append(v)
        assert series, f"{name} has no series"
        for key, buckets in series.items():
            assert buckets == sorted(buckets), f"{name}{key} buckets are not cumulative"
            assert buckets[-1] == value(samples, f"{name}_count", **dict(key))


def test_counters_follow_ok_error_and_cancelled(world: World) -> None:
    model = f"gpt-4o-mini-{uuid.uuid4().hex[:8]}"  # routed to openai by gpt-*; a fresh series
    before = scrape(world)
    errors_before = value(before, "wlm_requests_total", model="openai/error:500", status="error")
    for _ in range(3):
        assert world.http.post("/v1/chat/completions", json=chat(model)).status_code == 200
    assert world.http.post("/v1/chat/completions", json=chat("openai/error:500")).status_code == 500
    marker = new_request_id()
    sock = hold(world, KEYS.alice, "openai/hang", marker)
    fake = world.fakes["openai"]
    index = index_of(fake, marker)
    held = scrape(world)
    sock.close()
    assert fake.wait_closed(index, timeout=5) is not None

    after = wait_for(
        lambda: (s := scrape(world)) and value(s, "wlm_in_flight") == 0 and s,
        5,
        "in-flight to be 0",
    )
    assert value(held, "wlm_in_flight") >= 1
    assert value(after, "wlm_requests_total", model=model, status="ok", provider="openai") == 3
    assert value(after, "wlm_request_duration_seconds_count", model=model) == 3
    errors = value(after, "wlm_requests_total", model="openai/error:500", status="error")
    assert errors == errors_before + 1
    assert value(after, "wlm_requests_total", model="openai/hang", status="cancelled") >= 1


def test_unroutable_model_names_do_not_each_create_a_series(world: World) -> None:
    """Model names are chosen by clients; a label per unknown name grows without bound.
    After a first unknown name (which may open one shared series), more add nothing."""

    def unknown_model_requests(n: int) -> None:
        for _ in range(n):
            name = f"nonexistent-{uuid.uuid4().hex}"
            assert world.http.post("/v1/chat/completions", json=chat(name)).status_code == 404

    def series() -> set[tuple[str, tuple]]:
        return {(n, tuple(sorted(ls.items()))) for n, ls, _ in scrape(world)}

    unknown_model_requests(2)
    before = series()
    unknown_model_requests(20)
    grown = len(series() - before)
    assert grown == 0, f"20 more unknown model names added {grown} series to /metrics"


@pytest.fixture(scope="module")
def rows() -> RowChecks:
    return RowChecks()


def test_concurrency_limit_answers_429_and_frees_the_slots(world: World, rows: RowChecks) -> None:
    fake = world.fakes["openai"]
    markers = [new_request_id() for _ in range(CONCURRENCY_LIMIT)]
    held = [hold(world, KEYS.bob, "openai/hang", m) for m in markers]
    try:
        indexes = [index_of(fake, m) for m in markers]
        rejected_before = value(scrape(world), "wlm_rejected_total", reason="concurrency")
        extra_marker = new_request_id()
        request_id = new_request_id()
        bob = world.client(KEYS.bob)

        response = bob.post(
            "/v1/chat/completions",
            json=chat("openai/gpt-4o-mini", marker=extra_marker),
            headers={"x-request-id": request_id},
        )

        assert response.status_code == 429
        assert response.headers.get("retry-after")
        error = error_of(response)
        assert error["type"] == "rate_limit_error"
        assert world.http.post("/v1/chat/completions", json=chat("gpt-4o-mini")).status_code == 200
        assert not any(extra_marker.encode() in r.body for r in fake.requests)
        rejected = value(scrape(world), "wlm_rejected_total", reason="concurrency")
        assert rejected == rejected_before + 1
        rows.expect(
            "over the limit",
            request_id,
            status="error",
            http_status=429,
            client="bob",
            error_type=error["type"],
            error_code=error["code"],
        )
    finally:
        for sock in held:
            sock.close()
    for index in indexes:
        assert fake.wait_closed(index, timeout=5) is not None
    wait_for(lambda: value(scrape(world), "wlm_in_flight") == 0, 5, "the held requests to end")
    for _ in range(CONCURRENCY_LIMIT):
        assert bob.post("/v1/chat/completions", json=chat("gpt-4o-mini")).status_code == 200
    rows.verify(world.admin)
