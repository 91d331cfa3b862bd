"""A fake OpenTelemetry collector: a real OTLP/HTTP receiver on 127.0.0.1.

It accepts ``POST /v1/traces`` with ``application/x-protobuf`` (gzip or deflate too),
decodes the body with opentelemetry-proto's own ``ExportTraceServiceRequest`` and keeps
every span, flattened into a :class:`ReceivedSpan`, with the headers of the request that
brought it. ``delay_s`` makes it a slow receiver; ``status`` a failing one.

    with OtlpReceiver() as receiver:
        ... WLM_OTLP_ENDPOINT=receiver.base_url ...
        span = receiver.wait_for(lambda s: s.attributes.get("wlm.request_id") == rid)
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from attrs import frozen
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = ["OtlpReceiver", "ReceivedSpan"]


@frozen
class ReceivedSpan:
    """One span as the receiver decoded it (ids as lowercase hex, attributes as Python)."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    kind: int  # the proto enum: 2 is SPAN_KIND_SERVER
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[tuple[str, int, dict[str, Any]]]  # name, time, attributes
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    resource: dict[str, Any]
    scope: str
    headers: dict[str, str]  # of the export request that carried it, names lowercase


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


def decode_spans(body: bytes, headers: dict[str, str]) -> list[ReceivedSpan]:
    """The spans of one export request's (decompressed) protobuf body."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        kind=span.kind,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes=_attributes(span.attributes),
                        events=[
                            (e.name, e.time_unix_nano, _attributes(e.attributes))
                            for e in span.events
                        ],
                        status_code=span.status.code,
                        status_message=span.status.message,
                        resource=resource,
                        scope=scope_spans.scope.name,
                        headers=headers,
                    )
                )
    return spans


class OtlpReceiver:
    """An OTLP/HTTP traces receiver in a thread; ``spans`` grows as exports arrive."""

    def __init__(self, *, delay_s: float = 0.0, status: int = 200) -> None:
        self.delay_s = delay_s
        self.status = status
        self.spans: list[ReceivedSpan] = []
        self.exports = 0  # POSTs received, accepted or not
        self.rejected: list[str] = []  # why a POST was refused (wrong path, type, body)
        self._lock = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """The collector's base URL, as WLM_OTLP_ENDPOINT takes it (no /v1/traces)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def wait_for(
        self, match: Callable[[ReceivedSpan], bool], timeout: float = 15.0
    ) -> ReceivedSpan:
        """The first span ``match`` accepts, once it has arrived (TimeoutError if never)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for span in self.spans:
                    if match(span):
                        return span
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching span among {len(self.spans)} received")
                self._lock.wait(remaining)

    def _received(self, spans: list[ReceivedSpan]) -> None:
        with self._lock:
            self.spans.extend(spans)
            self._lock.notify_all()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the exporter gave up waiting (a slow receiver's test)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    receiver.exports += 1
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)  # a slow collector
                if self.path != "/v1/traces":
                    receiver.rejected.append(f"path {self.path}")
                    self._answer(404, b"not found", "text/plain")
                    return
                if headers.get("content-type") != "application/x-protobuf":
                    receiver.rejected.append(f"content-type {headers.get('content-type')}")
                    self._answer(415, b"unsupported media type", "text/plain")
                    return
                if receiver.status != 200:
                    self._answer(receiver.status, b"refused", "text/plain")
                    return
                encoding = headers.get("content-encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                try:
                    spans = decode_spans(body, headers)
                except Exception as exc:
                    receiver.rejected.append(f"body {exc!r}")
                    self._answer(400, b"bad protobuf", "text/plain")
                    return
                receiver._received(spans)
                reply = ExportTraceServiceResponse().SerializeToString()
                self._answer(200, reply, "application/x-protobuf")

        return Handler
