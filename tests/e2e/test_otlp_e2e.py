"""OpenTelemetry out through a real `wlm serve`: spans at a real OTLP/HTTP receiver.

`wlm serve` runs with the OpenAI and Anthropic fakes and ``WLM_OTLP_ENDPOINT`` pointing
at :class:`tests.fakes.otlp.OtlpReceiver`, which decodes the exporter's protobuf with
opentelemetry-proto's classes. Each test sends requests the way a client does and finds
their spans by the ``x-request-id`` it chose: a chat stream and a non-stream, a Messages
request, an upstream error, a retried request, a client ``traceparent`` (the span is its
child, and the upstream got wlm's span as the parent). Then: no key in any span or log,
the OTLP headers' token not on /settings, and a receiver that is down or slow does not
slow or fail a request.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import WlmServer, free_port
from tests.e2e.e2e_helpers import ask, new_marker, upstream_call
from tests.fakes import DEFAULT_KEYS, FakeUpstream, serve_fake
from tests.fakes.otlp import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.e2e

CLIENT_KEY = "sk-client-otlp-e2e-0123456789"
OTLP_TOKEN = "otlp-token-e2e-5f1c9a7d3b"
SERVER_KIND = 2  # the proto's SPAN_KIND_SERVER
STATUS_ERROR = 2
USAGE = (11, 7)  # what every fake reports: prompt, completion
# Spans leave within a fraction of a second: wlm's thread wakes every 200 ms, and the
# batch processor exports every OTEL_BSP_SCHEDULE_DELAY ms (5 s by default).
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100"}


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeUpstream]]:
    generators = {flavor: serve_fake(flavor) for flavor in ("openai", "anthropic")}
    yield {flavor: next(generator) for flavor, generator in generators.items()}
    for generator in generators.values():
        generator.close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


def _env(fakes: dict[str, FakeUpstream], **extra: str) -> dict[str, str]:
    return {
        "OPENAI_API_KEY": fakes["openai"].api_key or "",
        "OPENAI_BASE_URL": fakes["openai"].base_url,
        "ANTHROPIC_API_KEY": fakes["anthropic"].api_key or "",
        "ANTHROPIC_BASE_URL": fakes["anthropic"].base_url,
        "WLM_ROUTES": "claude-*=anthropic,gpt-*=openai",
        "WLM_ALIASES": "err-400=openai/error:400,flaky-503=openai/flaky:1-503:otlp-e2e",
        "WLM_API_KEYS": f"e2e:{CLIENT_KEY}",
        "WLM_RETRY_MAX_WAIT_S": "1",
        **FAST_EXPORT,
        **extra,
    }


def _workdir(factory: pytest.TempPathFactory, name: str) -> Path:
    workdir = factory.mktemp(name)
    (workdir / "models").mkdir()
    return workdir


@pytest.fixture(scope="module")
def wlm(
    fakes: dict[str, FakeUpstream],
    receiver: OtlpReceiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WlmServer]:
    env = _env(
        fakes,
        WLM_OTLP_ENDPOINT=receiver.base_url,
        OTEL_EXPORTER_OTLP_HEADERS=f"authorization=Bearer%20{OTLP_TOKEN}",
        OTEL_SERVICE_NAME="wlm-otlp-e2e",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment=e2e",
    )
    server = WlmServer(env, _workdir(tmp_path_factory, "wlm-otlp")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(wlm: WlmServer) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    with httpx.Client(base_url=wlm.base_url, headers=headers, timeout=30) as client:
        yield client


def chat(
    http: httpx.Client, model: str, marker: str, *, stream: bool = False, **headers: str
) -> tuple[str, httpx.Response]:
    """POST a chat request tagged with its own x-request-id; (that id, the response)."""
    request_id = f"otlp-{uuid.uuid4().hex}"
    body: dict[str, Any] = {"model": model, "messages": ask(marker), "stream": stream}
    response = http.post(
        "/v1/chat/completions", json=body, headers={"x-request-id": request_id, **headers}
    )
    return request_id, response


def span_of(receiver: OtlpReceiver, request_id: str) -> ReceivedSpan:
    return receiver.wait_for(lambda s: s.attributes.get("wlm.request_id") == request_id)


def check_times(span: ReceivedSpan, sent_at: float, answered_at: float) -> None:
    """The span's own start and end (not its export time), within the client's view."""
    assert sent_at * 1e9 - 0.5e9 <= span.start_ns <= span.end_ns <= answered_at * 1e9 + 0.5e9
    latency_ms = span.attributes["wlm.latency_ms"]
    assert abs((span.end_ns - span.start_ns) / 1e6 - latency_ms) < 1.0


@pytest.mark.parametrize("stream", [False, True])
def test_a_chat_request_is_one_span_with_the_genai_attributes(
    http: httpx.Client, receiver: OtlpReceiver, fakes: dict[str, FakeUpstream], stream: bool
) -> None:
    marker = new_marker()
    sent_at = time.time()
    request_id, response = chat(http, "gpt-4o-mini", marker, stream=stream)
    answered_at = time.time()
    assert response.status_code == 200
    span = span_of(receiver, request_id)
    a = span.attributes
    assert span.name == "chat gpt-4o-mini"
    assert span.kind == SERVER_KIND
    assert span.scope == "wlm"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == a["gen_ai.system"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.response.model"].startswith("gpt-4o-mini")
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == USAGE
    assert a["gen_ai.request.stream"] is stream
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["wlm.provider"] == "openai"
    assert a["wlm.endpoint"] == "chat/completions"
    assert a["wlm.status"] == "ok"
    assert a["wlm.http_status"] == a["http.response.status_code"] == 200
    assert a["wlm.attempts"] == 1
    assert a["wlm.client"] == "e2e"
    assert a["wlm.cost_usd"] > 0  # priced from the usage
    assert a["wlm.ttft_ms"] > 0
    assert a["gen_ai.response.time_to_first_chunk"] == pytest.approx(a["wlm.ttft_ms"] / 1000)
    assert span.status_code == 0
    assert span.parent_span_id == ""  # no traceparent came: a trace of its own
    check_times(span, sent_at, answered_at)
    assert span.resource["service.name"] == "wlm-otlp-e2e"
    assert span.resource["deployment.environment"] == "e2e"
    assert span.headers["authorization"] == f"Bearer {OTLP_TOKEN}"
    # The upstream got a traceparent of the same trace, wlm's span as its parent.
    _, upstream = upstream_call(fakes["openai"], marker, path="/v1/chat/completions")
    assert upstream.headers["traceparent"] == f"00-{span.trace_id}-{span.span_id}-01"


def test_a_messages_request_is_a_span_too(
    http: httpx.Client, receiver: OtlpReceiver, fakes: dict[str, FakeUpstream]
) -> None:
    marker = new_marker()
    request_id = f"otlp-{uuid.uuid4().hex}"
    response = http.post(
        "/v1/messages",
        json={"model": "claude-haiku-4-5", "max_tokens": 64, "messages": ask(marker)},
        headers={"x-request-id": request_id, "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 200, response.text
    a = span_of(receiver, request_id).attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == a["gen_ai.system"] == "anthropic"
    assert a["gen_ai.request.model"] == "claude-haiku-4-5"
    assert a["gen_ai.usage.output_tokens"] > 0
    assert a["wlm.endpoint"] == "messages"
    assert a["wlm.upstream_endpoint"] == "messages"
    assert a["wlm.provider"] == "anthropic"
    assert a["wlm.status"] == "ok"
    assert "wlm.cost_usd" in a


def test_an_upstream_error_is_an_error_span(http: httpx.Client, receiver: OtlpReceiver) -> None:
    request_id, response = chat(http, "err-400", new_marker())
    assert response.status_code == 400
    span = span_of(receiver, request_id)
    a = span.attributes
    assert span.status_code == STATUS_ERROR
    assert span.status_message
    assert a["wlm.status"] == "error"
    assert a["http.response.status_code"] == 400
    assert a["error.type"] == a.get("wlm.error_code", a.get("wlm.error_type"))
    assert a["gen_ai.request.model"] == "err-400"
    assert "gen_ai.usage.input_tokens" not in a  # unknown, not a made-up 0


def test_a_retried_request_has_its_attempts_as_events(
    http: httpx.Client, receiver: OtlpReceiver
) -> None:
    request_id, response = chat(http, "flaky-503", new_marker())
    assert response.status_code == 200
    span = span_of(receiver, request_id)
    assert span.attributes["wlm.attempts"] == 2
    tries = [attributes for name, _, attributes in span.events if name == "wlm.attempt"]
    assert [t["wlm.attempt.number"] for t in tries] == [1, 2]
    assert tries[0]["http.response.status_code"] == 503
    assert tries[0]["wlm.attempt.moved_on"] == "retry"
    assert all(span.start_ns <= t <= span.end_ns for _, t, _ in span.events)


@pytest.mark.parametrize(
    ("flavor", "path"), [("openai", "/v1/chat/completions"), ("anthropic", "/v1/messages")]
)
def test_a_client_traceparent_is_the_parent_and_goes_upstream(
    http: httpx.Client,
    receiver: OtlpReceiver,
    fakes: dict[str, FakeUpstream],
    flavor: str,
    path: str,
) -> None:
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    headers = {"traceparent": f"00-{trace_id}-{parent_id}-01", "tracestate": "vendor=abc"}
    marker = new_marker()
    model = "gpt-4o-mini" if flavor == "openai" else "claude-haiku-4-5"
    request_id, response = chat(http, model, marker, **headers)
    assert response.status_code == 200
    span = span_of(receiver, request_id)
    assert (span.trace_id, span.parent_span_id) == (trace_id, parent_id)
    assert span.span_id != parent_id
    _, upstream = upstream_call(fakes[flavor], marker, path=path)
    assert upstream.headers["traceparent"] == f"00-{trace_id}-{span.span_id}-01"
    assert upstream.headers["tracestate"] == "vendor=abc"


def test_an_unsampled_client_trace_exports_no_span_but_still_propagates(
    http: httpx.Client, receiver: OtlpReceiver, fakes: dict[str, FakeUpstream]
) -> None:
    trace_id = uuid.uuid4().hex
    marker = new_marker()
    request_id, response = chat(
        http, "gpt-4o-mini", marker, traceparent=f"00-{trace_id}-{'1' * 16}-00"
    )
    assert response.status_code == 200
    _, upstream = upstream_call(fakes["openai"], marker, path="/v1/chat/completions")
    assert upstream.headers["traceparent"].startswith(f"00-{trace_id}-")
    assert upstream.headers["traceparent"].endswith("-00")
    # A later request's span arrives; the unsampled one never does.
    later, _ = chat(http, "gpt-4o-mini", new_marker())
    span_of(receiver, later)
    assert not [s for s in receiver.spans if s.attributes.get("wlm.request_id") == request_id]


def test_no_key_leaves_in_a_span_and_the_otlp_token_stays_off_pages_and_logs(
    http: httpx.Client, receiver: OtlpReceiver, wlm: WlmServer
) -> None:
    # A key pasted where the model goes: the span says [redacted], as the row does.
    request_id, _ = chat(http, f"gpt-{DEFAULT_KEYS['openai']}", new_marker())
    assert span_of(receiver, request_id).attributes["gen_ai.request.model"] == "gpt-[redacted]"
    chat(http, "gpt-4o-mini", new_marker())
    keys = [CLIENT_KEY, *DEFAULT_KEYS.values(), OTLP_TOKEN]
    for span in list(receiver.spans):
        shown = repr((span.name, span.attributes, span.events, span.status_message))
        assert not [k for k in keys if k in shown], span
    admin = httpx.get(f"{wlm.base_url}/settings.json", headers=http.headers, timeout=10)
    assert admin.status_code == 200
    assert admin.json()["otlp"]["endpoint"] == f"{receiver.base_url}/v1/traces"
    assert admin.json()["otlp"]["headers"] == "set"
    page = httpx.get(f"{wlm.base_url}/settings", headers=http.headers, timeout=10).text
    metrics = httpx.get(f"{wlm.base_url}/metrics", headers=http.headers, timeout=10).text
    exported = [line for line in metrics.splitlines() if line.startswith("wlm_otlp_spans_exp")]
    assert exported and float(exported[0].split()[-1]) > 0
    assert receiver.base_url in page
    for text in (admin.text, page, wlm.log()):
        assert OTLP_TOKEN not in text
        assert CLIENT_KEY not in text


@pytest.mark.parametrize("receiver_state", ["down", "slow"])
def test_a_receiver_down_or_slow_never_slows_or_fails_a_request(
    fakes: dict[str, FakeUpstream],
    tmp_path_factory: pytest.TempPathFactory,
    receiver_state: str,
) -> None:
    slow = OtlpReceiver(delay_s=5.0).start() if receiver_state == "slow" else None
    endpoint = slow.base_url if slow else f"http://127.0.0.1:{free_port()}"  # nobody there
    env = _env(fakes, WLM_OTLP_ENDPOINT=endpoint, OTEL_EXPORTER_OTLP_TIMEOUT="2")
    server = WlmServer(env, _workdir(tmp_path_factory, f"wlm-otlp-{receiver_state}")).start()
    try:
        headers = {"authorization": f"Bearer {CLIENT_KEY}"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=10) as client:
            slowest = 0.0
            for index in range(30):
                started = time.monotonic()
                _, response = chat(client, "gpt-4o-mini", new_marker(), stream=index % 2 == 1)
                slowest = max(slowest, time.monotonic() - started)
                assert response.status_code == 200
                time.sleep(0.1)  # spread over several export batches
        # Waiting on an export would take the exporter's 2 s timeout (or the 5 s delay).
        assert slowest < 1.5, f"a request took {slowest:.2f} s"
        deadline = time.monotonic() + 10
        while "OTLP export to" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)  # polling the log for the exporter's first failure
        failures = [line for line in server.log().splitlines() if "OTLP export to" in line]
        assert len(failures) == 1, failures  # logged once, not per batch
        assert "Traceback" not in server.log()
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 15  # shutdown does not wait on the receiver
    finally:
        server.stop()
        if slow is not None:
            slow.stop()
