"""W3C trace context (``traceparent``, ``tracestate``) for the span wlm makes of a request.

Pure and cheap: the request path calls :func:`start_span` only when spans are exported
(OTLP is configured). It reads the client's ``traceparent`` among the headers the proxy
forwards, draws this request's span id (8 random bytes), and returns the headers with
the ``traceparent`` rewritten so the upstream's span nests under wlm's. With OTLP off,
wlm makes no span and passes the client's ``traceparent`` on as it came.

The header's grammar (https://www.w3.org/TR/trace-context/#traceparent-header)::

    traceparent: 00-<trace-id: 32 hex>-<parent-id: 16 hex>-<flags: 2 hex>

All-zero ids are invalid, as is version ``ff``; a later version may add fields after
the flags. An invalid ``traceparent`` is ignored (the span starts a new trace) and its
``tracestate`` with it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from attrs import frozen

__all__ = ["TRACE_HEADERS", "TraceContext", "parse_traceparent", "start_span"]

# The client headers of the W3C trace context, passed upstream (rewritten when wlm
# makes a span).
TRACE_HEADERS = ("traceparent", "tracestate")

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_SAMPLED = 0x01

# The Mersenne Twister, as the OpenTelemetry SDK's RandomIdGenerator uses: ids must be
# unique, not secret, and a call costs a fraction of os.urandom's system call.
_bits = random.getrandbits


@frozen
class TraceContext:
    """One request's span: its trace, its own id, and the client's span as its parent.

    ``parent_id`` is None when the client sent no (valid) ``traceparent``: the span is
    then the root of a new trace. ``state`` is the client's ``tracestate``, passed on
    unchanged.
    """

    trace_id: int  # 128 bits, never 0
    span_id: int  # 64 bits, never 0: wlm's span, the upstream call's parent
    parent_id: int | None = None
    sampled: bool = True
    state: str | None = None

    @property
    def traceparent(self) -> str:
        """The ``traceparent`` the upstream gets: this trace, wlm's span as the parent."""
        flags = "01" if self.sampled else "00"
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{flags}"


def parse_traceparent(value: str) -> tuple[int, int, int] | None:
    """``(trace_id, parent_id, flags)`` of a ``traceparent`` value; None when invalid."""
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_hex, parent_hex, flags_hex, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    trace_id, parent_id = int(trace_hex, 16), int(parent_hex, 16)
    if trace_id == 0 or parent_id == 0:
        return None
    return trace_id, parent_id, int(flags_hex, 16)


def _new_id(bits: int) -> int:
    while True:
        value = _bits(bits)
        if value:
            return value


def start_span(
    headers: Sequence[tuple[str, str]],
) -> tuple[TraceContext, list[tuple[str, str]]]:
    """This request's span, a child of the client's when ``headers`` (the client headers
    the proxy forwards, names lowercase) carry a valid ``traceparent``; and ``headers``
    with the ``traceparent`` wlm's span gives the upstream (``tracestate`` kept only
    with a valid parent)."""
    parent = state = None
    rest: list[tuple[str, str]] = []
    for name, value in headers:
        if name == "traceparent":
            parent = parse_traceparent(value) if parent is None else parent
        elif name == "tracestate":
            state = value if state is None else f"{state},{value}"
        else:
            rest.append((name, value))
    if parent is None:
        context = TraceContext(_new_id(128), _new_id(64))
    else:
        trace_id, parent_id, flags = parent
        context = TraceContext(
            trace_id, _new_id(64), parent_id, bool(flags & _SAMPLED), state or None
        )
        if context.state is not None:
            rest.append(("tracestate", context.state))
    rest.append(("traceparent", context.traceparent))
    return context, rest
