"""What the fault cases share: the keys, a recording HTTP transport, and small probes.

Every HTTP exchange of the suite goes through :class:`RecordingTransport`, which keeps
the response headers and every body byte the client read in a :class:`Ledger`; the
leak scan at the end reads them back, with the servers' logs and telemetry files.
The probes answer the three questions each case asks: what did the client see
(:func:`error_of` and :func:`anthropic_error_of` for the two error shapes,
:func:`data_events`, :func:`sse_events`), what did telemetry record
(:func:`telemetry_row`), and what was left running (:func:`upstream_sockets`,
:func:`all_gone`, :func:`index_of` with the fake's ``wait_closed``).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
from attrs import frozen

from tests.conftest import WlmServer, all_gone
from tests.fakes import FakeUpstream

__all__ = [
    "ANTHROPIC_ERROR_TYPES",
    "KEYS",
    "PROXIED_PATHS",
    "Keys",
    "Ledger",
    "RecordingTransport",
    "RowChecks",
    "all_gone",
    "anthropic_error",
    "anthropic_error_of",
    "chat",
    "data_events",
    "error_of",
    "index_of",
    "new_request_id",
    "server_processes",
    "sql_safe",
    "sse_events",
    "telemetry_row",
    "upstream_sockets",
    "wait_for",
]

PROXIED_PATHS = frozenset(
    f"{prefix}/{endpoint}"
    for prefix in ("/v1", "/api/v1")
    for endpoint in (
        "chat/completions",
        "completions",
        "embeddings",
        "messages",
        "messages/count_tokens",
        "responses",
    )
)
# Every error type of Anthropic's error table (what a Messages client may be sent).
ANTHROPIC_ERROR_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "api_error",
        "overloaded_error",
        "timeout_error",
    }
)


@frozen
class Keys:
    """Every secret the suite configures. None of them may ever leave a server."""

    alice: str  # a client key given in clear (WLM_API_KEYS=alice:<key>)
    bob: str  # a client key given as its SHA-256 (WLM_API_KEYS=bob:sha256:<hex>)
    admin: str
    openai: str
    openrouter: str
    anthropic: str

    @property
    def api_keys_env(self) -> str:
        digest = hashlib.sha256(self.bob.encode()).hexdigest()
        return f"alice:{self.alice},bob:sha256:{digest}"

    def all(self) -> tuple[str, ...]:
        return (self.alice, self.bob, self.admin, self.openai, self.openrouter, self.anthropic)


KEYS = Keys(
    alice="wlm-alice-4f1c9a7e2b6d8035c1e9",
    bob="wlm-bob-b3d7e1f9a2c4680e5d71",
    admin="wlm-admin-9e2a6c4f1d7b3e8a0c55",
    openai="sk-faults-openai-2d9f6b1e8c4a7035",
    openrouter="sk-or-v1-faults-openrouter-7a3c5e9b1d2f",
    anthropic="sk-ant-api03-faults-anthropic-6e8b0d2f4a1c",
)


class Ledger:
    """Everything the suite's clients saw, and every server it started (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.responses: list[tuple[str, bytes, bytearray]] = []  # (what, headers, body)
        self.proxied: Counter[int] = Counter()  # server port -> POSTs to proxied paths
        self.servers: list[WlmServer] = []
        self.statuses: Counter[int] = Counter()
        self.figures: dict[str, Any] = {}  # what the suite measured, for the report

    def register(self, server: WlmServer) -> WlmServer:
        with self._lock:
            self.servers.append(server)
        return server

    def request_sent(self, request: httpx.Request) -> None:
        if request.method == "POST" and request.url.path in PROXIED_PATHS:
            self.count_proxied(request.url.port or 80)

    def count_proxied(self, port: int) -> None:
        """One POST to a proxied endpoint of the server on ``port`` (one telemetry row due)."""
        with self._lock:
            self.proxied[port] += 1

    def response_started(self, request: httpx.Request, response: httpx.Response) -> bytearray:
        head = "\n".join(f"{k}: {v}" for k, v in response.headers.multi_items()).encode()
        body = bytearray()
        with self._lock:
            self.responses.append((f"{request.method} {request.url}", head, body))
            self.statuses[response.status_code] += 1
        return body


class _Tee(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, sink: bytearray) -> None:
        self._inner = inner
        self._sink = sink

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._sink.extend(chunk)
            yield chunk

    def close(self) -> None:
        self._inner.close()


class RecordingTransport(httpx.BaseTransport):
    """httpx's own transport, with every response's headers and read bytes kept in a ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self._inner = httpx.HTTPTransport()
        self._ledger = ledger

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._ledger.request_sent(request)
        response = self._inner.handle_request(request)
        sink = self._ledger.response_started(request, response)
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_Tee(response.stream, sink),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._inner.close()


# -- what the client saw -----------------------------------------------------------------


def new_request_id() -> str:
    return f"faults-{uuid.uuid4().hex}"


def sql_safe(text: str) -> bool:
    """True for ids made only of letters, digits, '-' and '_' (fit to quote into SQL)."""
    return bool(text) and text.replace("-", "").replace("_", "").isalnum()


def chat(model: str, *, stream: bool = False, marker: str | None = None, **extra: Any) -> dict:
    """A chat body whose message text is ``marker`` (to find the request at the fake)."""
    content = marker or uuid.uuid4().hex
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    if stream:
        body["stream"] = True
    return body


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The OpenAI error object of a non-200 answer; fails unless the shape is exact."""
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"], error
    return error


def anthropic_error(payload: Any) -> dict[str, Any]:
    """The ``error`` of an Anthropic error object (a body, or an ``event: error``'s data);
    fails unless the shape is exact: ``{"type": "error", "error": {"type", "message"}}``."""
    assert isinstance(payload, dict), payload
    assert set(payload) == {"type", "error"} and payload["type"] == "error", payload
    error = payload["error"]
    assert isinstance(error, dict) and set(error) == {"type", "message"}, error
    assert error["type"] in ANTHROPIC_ERROR_TYPES, error
    assert isinstance(error["message"], str) and error["message"], error
    return error


def anthropic_error_of(response: httpx.Response) -> dict[str, Any]:
    """The Anthropic error of a non-200 answer (a Messages client's); fails unless exact."""
    assert response.headers.get("content-type", "").startswith("application/json"), response
    return anthropic_error(response.json())


def data_events(text: str) -> list[Any]:
    """The JSON payloads of an SSE body's ``data:`` lines (``[DONE]`` kept as a string)."""
    events: list[Any] = []
    for line in text.splitlines():
        if line.startswith("data:"):
            payload = line.removeprefix("data:").strip()
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def sse_events(text: str) -> list[tuple[str | None, Any]]:
    """The ``(event name, JSON data)`` of each event of an SSE body that carries data
    (comments and keep-alives skipped; a data line that is not JSON kept as its text)."""
    events: list[tuple[str | None, Any]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                data.append(line.removeprefix("data:").removeprefix(" "))
        if not data:
            continue
        payload = "\n".join(data)
        try:
            events.append((name, json.loads(payload)))
        except ValueError:
            events.append((name, payload))
    return events


# -- what telemetry recorded ---------------------------------------------------------------


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate()`` until it returns something truthy; AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)  # polling a condition with a deadline, not a fixed wait


def telemetry_rows(admin: httpx.Client, where: str) -> list[dict[str, Any]]:
    """Rows of ``requests`` matching ``where``, through ``POST /api/sql`` (the admin API)."""
    response = admin.post("/api/sql", json={"sql": f"SELECT * FROM requests WHERE {where}"})
    assert response.status_code == 200, response.text
    payload = response.json()
    return [dict(zip(payload["columns"], row, strict=True)) for row in payload["rows"]]


def telemetry_row(admin: httpx.Client, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """The one ``requests`` row of ``request_id``, once the writer has flushed it."""
    assert sql_safe(request_id)  # it goes into SQL text
    rows = wait_for(
        lambda: telemetry_rows(admin, f"request_id = '{request_id}'"),
        timeout,
        f"the telemetry row of {request_id}",
    )
    assert len(rows) == 1, rows
    return rows[0]


class RowChecks:
    """Telemetry expectations that a module's cases collect and its last test checks at once.

    The writer flushes every 250 ms; waiting for each case's row in turn would spend
    most of the suite's time asleep. A value in ``expect`` may be a predicate.
    """

    def __init__(self) -> None:
        self.expected: dict[str, tuple[str, dict[str, Any]]] = {}

    def expect(self, case: str, request_id: str, **fields: Any) -> None:
        self.expected[request_id] = (case, fields)

    def verify(self, admin: httpx.Client, timeout: float = 10.0) -> int:
        """Assert every expected row is there once with its fields; the number checked."""
        ids = list(self.expected)
        assert all(sql_safe(i) for i in ids)  # they go into SQL text
        where = "request_id IN ({})".format(", ".join(f"'{i}'" for i in ids))

        def complete() -> list[dict[str, Any]] | None:
            rows = telemetry_rows(admin, where)
            return rows if len(rows) >= len(ids) else None

        rows = wait_for(complete, timeout, f"{len(ids)} telemetry rows")
        problems = []
        for request_id, (case, fields) in self.expected.items():
            found = [r for r in rows if r["request_id"] == request_id]
            if len(found) != 1:
                problems.append(f"{case}: {len(found)} rows")
                continue
            for name, want in fields.items():
                got = found[0][name]
                ok = want(got) if callable(want) else got == want
                if not ok:
                    problems.append(f"{case}: {name} = {got!r}, expected {want!r}")
        assert not problems, "\n".join(problems)
        return len(ids)


# -- what was left running ------------------------------------------------------------------


def server_processes(server: WlmServer) -> list[psutil.Process]:
    """wlm's main process and its children (the Granian worker, engines)."""
    assert server.process is not None
    main = psutil.Process(server.process.pid)
    return [main, *main.children(recursive=True)]


def upstream_sockets(server: WlmServer, fake: FakeUpstream) -> int:
    """Established TCP connections from wlm's processes to ``fake``."""
    count = 0
    for process in server_processes(server):
        try:
            connections = process.net_connections(kind="tcp")
        except psutil.Error:
            continue
        count += sum(
            1
            for c in connections
            if c.raddr and c.raddr.port == fake.port and c.status == psutil.CONN_ESTABLISHED
        )
    return count


def index_of(fake: FakeUpstream, marker: str, timeout: float = 5.0) -> int:
    """The index (for ``wait_closed``) of the request at ``fake`` whose body holds ``marker``."""
    needle = marker.encode()
    deadline = time.monotonic() + timeout
    while True:
        seen = list(fake.requests)
        for index, request in enumerate(seen):
            if needle in request.body:
                return index
        fake.wait_for_requests(len(seen) + 1, timeout=max(0.0, deadline - time.monotonic()))
