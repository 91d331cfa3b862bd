"""The W3C trace context on the request path, in-process: what each kind of upstream gets
in ``traceparent`` with OTLP off (the client's, as it came) and on (wlm's span as the
parent), and the span the record carries."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from wlm.telemetry.spans import TracedRecord
from wlm.transport import MockResponse, UpstreamRequest

from .pipeline import FakeLocal, body, completion, drive, make_gateway

HELLO = [{"role": "user", "content": "hello"}]
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
CLIENT = [
    (b"traceparent", f"00-{TRACE}-{PARENT}-01".encode()),
    (b"tracestate", b"rojo=00f067aa0ba902b7"),
]
OTLP = {"WLM_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


def answer(request: UpstreamRequest) -> MockResponse:
    if request.url.endswith("/v1/messages"):
        return MockResponse.json(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-x",
                "content": [{"type": "text", "text": "hi"}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 5, "output_tokens": 2},
            }
        )
    return completion("hi")


async def send(model: str, env: dict[str, str], headers: Any) -> tuple[Any, Any, Any]:
    gateway, transport, sink = make_gateway(answer, env, local=FakeLocal())
    reply = await drive(gateway, body(model=model, messages=HELLO), headers=headers)
    assert reply.status == 200, reply.body
    (sent,) = transport.requests
    return sent, sink.only, msgspec.json.decode(sent.body or b"{}")


@pytest.mark.parametrize("model", ["gpt-4o", "claude-x", "tiny"])
async def test_with_otlp_off_the_client_trace_context_passes_as_it_came(model: str) -> None:
    sent, record, _ = await send(model, {}, CLIENT)
    assert sent.headers["traceparent"] == f"00-{TRACE}-{PARENT}-01"
    assert sent.headers["tracestate"] == "rojo=00f067aa0ba902b7"
    assert not isinstance(record, TracedRecord)


@pytest.mark.parametrize("model", ["gpt-4o", "claude-x", "tiny"])
async def test_with_otlp_on_the_upstream_gets_wlms_span_as_its_parent(model: str) -> None:
    sent, record, _ = await send(model, OTLP, CLIENT)
    assert isinstance(record, TracedRecord) and record.trace is not None
    trace = record.trace
    assert (f"{trace.trace_id:032x}", f"{trace.parent_id:016x}") == (TRACE, PARENT)
    assert sent.headers["traceparent"] == f"00-{TRACE}-{trace.span_id:016x}-01"
    assert sent.headers["tracestate"] == "rojo=00f067aa0ba902b7"


async def test_with_otlp_on_and_no_client_trace_wlm_starts_one() -> None:
    sent, record, _ = await send("gpt-4o", OTLP, [])
    assert isinstance(record, TracedRecord) and record.trace is not None
    assert record.trace.parent_id is None
    assert sent.headers["traceparent"] == record.trace.traceparent
    assert "tracestate" not in sent.headers


async def test_without_otlp_and_without_a_client_trace_nothing_is_added() -> None:
    sent, record, _ = await send("gpt-4o", {}, [])
    assert "traceparent" not in sent.headers
    assert type(record).__name__ == "RequestRecord"
