"""OpenTelemetry out: a span per request, exported over OTLP/HTTP, never on the request path.

:class:`OtlpSink` is a :class:`~wlm.telemetry.sink.TelemetrySink` that hands every
request's records to another sink (the DuckDB or PostgreSQL store) and to
:class:`OtlpSpans`. ``OtlpSpans.submit`` appends to a bounded deque and returns (no lock,
no I/O); its own thread turns the records into spans (:mod:`wlm.telemetry.spans`) with
their real start and end times and ends them into the SDK's ``BatchSpanProcessor``,
whose thread exports them in batches with ``OTLPSpanExporter``.

Each app owns its ``TracerProvider`` (none is installed globally) and shuts it down
with the app. A receiver that is down or slow costs the requests nothing: the
processor's queue fills and drops, the exporter's retries end at its timeout, and wlm
logs one line when exports start failing and one when they work again (the SDK's own
per-batch complaints are kept off the log). The span's id is the one the request sent
upstream in ``traceparent`` (:mod:`wlm.tracecontext`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode

from wlm.config import OtlpConfig
from wlm.redaction import Redactor
from wlm.telemetry.records import (
    AttemptRecord,
    BoxSampleRecord,
    ConversationRecord,
    EngineEventRecord,
    RequestRecord,
)
from wlm.telemetry.sink import TelemetrySink
from wlm.telemetry.spans import (
    AttributeValue,
    TracedRecord,
    attempt_events,
    span_attributes,
    span_name,
    span_status,
    to_nanos,
)

if TYPE_CHECKING:
    from wlm.telemetry.writer import WriterStats

__all__ = ["OtlpSink", "OtlpSpans", "OtlpStats"]

log = logging.getLogger("wlm.otlp")

T = TypeVar("T")

_COMPRESSION = {
    "none": Compression.NoCompression,
    "gzip": Compression.Gzip,
    "deflate": Compression.Deflate,
}
_SCOPE = "wlm"
# The SDK's loggers: their lines are summarised by wlm's (see _Muffle).
_SDK_LOGGER = "opentelemetry"
_DROP_LOG_EVERY_S = 60.0


def _wlm_version() -> str:
    try:
        return version("wlm")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "unknown"


class OtlpStats:
    """Counters of the span export, read by /metrics and tests (plain ints, racy reads)."""

    __slots__ = ("dropped", "exported", "failed_batches", "queued_max")

    def __init__(self) -> None:
        self.exported = 0  # spans the receiver took
        self.dropped = 0  # spans refused by submit (queue full) or in failed batches
        self.failed_batches = 0
        self.queued_max = 0


class _ChosenIds(IdGenerator):
    """The ids wlm drew when the request came in, for the one thread that builds spans:
    the next span gets ``span_id`` (and ``trace_id`` when it starts a trace)."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self.trace_id = 0
        self.span_id = 0

    def generate_span_id(self) -> int:
        return self.span_id or self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        return self.trace_id or self._random.generate_trace_id()

    def is_trace_id_random(self) -> bool:
        return True


class _Muffle(logging.Handler):
    """Takes the SDK's log lines (each retry, each failed batch, each span a full queue
    drops) instead of letting them reach stderr one by one: keeps the first since
    :meth:`take` for wlm's own one line, and counts the drops."""

    def __init__(self, stats: OtlpStats) -> None:
        super().__init__(logging.WARNING)
        self._stats = stats
        self.first: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a malformed SDK message must not break export
            return
        if message.startswith("Queue full"):
            self._stats.dropped += 1
        elif self.first is None:
            self.first = message

    def take(self) -> str | None:
        first, self.first = self.first, None
        return first


class _Reporting(SpanExporter):
    """The OTLP exporter, with one log line when exports start failing and one when they
    work again, and counters."""

    def __init__(
        self,
        exporter: SpanExporter,
        endpoint: str,
        stats: OtlpStats,
        muffle: _Muffle,
        redact: Callable[[str], str],
    ) -> None:
        self._exporter = exporter
        self._endpoint = endpoint
        self._stats = stats
        self._muffle = muffle
        self._redact = redact
        self.failing = False
        self._dropped_at_failure = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._exporter.export(spans)
        except Exception as exc:  # the SDK catches its own; anything else counts as failed
            self._muffle.first = self._muffle.first or repr(exc)
            result = SpanExportResult.FAILURE
        stats = self._stats
        if result is SpanExportResult.SUCCESS:
            stats.exported += len(spans)
            self._muffle.take()
            if self.failing:
                self.failing = False
                log.info(
                    "OTLP export to %s works again (%d spans dropped meanwhile)",
                    self._endpoint,
                    stats.dropped - self._dropped_at_failure,
                )
            return result
        stats.failed_batches += 1
        if not self.failing:
            self.failing = True
            self._dropped_at_failure = stats.dropped
            reason = self._redact(self._muffle.take() or "no reason given")
            log.warning(
                "OTLP export to %s failed (%s); spans are dropped while it fails, requests "
                "are not affected; wlm logs again when it works",
                self._endpoint,
                reason,
            )
        stats.dropped += len(spans)
        return result

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


class OtlpSpans:
    """Turns finished requests' records into spans and exports them, off the request path.

    Usage (wrapped around a store by :class:`OtlpSink`, in the app's lifespan)::

        spans = OtlpSpans(settings.otlp, redactor)
        spans.start()
        spans.submit(record, attempts)        # on the request path: a deque append
        await spans.aclose()                  # the last spans out, the provider shut down
    """

    def __init__(
        self,
        config: OtlpConfig,
        redactor: Redactor,
        *,
        queue_max: int = 10_000,
        interval_s: float = 0.2,
        exporter: SpanExporter | None = None,
    ) -> None:
        self.config = config
        self.stats = OtlpStats()
        self._redactor = redactor
        self._queue: deque[tuple[RequestRecord, Sequence[AttemptRecord]]] = deque()
        self._queue_max = queue_max
        self._interval_s = interval_s
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._drop_logged_at = float("-inf")
        self._ids = _ChosenIds()
        self._muffle = _Muffle(self.stats)
        self._endpoint = config.shown_endpoint
        self._exporter = exporter
        self._provider: TracerProvider | None = None
        self._tracer: trace_api.Tracer | None = None
        self._reporting: _Reporting | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Build the provider (resource, exporter, batch processor) and start the thread."""
        if self._thread is not None:
            raise RuntimeError("OtlpSpans.start() called twice")
        config = self.config
        attributes: dict[str, str] = dict(config.resource_attributes)
        attributes[SERVICE_NAME] = config.service_name
        attributes.setdefault(SERVICE_VERSION, _wlm_version())
        exporter = self._exporter or OTLPSpanExporter(
            endpoint=config.endpoint,
            headers=dict(config.headers),
            timeout=config.timeout_s,
            compression=_COMPRESSION[config.compression],
        )
        logging.getLogger(_SDK_LOGGER).addHandler(self._muffle)
        self._reporting = _Reporting(
            exporter, self._endpoint, self.stats, self._muffle, self._redactor.text
        )
        # Resource.create also reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME from
        # the process environment; wlm's settings (the .env file too) win.
        provider = TracerProvider(
            resource=Resource.create(attributes),
            id_generator=self._ids,
            shutdown_on_exit=False,  # the app shuts it down, not an atexit hook
        )
        provider.add_span_processor(BatchSpanProcessor(self._reporting))
        self._provider = provider
        self._tracer = provider.get_tracer(_SCOPE, _wlm_version())
        self._thread = threading.Thread(target=self._run, name="wlm-otlp-spans", daemon=True)
        self._thread.start()
        log.info("exporting a span per request to %s (OTLP/HTTP)", self._endpoint)

    def submit(self, record: RequestRecord, attempts: Sequence[AttemptRecord] = ()) -> bool:
        """Queue one request's records for its span; never blocks. False when full."""
        queue = self._queue
        if self._stopping or len(queue) >= self._queue_max:
            self.stats.dropped += 1
            now = time.monotonic()
            if now - self._drop_logged_at >= _DROP_LOG_EVERY_S:
                self._drop_logged_at = now
                log.warning("OTLP: the span queue is full (%d); spans are dropped", len(queue))
            return False
        queue.append((record, attempts))
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Span the records still queued, export what the receiver takes within
        ``timeout_s``, shut the provider down. Never waits longer than that."""
        deadline = time.monotonic() + timeout_s
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        provider = self._provider
        if provider is None:
            return
        # BatchSpanProcessor.shutdown waits up to 30 s for a receiver that is down:
        # give it what is left of ours in a thread of its own, and let it go after that.
        done = threading.Event()

        def shut() -> None:
            try:
                provider.shutdown()
            finally:
                logging.getLogger(_SDK_LOGGER).removeHandler(self._muffle)
                done.set()

        threading.Thread(target=shut, name="wlm-otlp-shutdown", daemon=True).start()
        if not done.wait(max(0.0, deadline - time.monotonic())):
            if self._reporting is not None:
                self._reporting.shutdown()  # ends the exporter's retries at once
            log.warning("OTLP: spans still unexported at shutdown were dropped")

    async def aclose(self, timeout_s: float = 5.0) -> None:
        await asyncio.to_thread(self.close, timeout_s)

    # -- the thread ------------------------------------------------------------

    def _run(self) -> None:
        queue = self._queue
        while True:
            stopping = self._stopping
            while queue:
                record, attempts = queue.popleft()
                try:
                    self._span(record, attempts)
                except Exception:  # one bad record must not stop the others
                    self.stats.dropped += 1
                    log.exception("OTLP: no span for request %s", record.id)
            if stopping:
                return
            self._wake.wait(self._interval_s)

    def _span(self, record: RequestRecord, attempts: Sequence[AttemptRecord]) -> None:
        """End one span for ``record`` into the batch processor (this thread only)."""
        tracer = self._tracer
        assert tracer is not None
        trace = record.trace if isinstance(record, TracedRecord) else None
        ids = self._ids
        context = None
        if trace is not None:
            ids.span_id = trace.span_id
            ids.trace_id = trace.trace_id
            if trace.parent_id is not None:
                parent = trace_api.SpanContext(
                    trace.trace_id,
                    trace.parent_id,
                    is_remote=True,
                    trace_flags=trace_api.TraceFlags(
                        trace_api.TraceFlags.SAMPLED if trace.sampled else 0
                    ),
                    trace_state=trace_api.TraceState.from_header([trace.state])
                    if trace.state
                    else None,
                )
                context = trace_api.set_span_in_context(trace_api.NonRecordingSpan(parent))
        else:  # a request refused before its headers were read for a trace: a new one
            ids.span_id = ids.trace_id = 0
        start = to_nanos(record.started_at)
        if record.latency_ms is not None:
            end = start + int(record.latency_ms * 1_000_000)
        else:
            end = max(start, to_nanos(record.ended_at))
        span = tracer.start_span(
            span_name(record),
            context=context,
            kind=SpanKind.SERVER,
            attributes=self._redacted(span_attributes(record)),
            start_time=start,
        )
        for event in attempt_events(attempts):
            span.add_event(event.name, self._redacted(event.attributes), event.timestamp_ns)
        failed, description = span_status(record)
        if failed:
            span.set_status(Status(StatusCode.ERROR, description))
        span.end(end_time=end)

    def _redacted(self, attributes: dict[str, AttributeValue]) -> dict[str, AttributeValue]:
        """Every text through the redactor once more: no key leaves in an attribute."""
        text = self._redactor.text
        return {k: text(v) if isinstance(v, str) else v for k, v in attributes.items()}


class OtlpSink:
    """A :class:`TelemetrySink` that stores through ``inner`` and exports spans.

    Everything but ``submit`` (which goes to both), ``start`` and ``aclose`` is
    ``inner``'s.
    """

    def __init__(self, inner: TelemetrySink, spans: OtlpSpans) -> None:
        self.inner = inner
        self.spans = spans

    @property
    def durable(self) -> bool:
        return self.inner.durable

    def start(self) -> None:
        self.inner.start()
        self.spans.start()

    async def aclose(self, timeout_s: float = 10.0) -> None:
        await asyncio.gather(self.inner.aclose(timeout_s), self.spans.aclose(min(timeout_s, 5.0)))

    def submit(
        self,
        record: RequestRecord,
        conversation: ConversationRecord | None = None,
        attempts: Sequence[AttemptRecord] = (),
    ) -> bool:
        accepted = self.inner.submit(record, conversation, attempts)
        self.spans.submit(record, attempts)
        return accepted

    def submit_box(self, rows: Sequence[BoxSampleRecord]) -> bool:
        return self.inner.submit_box(rows)

    def submit_event(self, record: EngineEventRecord) -> bool:
        return self.inner.submit_event(record)

    def flush(self, timeout_s: float = 10.0) -> bool:
        return self.inner.flush(timeout_s)

    def stats(self) -> WriterStats:
        return self.inner.stats()

    async def read(self, fn: Callable[[Any], T]) -> T:
        return await self.inner.read(fn)

    async def query(
        self,
        sql: str,
        params: Sequence[Any] | dict[str, Any] | None = None,
        *,
        max_rows: int = 10_000,
        timeout_s: float = 10.0,
    ) -> Any:
        return await self.inner.query(sql, params, max_rows=max_rows, timeout_s=timeout_s)

    def __getattr__(self, name: str) -> Any:
        # What a store offers beyond the protocol (its path, its health) stays reachable.
        if name in ("inner", "spans"):  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)
