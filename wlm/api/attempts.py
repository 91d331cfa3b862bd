"""From a parsed request to its answer: the targets of its chain, tried in turn.

Everything here happens before the first byte reaches the client, the commit point::

    for each name of the chain (the request's model, then its alternatives):
        resolve it                     a name that routes nowhere: on to the next
        ask the cooldowns              a cooling target is skipped, unless it is the
                                       last option left (then it is tried anyway)
        build the call                 pass-through or translated: per target, so a
                                       Messages request falls back from Claude to a
                                       local GGUF or an OpenAI model alike
        try it (adapter.open)          an error status or exception becomes an
                                       UpstreamFailure; the RetryPolicy says retry
                                       (after a wait), fall back (the next name) or
                                       fail (the request itself is at fault)
        answer                         the body, or the stream as it arrives

Once a byte went out, nothing is tried again: a failure is an error event in the
client's dialect. A stream for a local model that is loading gets SSE comments
(keep-alives), which send the headers and so commit it to that model; when the
request has an alternative and ``WLM_LOCAL_MAX_WAIT_S`` is set, the wait for the
engine is bounded instead, with no comments, and the request spills over to the
next model if the engine cannot take it in time.

A client that leaves cancels the request's task: a wait between tries ends at once
and nothing more is tried. Each try leaves an :class:`~wlm.api.exchange.UpstreamTry`
on the exchange; the response says who answered (``x-wlm-provider``) after how many
tries (``x-wlm-attempts``).

The common case (one target, answered at once) asks the cooldowns nothing, routes no
alternative and records one try; the first target of a chain is tried just as a
request without one (the rest of the chain is taken up only when it moves on).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Protocol

import attrs
import msgspec

from wlm.api.exchange import Exchange, MovedOn, QueueNote
from wlm.config import LOCAL, PRIORITIES
from wlm.dialects import AS_SENT, Dialect, ParsedRequest, Passage, Translation
from wlm.errors import BadRequest, Failure, GatewayError, RequestCancelled, UpstreamBroken
from wlm.local.protocol import QueuePlace
from wlm.providers.base import Adapter, Call, StreamRelay
from wlm.resilience.cooldowns import Admission, Cooldowns
from wlm.resilience.fallbacks import request_chain
from wlm.resilience.retry_policy import UpstreamFailure
from wlm.routing.resolve import Route
from wlm.transport import UpstreamResponse

if TYPE_CHECKING:
    from wlm.gateway import Gateway

__all__ = ["JSON_HEADERS", "STREAM_HEADERS", "Reply", "serve"]

log = logging.getLogger("wlm.proxy")

JSON_HEADERS = [(b"content-type", b"application/json")]
STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_GO = Admission.GO
_PROBE = Admission.PROBE

# A local request's place in the engines' queue (wlm/local/queue.py).
_PRIORITY_HEADER = b"x-wlm-priority"
_PRIORITIES = {p.encode(): p for p in PRIORITIES}

# What a translation adds that some chat models refuse: Claude Code and Codex always ask
# for reasoning, which OpenAI's non-reasoning models answer with a 400.
_OPTIONAL = "reasoning_effort"


class Reply(Protocol):
    """The response to the client (wlm.api.proxy's), which is also the adapters' Progress."""

    exchange: Exchange
    dialect: Dialect
    headers_sent: bool
    request_headers: Iterable[tuple[bytes, bytes]]

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...

    async def body(self, data: bytes, more: bool) -> None: ...

    async def loading(self, model_id: str) -> None: ...

    async def queued(self, position: int, total: int) -> None: ...

    def retrying(self, error: GatewayError) -> None: ...


Forwarded = tuple[tuple[str, str], ...]


def serve(
    gateway: Gateway,
    reply: Reply,
    request: ParsedRequest,
    forwarded: Forwarded,
    chain_header: str | None,
) -> Awaitable[object]:
    """Answer ``request`` from the first target of its chain that can; the awaitable
    raises the GatewayError the client gets when none could (or when the request is at
    fault).

    Not a coroutine itself: it returns the one that serves the request, so each of the
    request's waits (every event of a stream) resumes one frame fewer.
    """
    exchange = reply.exchange
    requested = request_chain(chain_header, request.body)
    if "models" in request.body:  # the chain is wlm's business, not the upstream's
        body = {k: v for k, v in request.body.items() if k != "models"}
        request = attrs.evolve(request, body=body, raw=msgspec.json.encode(body))
        exchange.request = request
    if requested is not None or gateway.fallbacks:
        names = gateway.fallbacks.chain(request.model, requested, gateway.router.alias)
        if len(names) > 1:
            try:
                first: Route | GatewayError = gateway.router.resolve(request.model)
            except GatewayError as error:
                first = error
            chain = _Chain(gateway, names, first)
            if isinstance(first, GatewayError) or not gateway.cooldowns.quiet:
                return _serve_chain(gateway, reply, request, forwarded, chain)
            # The first target as if it had no chain (one coroutine frame fewer for each
            # of its waits); the rest is routed and tried only if it moves on.
            later = functools.partial(chain.routable_after, 0)
            return _try_target(
                gateway, reply, request, forwarded, first, _GO, later=later, chain=chain
            )
    route = gateway.router.resolve(request.model)
    if route.also:
        return _serve_peers(gateway, reply, request, forwarded, route)
    cooldowns = gateway.cooldowns
    admission = _GO
    if not cooldowns.quiet:
        admission = cooldowns.admit((route.provider, route.upstream_model), last=True)
    return _try_target(gateway, reply, request, forwarded, route, admission, later=_never)


async def _serve_chain(
    gateway: Gateway,
    reply: Reply,
    request: ParsedRequest,
    forwarded: Forwarded,
    chain: _Chain,
    start: int = 0,
) -> None:
    """Each name of ``chain`` from ``start`` in turn, until one answers; the last one's
    error otherwise. ``request`` is the request for the chain's first name."""
    exchange = reply.exchange
    cooldowns = gateway.cooldowns
    try:
        for index in range(start, len(chain.names)):
            name = chain.names[index]
            route = chain.route(index)
            if isinstance(route, GatewayError):
                if not chain.routable_after(index):
                    raise route  # nothing routes: the model the client asked for is unknown
                exchange.passed_over(None, name, "fallback", route)
                continue
            admission = _GO
            if not cooldowns.quiet:
                others = [(r.provider, r.upstream_model) for r in chain.routes_after(index)]
                admission = cooldowns.admit(
                    (route.provider, route.upstream_model),
                    last=cooldowns.none_admitted(others),
                )
                if admission is Admission.SKIP:
                    exchange.passed_over(
                        route.provider, route.upstream_model, "cooldown_skip", None
                    )
                    continue
            target = request
            if index != 0:
                target = _named(request, name)
                # Set before it answers: the row may be written before the answer's last part.
                exchange.fallback_from = request.model
            later = functools.partial(chain.routable_after, index)
            if await _try_target(gateway, reply, target, forwarded, route, admission, later=later):
                return
    except BaseException:
        exchange.fallback_from = None  # nothing answered
        raise
    raise AssertionError("the last routable target answers or raises")  # pragma: no cover


async def _serve_peers(
    gateway: Gateway, reply: Reply, request: ParsedRequest, forwarded: Forwarded, route: Route
) -> None:
    """A model several peer boxes have: the best box first (wlm.routing.peers ranked
    them), then the next when it cannot answer; the last one's error otherwise."""
    exchange = reply.exchange
    cooldowns = gateway.cooldowns
    model = route.upstream_model
    boxes = (route.provider, *route.also)
    for index, provider in enumerate(boxes):
        rest = boxes[index + 1 :]
        admission = _GO
        if not cooldowns.quiet:
            admission = cooldowns.admit(
                (provider, model), last=cooldowns.none_admitted((p, model) for p in rest)
            )
            if admission is Admission.SKIP:
                exchange.passed_over(provider, model, "cooldown_skip", None)
                continue
        target = Route(provider, model, route.rule)
        later = functools.partial(bool, rest)
        if await _try_target(gateway, reply, request, forwarded, target, admission, later=later):
            return
    raise AssertionError("the last box answers or raises")  # pragma: no cover


class _Chain:
    """A request's chain: its model, then the alternatives it named or
    ``WLM_FALLBACKS`` gives, each name routed when first needed."""

    __slots__ = ("_gateway", "_routes", "names")

    def __init__(
        self,
        gateway: Gateway,
        names: tuple[str, ...],
        first: Route | GatewayError,
    ) -> None:
        self._gateway = gateway
        self.names = names
        self._routes: list[Route | GatewayError | None] = [None] * len(names)
        self._routes[0] = first  # the model itself, routed already

    def route(self, index: int) -> Route | GatewayError:
        """Where the name at ``index`` goes, or why it goes nowhere (no route, no key)."""
        route = self._routes[index]
        if route is None:
            try:
                route = self._gateway.router.resolve(self.names[index])
            except GatewayError as error:
                route = error
            self._routes[index] = route
        return route

    def routes_after(self, index: int) -> list[Route]:
        found = (self.route(later) for later in range(index + 1, len(self.names)))
        return [route for route in found if isinstance(route, Route)]

    def routable_after(self, index: int) -> bool:
        """Whether a name after ``index`` routes (if not, ``index``'s failure is final)."""
        return any(
            isinstance(self.route(later), Route) for later in range(index + 1, len(self.names))
        )


def _never() -> bool:
    return False


def _named(request: ParsedRequest, name: str) -> ParsedRequest:
    """``request`` for an alternative: its model is that name, as the client sees it."""
    body = {**request.body, "model": name}
    return attrs.evolve(request, model=name, body=body, raw=msgspec.json.encode(body))


async def _try_target(
    gateway: Gateway,
    reply: Reply,
    request: ParsedRequest,
    forwarded: Forwarded,
    route: Route,
    admission: Admission,
    *,
    later: Callable[[], bool],
    chain: _Chain | None = None,
) -> bool:
    """Try ``route`` (again, as the policy allows) until it answers: True.

    False when the request goes on to its next target (``later()``: there is one,
    asked only when needed), unless ``route`` is the first of ``chain``: then the rest of
    the chain is tried here; raises the error the client gets otherwise.
    """
    exchange = reply.exchange
    exchange.route = route
    adapter = gateway.adapters[route.provider]
    local = route.provider == LOCAL
    max_wait_s = gateway.settings.local_max_wait_s if local and later() else None
    place = _queue_place(gateway, reply, route.upstream_model) if local else None
    call, wrap, translation = _call_for(
        reply, request, route, adapter, forwarded, max_wait_s, place
    )
    if call is None:
        assert translation is not None
        await _answer_locally(reply, adapter, route, translation)
        return True
    exchange.upstream_endpoint = call.endpoint
    provider, model = route.provider, route.upstream_model
    cooldowns = gateway.cooldowns
    retries_done = 0
    while True:
        exchange.begin_try()
        first_try = exchange.attempts
        status: int | None = None
        answered = False
        try:
            response = await adapter.open(call, reply)
        except GatewayError as error:
            failed = error
            failure = UpstreamFailure.of_error(error)
        except BaseException:  # the client left (or wlm broke): no verdict on the target
            exchange.end_try(provider, model)
            if admission is _PROBE:
                cooldowns.released((provider, model), admission)
            raise
        else:
            status = response.status
            if status < 400:
                exchange.end_try(provider, model, status)
                if not cooldowns.quiet:
                    cooldowns.succeeded((provider, model))
                try:
                    await _answer(gateway, reply, adapter, call, response, wrap)
                    return True
                except GatewayError as error:
                    if reply.headers_sent:
                        raise
                    # The body broke or could not be read: nothing reached the client yet.
                    failed = error
                    failure = UpstreamFailure.of_error(error)
                    answered = True
            else:
                try:
                    payload = await response.read()
                except GatewayError as error:
                    response.close()
                    failed = error
                    failure = UpstreamFailure.of_error(error)
                else:
                    failed = adapter.upstream_error(status, payload, response.header("retry-after"))
                    failure = UpstreamFailure.of_error(failed, response.header)
                    response.release()
                    if (
                        translation is not None
                        and status == 400
                        and _OPTIONAL in call.body
                        and _OPTIONAL.encode() in payload
                    ):
                        # Asked once more without the field the translation added.
                        exchange.end_try(provider, model, status, failed, "retry")
                        body = {k: v for k, v in call.body.items() if k != _OPTIONAL}
                        call = attrs.evolve(call, body=body, raw=msgspec.json.encode(body))
                        continue
        if exchange.attempts > first_try:
            # The adapter tried again on its own (a local engine restarted after a
            # crash): that was this target's retry.
            retries_done = max(retries_done, gateway.retry_policy.retries)
        pacing = gateway.pacing
        decision = gateway.retry_policy.decide(failure, retries_done, pacing.now(), pacing.random())
        moved_on: MovedOn | None = None
        if reply.headers_sent:
            pass  # a loading comment went out: this target has the request
        elif decision.action == "retry":
            moved_on = "retry"
        elif decision.action == "fallback" and later():
            moved_on = "spillover" if local and failure.kind == "unavailable" else "fallback"
        _report(cooldowns, (provider, model), failure, admission)
        if admission is _PROBE:
            admission = Admission.FORCED  # reported: the probe is over
        if answered:
            exchange.moved_on_from_last(failed, moved_on)
        else:
            exchange.end_try(provider, model, status, failed, moved_on)
        if moved_on is None:
            raise failed
        if moved_on != "retry":
            if chain is not None:
                await _serve_chain(gateway, reply, request, forwarded, chain, start=1)
                return True
            return False
        retries_done += 1
        # The wait between tries: a client leaving cancels it (and the request) at once.
        await pacing.sleep(decision.delay_s)


def _queue_place(gateway: Gateway, reply: Reply, model: str) -> QueuePlace:
    """Who this request is in the local engines' queue: its priority (x-wlm-priority,
    else its key's WLM_KEY_PRIORITY, else ``*``'s, else normal), and how to cancel it.

    Only local requests come here, so the header costs other requests nothing; a bad
    value is a 400 before anything is tried.
    """
    exchange = reply.exchange
    priority = None
    for name, value in reply.request_headers:
        if name == _PRIORITY_HEADER:
            priority = _PRIORITIES.get(value.strip().lower())
            if priority is None:
                raise BadRequest(
                    f"x-wlm-priority must be one of {', '.join(PRIORITIES)}, "
                    f"got {value.decode('latin-1')[:40]!r}.",
                    code="invalid_priority",
                )
    if priority is None:
        defaults = dict(gateway.settings.key_priority)
        priority = defaults.get(exchange.client or "", defaults.get("*", "normal"))
    note = exchange.queue = QueueNote(priority)
    task = asyncio.current_task()

    def cancel() -> None:
        if note.stopped is None and task is not None and not task.done():
            note.stopped = RequestCancelled(exchange.record_id, model)
            task.cancel()

    def waited(seconds: float) -> None:
        note.waited_s += seconds

    return QueuePlace(
        request_id=exchange.record_id,
        priority=priority,
        client=exchange.client,
        stream=exchange.stream,
        cancel=cancel,
        tokens=exchange.account.pieces,
        waited=waited,
        client_request_id=exchange.request_id,
    )


def _report(
    cooldowns: Cooldowns, target: tuple[str, str], failure: UpstreamFailure, admission: Admission
) -> None:
    """Tell the cooldowns how a try failed: a retryable failure counts; an error status
    means the upstream is up; anything else (a local engine that cannot load, an answer
    that broke off) says nothing either way."""
    if failure.retryable:
        cooldowns.failed(target, admission)
    elif failure.kind == "status":
        if not cooldowns.quiet:
            cooldowns.succeeded(target)
    elif admission is _PROBE:
        cooldowns.released(target, admission)


def _call_for(
    reply: Reply,
    request: ParsedRequest,
    route: Route,
    adapter: Adapter,
    forwarded: Forwarded,
    max_wait_s: float | None,
    place: QueuePlace | None = None,
) -> tuple[Call | None, Translation | Passage | None, Translation | None]:
    """The call ``route`` takes, how its answer is wrapped, and the translation if any
    (a call of None: the translation answers itself, as count_tokens may)."""
    exchange = reply.exchange
    dialect = reply.dialect
    # The backend speaks the client's dialect: the request goes as it came (or as the
    # dialect fitted it), else it is translated.
    passage = AS_SENT if dialect.name == "chat" else dialect.pass_through(request, adapter.config)
    if passage is not None:
        sent = passage.body
        call = Call(
            endpoint=exchange.endpoint,
            body=request.body if sent is None else sent,
            raw=request.raw if sent is None else msgspec.json.encode(sent),
            model=request.model,
            upstream_model=route.upstream_model,
            stream=request.stream,
            client_wants_usage=request.wants_usage,
            forwarded_headers=forwarded,
            request_id=exchange.request_id,
            max_wait_s=max_wait_s,
            place=place,
        )
        return call, passage, None
    # The backend does not speak the client's dialect: Chat Completions, the hub
    # every adapter speaks, carries it there and back.
    translation = dialect.translate(request)
    for note in translation.notes:
        log.info("%s via chat to %s: %s", exchange.endpoint, route.provider, note)
    if translation.local_answer is not None:
        return None, None, translation
    chat_body = {**translation.chat_body, "model": route.upstream_model}
    call = Call(
        endpoint="chat/completions",
        body=chat_body,
        raw=msgspec.json.encode(chat_body),
        # The chat answer is only read by the translation, which names the client's
        # model itself: nothing to rewrite on the way.
        model=route.upstream_model,
        upstream_model=route.upstream_model,
        stream=request.stream,
        client_wants_usage=True,  # the translation needs the usage chunk
        forwarded_headers=forwarded,
        request_id=exchange.request_id,
        max_wait_s=max_wait_s,
        place=place,
    )
    return call, translation, translation


async def _answer_locally(
    reply: Reply, adapter: Adapter, route: Route, translation: Translation
) -> None:
    """count_tokens where the backend has no such endpoint: its exact count when it can
    give one (a local engine), else wlm's estimate, marked as such."""
    counted = None
    if translation.counts_tokens:
        chat = {**translation.chat_body, "model": route.upstream_model}
        call = Call(
            "chat/completions", chat, b"", route.upstream_model, route.upstream_model, False, False
        )
        counted = await adapter.count_tokens(call, reply)
        reply.exchange.upstream_endpoint = "tokenize" if counted is not None else None
    if counted is not None:
        await reply.start(200, JSON_HEADERS)
        await reply.body(msgspec.json.encode({"input_tokens": counted}), False)
        return
    assert translation.local_answer is not None
    await reply.start(200, [*JSON_HEADERS, (b"x-wlm-estimate", b"true")])
    await reply.body(translation.local_answer, False)


async def _answer(
    gateway: Gateway,
    reply: Reply,
    adapter: Adapter,
    call: Call,
    response: UpstreamResponse,
    wrap: Translation | Passage | None,
) -> None:
    """Relay the upstream's answer (a status below 400: the stream or the whole body)
    to the client, through the translation or the watchers of a passage (``wrap``)."""
    completed = False
    try:
        if response.status >= 300 or response.status < 200:
            # Redirects are not followed (the key would go with them); a redirect almost
            # always means a wrong base URL, e.g. http:// for an https:// server.
            location = gateway.redactor.text(response.header("location") or "nowhere")
            raise UpstreamBroken(
                f"Provider '{adapter.config.name}' answered {response.status} "
                f"(redirecting to {location}); check {adapter.config.base_url_variable}."
            )
        if call.stream:
            # A stream that broke off leaves its connection unusable: drop it, never pool it.
            relay = adapter.relay(call, reply.exchange.account)
            if wrap is not None and wrap.relay is not None:
                relay = wrap.relay(relay)
            completed = await _relay_stream(gateway, reply, relay, response)
            return
        payload = await response.read()
        completed = True
        exchange = reply.exchange
        redact = exchange.redactor(gateway.redactor).bytes
        out = adapter.finish_response(call, payload, exchange.account)
        if wrap is not None and wrap.response is not None:
            out = wrap.response(out)
        out = redact(out)
        await reply.start(response.status, JSON_HEADERS)
        exchange.ttft = time.perf_counter() - exchange.started
        await reply.body(out, False)
    finally:
        if completed:
            response.release()
        else:
            response.close()


async def _relay_stream(
    gateway: Gateway, reply: Reply, relay: StreamRelay, response: UpstreamResponse
) -> bool:
    """Relay the stream as it arrives; True when it ended cleanly upstream."""
    exchange = reply.exchange
    # The one redaction point for a stream: each send, not each event (an upstream may
    # echo a key anywhere; the client's own key, maybe known only as a hash, counts too).
    redact = exchange.redactor(gateway.redactor).bytes
    if not reply.headers_sent:
        await reply.start(200, STREAM_HEADERS)
    send_body = reply.body
    last: list[bytes] = []  # what the read that completed the answer brought
    try:
        async for chunk in response.chunks():
            # What arrived in one read leaves in one send: nothing waits for anything
            # (it was all here), and a send per event costs more than the event's own
            # work (docs/performance.md).
            outs = relay.feed(chunk)
            if exchange.ttft is None and relay.token_seen:
                exchange.ttft = time.perf_counter() - exchange.started
            if relay.done:
                last = outs  # goes out with the end of the body, in its last part
                break
            if outs:
                await send_body(redact(outs[0] if len(outs) == 1 else b"".join(outs)), True)
        clean = relay.done
        tail = relay.end()
    except GatewayError as error:
        clean = False
        failure = Failure.of(error, gateway.redactor.text)
        exchange.account.error = failure
        tail = relay.fail(failure)
    exchange.settle_stream()
    await send_body(redact(b"".join((*last, *tail))), False)  # the end, with what remains
    return clean
