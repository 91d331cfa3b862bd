"""One proxied request's life: what was asked, where it went, how it ended, and the
telemetry rows it leaves (:meth:`Exchange.records`).

The proxy fills an :class:`Exchange` as the request goes; nothing else keeps
per-request state. How it ended is one of ``ok``, ``error`` (with one
:class:`~wlm.errors.Failure`) or ``cancelled`` (the client left: HTTP 499, nginx's
"client closed request", even when a stream had begun with 200).

Each upstream try leaves an :class:`UpstreamTry` in :attr:`Exchange.tries` (retries,
fallbacks, cooldown skips and spillovers: :mod:`wlm.api.attempts`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

import attrs
import msgspec

from wlm.dialects.base import ParsedRequest
from wlm.errors import Failure, GatewayError
from wlm.providers.accounting import ResponseAccount
from wlm.redaction import Redactor
from wlm.routing.resolve import Route
from wlm.telemetry.records import AttemptRecord, ConversationRecord, RequestRecord
from wlm.telemetry.spans import TracedRecord
from wlm.tracecontext import TraceContext

__all__ = ["CLIENT_CLOSED", "Exchange", "MovedOn", "QueueNote", "UpstreamTry"]

CLIENT_CLOSED = 499

# Why a request went on past one of its tries (wlm/api/attempts.py).
MovedOn = Literal["retry", "fallback", "cooldown_skip", "spillover"]


@attrs.frozen
class UpstreamTry:
    """One upstream try of a request (or a target passed over without one).

    ``moved_on`` says why the request went on past it: ``retry`` (the same target
    again), ``fallback`` (the next model of its chain), ``cooldown_skip`` (the target
    was cooling down: not tried, ``latency`` None), ``spillover`` (a local engine could
    not take it in time, or could not load); None for the try that answered, and for
    the last one when every try failed. A name of the chain that routes nowhere is an
    entry with ``provider`` None and its ``upstream_model`` as written.
    """

    number: int  # 1, 2, ... in the order tried (skips included)
    provider: str | None
    upstream_model: str
    started: float  # time.perf_counter() when it began
    started_at: datetime  # UTC; the request's own start for the first try
    latency: float | None  # seconds until the upstream's status line, or the failure
    http_status: int | None  # the upstream's status; None when none came
    error_type: str | None  # the failure's type ("rate_limit_error", "timeout", ...)
    error_code: str | None  # and its code ("upstream_unreachable", ...)
    moved_on: MovedOn | None = None


@attrs.define(eq=False)
class QueueNote:
    """A local request's part in the queue in front of the engines (wlm/local/queue.py):
    its priority, how long it waited, and why it stopped when an administrator
    cancelled it. Only requests routed to a local model have one."""

    priority: str
    waited_s: float = 0.0
    stopped: GatewayError | None = None


@attrs.define(eq=False)
class Exchange:
    """Per-request state, filled by the proxy and read once when the request ends."""

    endpoint: str
    request_id: str  # the x-request-id the client gets back
    record_id: str  # the telemetry row's own id (unique even when clients reuse theirs)
    account: ResponseAccount
    started: float = attrs.field(factory=time.perf_counter)
    started_at: datetime = attrs.field(factory=lambda: datetime.now(UTC))
    client: str | None = None  # the client key's name, when keys are on
    client_key: str | None = None  # the key it presented (redacted from its records)
    request: ParsedRequest | None = None
    route: Route | None = None
    attempts: int = 0  # upstream tries made (a cooldown skip or a name that routes nowhere is none)
    tries: list[UpstreamTry] = attrs.field(factory=list)
    fallback_from: str | None = None  # the first model of the chain, when another answered
    try_started: float = 0.0  # the try under way: its perf_counter start, its wall start
    try_started_at: datetime | None = None
    upstream_endpoint: str | None = None  # what was called upstream (translated or not)
    ttft: float | None = None
    http_status: int | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    status: str = "ok"  # "ok" | "error" | "cancelled"
    failure: Failure | None = None
    answered: bool = False  # the body's last part went out: the client has it all
    trace: TraceContext | None = None  # its span, when spans are exported (OTLP)
    queue: QueueNote | None = None  # a local request's part in the engines' queue
    recorded: bool = False  # counted and its telemetry submitted (wlm.api.proxy)

    # -- how it ended ----------------------------------------------------------------

    def failed(self, failure: Failure) -> None:
        """The request failed (before or after its first byte); one an administrator
        stopped stays cancelled."""
        if self.status != "cancelled":
            self.status = "error"
        self.failure = failure
        if self.http_status is None:
            self.http_status = failure.status

    def cancelled(self) -> None:
        """The client left before the answer was complete."""
        if self.answered:
            # The last part went out: a client that closes the connection as soon as it
            # has it (Codex, on response.completed) had everything; not a cancel.
            return
        self.status = "cancelled"
        self.http_status = CLIENT_CLOSED

    def stopped_by_admin(self) -> None:
        """Recorded as cancelled (with its failure's type), not as an error."""
        self.status = "cancelled"

    def settle_stream(self) -> None:
        """A stream finished: a failure the upstream reported inside it counts as ours."""
        error = self.account.error
        if error is not None and self.status == "ok":
            self.status = "error"
            self.failure = error

    # -- its tries --------------------------------------------------------------------

    def begin_try(self) -> None:
        """An upstream try starts (the first one reuses the request's wall clock)."""
        self.try_started = time.perf_counter()
        self.attempts += 1
        self.try_started_at = self.started_at if self.attempts == 1 else datetime.now(UTC)

    def end_try(
        self,
        provider: str | None,
        upstream_model: str,
        http_status: int | None = None,
        error: GatewayError | Failure | None = None,
        moved_on: MovedOn | None = None,
    ) -> UpstreamTry:
        """The try begun last ended (its status line came, or it failed)."""
        attempt = UpstreamTry(
            len(self.tries) + 1,
            provider,
            upstream_model,
            self.try_started,
            self.try_started_at or self.started_at,
            time.perf_counter() - self.try_started,
            http_status,
            error.type if error is not None else None,
            error.code if error is not None else None,
            moved_on,
        )
        self.tries.append(attempt)
        return attempt

    def passed_over(
        self,
        provider: str | None,
        upstream_model: str,
        moved_on: MovedOn,
        error: GatewayError | Failure | None,
    ) -> None:
        """A target of the chain not tried: cooling down, or a name that routes nowhere."""
        self.tries.append(
            UpstreamTry(
                len(self.tries) + 1,
                provider,
                upstream_model,
                time.perf_counter(),
                datetime.now(UTC),
                None,
                None,
                error.type if error is not None else None,
                error.code if error is not None else None,
                moved_on,
            )
        )

    def moved_on_from_last(self, error: GatewayError | Failure, moved_on: MovedOn | None) -> None:
        """The try recorded as answering failed before the first byte after all."""
        self.tries[-1] = attrs.evolve(
            self.tries[-1], error_type=error.type, error_code=error.code, moved_on=moved_on
        )

    # -- what it leaves --------------------------------------------------------------

    def redactor(self, base: Redactor) -> Redactor:
        """``base`` plus the key this client presented (it may be stored only as a hash)."""
        return base.with_secret(self.client_key)

    def token_counts(self) -> dict[str, Any]:
        return self.account.token_counts()

    def records(
        self, redactor: Redactor, *, log_content: bool, counts: dict[str, Any], elapsed: float
    ) -> tuple[RequestRecord, ConversationRecord | None]:
        """The ``requests`` row and (once a body was read) the ``conversations`` row.

        Every text that came from a client or an upstream passes ``redactor`` here.
        """
        account = self.account
        route = self.route
        request = self.request
        timings = account.timings or {}
        ttft = self.ttft
        tokens_per_s = None
        if isinstance(timings.get("predicted_per_second"), int | float):
            tokens_per_s = float(timings["predicted_per_second"])
        elif counts["completion_tokens"] and ttft is not None and elapsed > ttft and self.stream:
            tokens_per_s = counts["completion_tokens"] / (elapsed - ttft)
        failure = self.failure
        text = redactor.text
        # With OTLP on, the row carries the span the request had on the wire.
        make = RequestRecord if self.trace is None else partial(TracedRecord, trace=self.trace)
        record = make(
            id=self.record_id,
            started_at=self.started_at,
            ended_at=datetime.now(UTC),
            endpoint=self.endpoint,
            model=text(self.model),
            provider=route.provider if route is not None else None,
            upstream_model=account.upstream_model or (route.upstream_model if route else None),
            stream=self.stream,
            status=self.status,
            http_status=self.http_status,
            client=self.client,
            request_id=self.request_id,
            error_type=failure.type if failure else None,
            error_code=failure.code if failure else None,
            error_message=text(failure.message) if failure else None,
            ttft_ms=ttft * 1000 if ttft is not None else None,
            latency_ms=elapsed * 1000,
            tokens_per_s=tokens_per_s,
            finish_reason=account.finish_reason,
            attempts=self.attempts,
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            local_prompt_n=timings.get("prompt_n"),
            local_prompt_ms=timings.get("prompt_ms"),
            local_predicted_n=timings.get("predicted_n"),
            local_predicted_ms=timings.get("predicted_ms"),
            local_cache_n=timings.get("cache_n"),
            upstream_endpoint=self.upstream_endpoint,
            fallback_from=text(self.fallback_from) if self.fallback_from else None,
            queue_ms=self.queue.waited_s * 1000 if self.queue is not None else None,
            **counts,
        )
        if request is None or route is None:
            return record, None
        if not log_content:
            return record, ConversationRecord(self.record_id, None, None)

        def kept(value: str | None) -> str | None:
            return text(value) if value else None

        tool_calls = account.tool_calls
        conversation = ConversationRecord(
            request_id=self.record_id,
            request_json=kept(_request_content(request)),
            response_text=kept(account.text),
            reasoning_text=kept(account.reasoning),
            tool_calls_json=kept(msgspec.json.encode(tool_calls).decode() if tool_calls else None),
        )
        return record, conversation

    def attempt_records(self, redactor: Redactor) -> tuple[AttemptRecord, ...]:
        """One row per try, when the request took more than one plain successful try (the
        ``attempts`` view derives that one try from the request's own row)."""
        tries = self.tries
        if not tries or (
            len(tries) == 1 and tries[0].moved_on is None and tries[0].error_type is None
        ):
            return ()
        text = redactor.text
        return tuple(
            AttemptRecord(
                request_id=self.record_id,
                number=t.number,
                provider=t.provider,
                upstream_model=text(t.upstream_model),
                started_at=t.started_at,
                latency_ms=t.latency * 1000 if t.latency is not None else None,
                http_status=t.http_status,
                error_type=t.error_type,
                moved_on=t.moved_on,
            )
            for t in tries
        )

    @property
    def model(self) -> str:
        """The model as the client asked for it ('' before the body was read)."""
        return self.request.model if self.request is not None else ""

    @property
    def stream(self) -> bool:
        return self.request.stream if self.request is not None else False


# Kept with the content, for a look at the request and its replay in the playground: the
# system prompt a dialect holds apart from its messages, and the generation settings.
_KEPT_WITH_CONTENT = (
    "system",
    "instructions",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
)


def _request_content(request: ParsedRequest) -> str | None:
    key = request.content_key
    body = request.body
    if key not in body:
        return None
    kept = {key: body[key]}
    for name in _KEPT_WITH_CONTENT:
        if name in body:
            kept[name] = body[name]
    return msgspec.json.encode(kept).decode()
