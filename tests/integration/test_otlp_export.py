"""OtlpSpans and OtlpSink in-process against a real OTLP/HTTP receiver on 127.0.0.1:
ids as chosen on the wire, bounded queues, one log line per outage, bounded shutdown."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from tests.conftest import free_port
from tests.fakes.otlp import OtlpReceiver
from tests.unit.telemetry.factory import make_record
from wlm.app import create_app
from wlm.config import OtlpConfig, load_settings
from wlm.redaction import Redactor
from wlm.telemetry.otlp import OtlpSink, OtlpSpans
from wlm.telemetry.spans import TracedRecord
from wlm.tracecontext import start_span


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(autouse=True)
def fast_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch processor exports every 50 ms, not every 5 s (the SDK reads this)."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")


@pytest.fixture
def wlm_log() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("wlm.otlp")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def spans_to(url: str, **kwargs: object) -> OtlpSpans:
    config = OtlpConfig(f"{url}/v1/traces", headers=(("x-token", "tok-secret-1"),), timeout_s=1)
    return OtlpSpans(config, Redactor(("tok-secret-1",)), interval_s=0.05, **kwargs)


def test_the_span_has_the_ids_the_request_sent_upstream() -> None:
    context, forwarded = start_span([("traceparent", f"00-{'a' * 32}-{'b' * 16}-01")])
    record = TracedRecord(**attrs.asdict(make_record(1), recurse=False), trace=context)
    with OtlpReceiver() as receiver:
        spans = spans_to(receiver.base_url)
        spans.start()
        assert spans.submit(record)
        spans.close(5)
        (span,) = receiver.spans
    assert (span.trace_id, span.parent_span_id) == ("a" * 32, "b" * 16)
    assert dict(forwarded)["traceparent"] == f"00-{'a' * 32}-{span.span_id}-01"
    assert span.headers["x-token"] == "tok-secret-1"
    assert spans.stats.exported == 1


def test_a_record_without_a_trace_is_a_root_span_of_its_own() -> None:
    with OtlpReceiver() as receiver:
        spans = spans_to(receiver.base_url)
        spans.start()
        spans.submit(make_record(1))
        spans.submit(make_record(2))
        spans.close(5)
    first, second = receiver.spans
    assert first.parent_span_id == second.parent_span_id == ""
    assert first.trace_id != second.trace_id


def test_a_receiver_that_is_down_costs_submit_nothing_and_is_logged_once(
    wlm_log: Lines,
) -> None:
    spans = spans_to(f"http://127.0.0.1:{free_port()}", queue_max=1000)
    spans.start()
    started = time.perf_counter()
    accepted = sum(spans.submit(make_record(i)) for i in range(5000))
    elapsed = time.perf_counter() - started
    assert elapsed < 0.05, f"5000 submits took {elapsed:.3f} s"
    assert accepted >= 1000  # the rest were dropped, and counted
    deadline = time.monotonic() + 10
    while not any("failed" in line for line in wlm_log.lines) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling for the exporter's first failed batch
    started = time.perf_counter()
    spans.close(2)
    assert time.perf_counter() - started < 3  # not the SDK's 30 s shutdown wait
    failures = [line for line in wlm_log.lines if "OTLP export to" in line]
    assert len(failures) == 1, wlm_log.lines
    assert "failed (" in failures[0]  # with the SDK's reason
    queue_full = [line for line in wlm_log.lines if "queue is full" in line]
    assert len(queue_full) == 1
    assert spans.stats.dropped >= 4000
    assert "tok-secret-1" not in "\n".join(wlm_log.lines)


def test_an_outage_logs_when_it_starts_and_when_it_ends(wlm_log: Lines) -> None:
    with OtlpReceiver(status=503) as receiver:
        spans = spans_to(receiver.base_url)
        spans.start()
        spans.submit(make_record(1))
        deadline = time.monotonic() + 10
        while not any("failed" in line for line in wlm_log.lines) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling for the failure
        receiver.status = 200
        spans.submit(make_record(2))
        spans.close(5)
        assert [s.attributes["wlm.record_id"] for s in receiver.spans] == ["req-000002"]
    lines = [line for line in wlm_log.lines if "OTLP export to" in line]
    assert len(lines) == 2 and "failed" in lines[0] and "works again" in lines[1], lines


def test_the_app_wraps_its_store_when_otlp_is_set(tmp_path: Path) -> None:
    env = {"WLM_DATA_DIR": str(tmp_path), "WLM_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    app = create_app(load_settings(env), local=None)
    sink = app.state.gateway.telemetry
    assert isinstance(sink, OtlpSink)
    assert isinstance(sink.spans, OtlpSpans)
    plain = create_app(load_settings({"WLM_DATA_DIR": str(tmp_path)}), local=None)
    assert not isinstance(plain.state.gateway.telemetry, OtlpSink)
    assert (
        create_app(load_settings(env), local=None, telemetry=None).state.gateway.telemetry is None
    )


def test_the_sink_passes_everything_but_spans_to_its_store() -> None:
    class Store:
        path = "store-path"  # something beyond the protocol

        def __init__(self) -> None:
            self.submitted: list[object] = []

        def submit(self, record: object, conversation: object, attempts: object) -> bool:
            self.submitted.append(record)
            return False  # the store refused: the sink says so too

    spans = spans_to("http://127.0.0.1:9")
    store = Store()
    sink = OtlpSink(store, spans)  # type: ignore[arg-type]
    record = make_record(1)
    assert sink.submit(record) is False
    assert store.submitted == [record]
    assert sink.path == "store-path"
    assert len(spans._queue) == 1
