"""Local GGUF models as one more upstream: a llama.cpp engine.

The adapter acquires the model's engine (starting it if needed, with loading
progress reported every few seconds), sends the call through the shared transport,
and holds the engine until the response is closed or released. The stall watchdog
(:mod:`wlm.local.watchdog`, ``WLM_LOCAL_STALL_S``) watches the call meanwhile. With
cache-aware slots (``WLM_LOCAL_SLOT_AFFINITY``) the queue is told the prompt's
fingerprint and the lease may name the slot that holds it, which a chat or completion
request then asks for (``id_slot``). An engine that died
after it was last seen ready gets one retry, which restarts it: nothing has reached
the client yet. Engine errors that read badly (llama.cpp's own texts) become wlm's.

The engine serves three dialects itself: Chat Completions (and the other OpenAI
endpoints), Anthropic Messages (``/v1/messages``, ``/v1/messages/count_tokens``) and
OpenAI Responses (``/v1/responses``). What its Messages and Responses answers leave
out is mended on the way (:mod:`wlm.translate.messages_native`,
:mod:`wlm.translate.responses_llama`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import attrs
import msgspec

from wlm.config import LOCAL, ProviderConfig
from wlm.errors import (
    BadRequest,
    Failure,
    GatewayError,
    UpstreamBroken,
    UpstreamError,
    UpstreamUnreachable,
)
from wlm.local.protocol import EngineLease, LocalModels, QueuePlace
from wlm.local.slot_affinity import prefix_of
from wlm.local.watchdog import Watch, Watchdog
from wlm.providers.accounting import ResponseAccount
from wlm.providers.anthropic import MessagesPassthroughRelay
from wlm.providers.base import (
    Call,
    ModelEntry,
    PassthroughRelay,
    Progress,
    StreamRelay,
    answer_object,
    decode_event_json,
)
from wlm.providers.openai_compat import OpenAICompatAdapter, account_response, rewrite_model
from wlm.translate import from_anthropic_response
from wlm.translate.messages_native import MendMessagesStream
from wlm.translate.messages_native import for_llama_cpp as messages_for_llama_cpp
from wlm.translate.openai_fields import check_field_types
from wlm.translate.responses_llama import (
    LLAMA_CPP_TYPES,
    MendResponsesStream,
    mend_response,
)
from wlm.translate.responses_llama import for_llama_cpp as responses_for_llama_cpp
from wlm.translate.responses_stream import encode_sse
from wlm.translate.responses_stream import error_event as responses_error_event
from wlm.transport import HeldResponse, Transport, UpstreamRequest, UpstreamResponse, read_json

__all__ = ["LOCAL", "LocalAdapter", "local_provider_config"]

_LOADING_EVERY_S = 2.0
# The endpoints whose llama.cpp handler reads id_slot (its Messages and Responses
# handlers drop it: the engine picks the slot by its own prompt similarity there).
_PINNABLE = frozenset({"chat/completions", "completions"})
_CRASH_NOTICE_S = 2.0
# How long a cancelled request waits for its acquire to finish cancelling (a loop turn
# or two; the bound only keeps a stuck one from holding the request up).
_CANCELLED_ACQUIRE_S = 1.0


def local_provider_config(
    load_timeout_s: float, dialects: tuple[str, ...] = ("chat", "messages", "responses")
) -> ProviderConfig:
    """The provider entry of local engines (addresses come per request from the lease).

    llama.cpp's server answers /v1/messages and /v1/responses itself; its Responses
    keep nothing between requests and read only some tool and item types. Every engine
    takes /v1/rerank too: one not started with ``reranking = true`` refuses it, and
    :meth:`LocalAdapter.upstream_error` says what to set.
    """
    return ProviderConfig(
        name=LOCAL,
        kind="local",
        base_url="",
        keyless=True,
        connect_timeout_s=10.0,
        # A local engine may take long over a long prompt on a CPU.
        read_timeout_s=max(600.0, load_timeout_s),
        dialects=tuple(dict.fromkeys((*dialects, "rerank"))),
        keeps_responses=False,
        responses_types=LLAMA_CPP_TYPES,
    )


_encode = msgspec.json.encode
_ENDS = ("response.completed", "response.incomplete", "response.failed")
_THINKING = ("response.reasoning_text.delta", "response.reasoning_summary_text.delta")


def _tool_calls(response: dict[str, Any]) -> list[dict[str, Any]]:
    """A Responses answer's function calls, in OpenAI chat shape (for telemetry)."""
    return [
        {
            "id": item.get("call_id"),
            "type": "function",
            "function": {"name": item.get("name") or "", "arguments": item.get("arguments") or ""},
        }
        for item in response.get("output") or ()
        if isinstance(item, dict) and item.get("type") == "function_call"
    ]


def _account_answer(account: ResponseAccount, response: dict[str, Any], engine: Any) -> None:
    """Learn from a mended Responses answer; ``engine`` is the engine's own model name."""
    account_response(account, response)
    account.upstream_model = engine if isinstance(engine, str) else None
    calls = _tool_calls(response)
    if calls:
        account.add_tool_calls(calls)


class LocalMessagesRelay(MessagesPassthroughRelay):
    """The engine's Messages stream, one content block open at a time."""

    __slots__ = ("_mend",)

    def __init__(self, call: Call, account: ResponseAccount) -> None:
        super().__init__(call, account)
        self._mend = MendMessagesStream()

    def _read(self, block: bytes, data: bytes) -> bytes | None:
        payload = decode_event_json(data)
        if payload is None:
            return None
        events = self._mend.feed(payload)
        if events is None:
            return self._take(block, payload)
        return b"".join(
            self._take(b"event: %s\ndata: %s\n\n" % (str(e["type"]).encode(), _encode(e)), e)
            for e in events
        )


class LocalResponsesRelay(PassthroughRelay):
    """The engine's Responses stream, mended event by event and read for telemetry."""

    __slots__ = ("_mend",)

    def __init__(self, call: Call, account: ResponseAccount) -> None:
        super().__init__(account)
        self._mend = MendResponsesStream(
            model=call.model, request=call.body, created_at=int(time.time())
        )

    def _read(self, block: bytes, data: bytes) -> bytes | None:
        event = decode_event_json(data)
        if event is None:
            return None
        engine = event.get("response")
        engine_model = engine.get("model") if isinstance(engine, dict) else None
        timings = event.get("timings")
        mended = self._mend.feed(event)
        for one in mended:
            self._take(one, engine_model)
        if isinstance(timings, dict):
            self.account.timings = timings
        return encode_sse(mended)

    def _take(self, event: dict[str, Any], engine_model: Any) -> None:
        kind = event.get("type")
        delta = event.get("delta")
        if kind == "response.output_text.delta" and isinstance(delta, str) and delta:
            self.token_seen = True
            self.account.add_text(delta)
        elif kind in _THINKING and isinstance(delta, str) and delta:
            self.token_seen = True
            self.account.add_reasoning(delta)
        elif kind == "response.function_call_arguments.delta":
            self.token_seen = True
        elif kind in _ENDS:
            self.done = True
            response = event.get("response")
            if isinstance(response, dict):
                _account_answer(self.account, response, engine_model)
                if kind == "response.failed":
                    self.account.error = Failure.from_event(response.get("error") or "failed", str)
        elif kind == "error":
            self.done = True
            self.account.error = Failure.from_event(
                {"message": event.get("message"), "code": event.get("code")}, str
            )

    def fail(self, failure: Failure) -> list[bytes]:
        self.done = True
        code = failure.code or failure.type
        return [responses_error_event(code, failure.message, failure.param, self._mend.sequence)]


class LocalAdapter:
    """Adapter for the local llama.cpp engines behind :class:`LocalModels`."""

    def __init__(
        self,
        config: ProviderConfig,
        transport: Transport,
        local: LocalModels,
        *,
        loading_every_s: float = _LOADING_EVERY_S,
        stall_s: float = 0.0,
        slot_affinity: bool = False,
    ) -> None:
        self._openai = OpenAICompatAdapter(config, transport)
        self._local = local
        self._loading_every_s = loading_every_s
        self._slot_affinity = slot_affinity
        self.transport = transport
        self.watchdog = Watchdog(transport, stall_s)

    @property
    def config(self) -> ProviderConfig:
        return self._openai.config

    async def open(self, call: Call, progress: Progress) -> UpstreamResponse:
        check_field_types(call.body)
        place = call.place
        if self._slot_affinity:
            prefix = prefix_of(call.endpoint, call.body)
            if prefix is not None:
                place = attrs.evolve(place or QueuePlace(), prefix=prefix)
        for attempt in (1, 2):
            lease = await self._acquire(call.upstream_model, progress, call.max_wait_s, place)
            watch = self.watchdog.watch(call.upstream_model, lease.base_url)
            if watch is not None:
                lease = _watched(lease, self.watchdog, watch)
            try:
                sending = self.transport.send(self._prepare(call, lease.base_url, lease.slot))
                response = await (sending if watch is None else watch.guard(sending))
            except (UpstreamUnreachable, UpstreamBroken) as error:
                lease.release()
                if attempt == 2:
                    raise
                crashed = error
            except BaseException:
                lease.release()
                raise
            else:
                if watch is not None:
                    watch.attach(response)
                return HeldResponse(response, lease.release)
            # The engine died after the supervisor last saw it ready (its socket lingers
            # for a moment): wait for the crash to be noticed, then go round once more,
            # which restarts it.
            with contextlib.suppress(TimeoutError, GatewayError):
                await self._local.wait_for_state(
                    call.upstream_model, "failed", "stopped", timeout=_CRASH_NOTICE_S
                )
            progress.retrying(crashed)
        raise AssertionError("unreachable")  # pragma: no cover

    def _prepare(self, call: Call, base_url: str, slot: int | None = None) -> UpstreamRequest:
        if slot is not None and call.endpoint in _PINNABLE and "id_slot" not in call.body:
            call = _pinned(call, slot)
        fitted = None
        if call.endpoint == "responses":
            fitted = responses_for_llama_cpp(call.body, call.upstream_model)
        elif call.endpoint in ("messages", "messages/count_tokens"):
            fitted = messages_for_llama_cpp(call.body)
            if fitted is not None:
                fitted["model"] = call.upstream_model
        if fitted is not None:
            # The body is whole now: nothing left for the OpenAI adapter to rewrite.
            call = attrs.evolve(call, body=fitted, raw=_encode(fitted), model=call.upstream_model)
        return self._openai.prepare(call, f"{base_url}/v1")

    async def _acquire(
        self,
        model_id: str,
        progress: Progress,
        max_wait_s: float | None = None,
        place: QueuePlace | None = None,
    ) -> EngineLease:
        """The engine's lease, after the request's turn in the queue: ``progress.queued``
        when its place changes and every few seconds while it waits,
        ``progress.loading`` every few seconds while the engine loads.

        With ``max_wait_s`` (the request has a fallback) the wait is bounded, queue,
        loading and busy slots alike, and reports nothing: a comment would commit the
        request to this model, and past the bound it goes elsewhere (ModelUnavailable).
        """
        if max_wait_s is not None:
            return await self._local.acquire(model_id, max_wait_s=max_wait_s, place=place)
        watch = _QueueWatch()
        place = attrs.evolve(place or QueuePlace(), on_position=watch.moved)
        acquiring = asyncio.ensure_future(self._local.acquire(model_id, place=place))
        moved: asyncio.Task[Any] | None = None
        try:
            told: tuple[int, int] | None = None
            while True:
                moved = asyncio.ensure_future(watch.changed.wait())
                done, _ = await asyncio.wait(
                    {acquiring, moved},
                    timeout=self._loading_every_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                moved.cancel()
                if acquiring in done:
                    return acquiring.result()
                watch.changed.clear()
                position = watch.position
                if position is not None:
                    if position != told or moved not in done:  # moved, or a keep-alive
                        told = position
                        await progress.queued(*position)
                elif moved not in done and not self._local.is_ready(model_id):
                    await progress.loading(model_id)
        except BaseException as exc:
            if moved is not None:
                moved.cancel()
            acquiring.cancel()
            # A lease granted just as we were cancelled must not leak an in-flight count.
            acquiring.add_done_callback(_release_granted)
            if isinstance(exc, Exception | asyncio.CancelledError) and not acquiring.done():
                # Its own cleanup (leaving the queue, saying how long it waited) ends
                # before the request does, which may record it at once. (Not when the
                # coroutine is closed or the process stops: nothing may be awaited then.)
                await asyncio.wait({acquiring}, timeout=_CANCELLED_ACQUIRE_S)
            raise

    def relay(self, call: Call, account: ResponseAccount) -> StreamRelay:
        if call.endpoint == "messages":
            return LocalMessagesRelay(call, account)
        if call.endpoint == "responses":
            return LocalResponsesRelay(call, account)
        return self._openai.relay(call, account)

    def finish_response(self, call: Call, body: bytes, account: ResponseAccount) -> bytes:
        if call.endpoint not in ("messages", "messages/count_tokens", "responses"):
            return self._openai.finish_response(call, body, account)
        parsed = answer_object(body, "The local engine")
        engine_model = parsed.get("model")
        if call.endpoint == "responses":
            mended = mend_response(
                parsed, model=call.model, request=call.body, created_at=int(time.time())
            )
            _account_answer(account, mended, engine_model)
            return _encode(mended)
        if call.endpoint == "messages":
            account.add_response(
                from_anthropic_response(parsed, model=call.model, created=int(time.time()))
            )
            account.upstream_model = engine_model if isinstance(engine_model, str) else None
            if engine_model not in (call.model, None):
                return rewrite_model(body, call.model)
        return body

    def upstream_error(self, status: int, body: bytes, retry_after: str | None) -> GatewayError:
        error = self._openai.upstream_error(status, body, retry_after)
        if status == 501 and "--embeddings" in error.message:
            # Still 501 (the engine as started cannot do it), but with wlm's remedy
            # instead of llama.cpp's command-line flag.
            return UpstreamError(
                "This local model does not support embeddings as started: set "
                "`embeddings = true` for it in the WLM_LOCAL_OPTIONS file "
                "(docs/local-models.md), then unload it so that it restarts.",
                status=501,
                type="not_supported_error",
                code="embeddings_disabled",
                param="model",
            )
        if status == 501 and "--reranking" in error.message:
            # The request is fine for a reranker; this model was not started as one.
            return BadRequest(
                "This local model does not rerank as started: set `reranking = true` for "
                "it in the WLM_LOCAL_OPTIONS file (docs/local-models.md#rerank), then "
                "unload it so that it restarts.",
                code="reranking_disabled",
                param="model",
            )
        if "[json.exception." in error.message:
            return BadRequest(
                "The local engine could not read the request: a field has the wrong type "
                f"({error.message.strip()}).",
                code="invalid_type",
            )
        if error.type == "exceed_context_size_error":
            return BadRequest(_too_long(body), code="context_length_exceeded")
        if "image input is not supported" in error.message:
            # llama.cpp says 500; the request asks what this model cannot do.
            return BadRequest(
                "This local model cannot read images: it has no multimodal projector "
                "(an mmproj GGUF next to it; docs/local-models.md).",
                code="image_input_unsupported",
            )
        return error

    async def list_models(self) -> list[ModelEntry]:
        return [ModelEntry(model.id) for model in self._local.list_models()]

    async def count_tokens(self, call: Call, progress: Progress) -> int | None:
        """The engine's own count: the chat template applied, then tokenized."""
        lease = await self._acquire(call.upstream_model, progress)
        try:
            template: dict[str, Any] = {
                k: call.body[k] for k in ("messages", "tools") if k in call.body
            }
            applied = await read_json(self.transport, self._post(lease, "apply-template", template))
            prompt = applied.get("prompt") if isinstance(applied, dict) else None
            if not isinstance(prompt, str):
                return None
            tokenize = {"content": prompt, "add_special": True, "parse_special": True}
            counted = await read_json(self.transport, self._post(lease, "tokenize", tokenize))
        except GatewayError:
            return None  # the engine cannot count: the caller estimates
        finally:
            lease.release()
        tokens = counted.get("tokens") if isinstance(counted, dict) else None
        return len(tokens) if isinstance(tokens, list) else None

    @staticmethod
    def _post(lease: EngineLease, path: str, body: dict[str, Any]) -> UpstreamRequest:
        headers = {"content-type": "application/json"}
        return UpstreamRequest(
            "POST", f"{lease.base_url}/{path}", headers, msgspec.json.encode(body), timeout_s=60.0
        )

    async def stored_response(self, response_id: str) -> bytes | None:
        return None  # engines keep nothing between requests

    async def close(self) -> None:
        await self.watchdog.close()
        await self.transport.close()


def _pinned(call: Call, slot: int) -> Call:
    """``call`` asking the engine for ``slot`` with its prompt cache on."""
    fields: dict[str, Any] = {"id_slot": slot}
    if "cache_prompt" not in call.body:  # the client's own choice stands
        fields["cache_prompt"] = True
    raw = call.raw.rstrip()
    if raw.endswith(b"}") and call.body:
        # Append the two fields to the object's bytes: no second encoding of the
        # (long) conversation on the way to the engine.
        raw = raw[:-1] + b"," + _encode(fields)[1:]
    else:
        raw = _encode({**call.body, **fields})
    return attrs.evolve(call, body={**call.body, **fields}, raw=raw)


def _too_long(body: bytes) -> str:
    """wlm's words for llama.cpp's exceed_context_size_error (which names its flags)."""
    try:
        error = msgspec.json.decode(body).get("error")
        prompt, context = int(error["n_prompt_tokens"]), int(error["n_ctx"])
    except (msgspec.DecodeError, AttributeError, KeyError, TypeError, ValueError):
        sizes = ""
    else:
        sizes = f" ({prompt} tokens; the context of one slot is {context})"
    return (
        f"The request is longer than this local model's context{sizes}: shorten it, or "
        "give the model more context (WLM_LOCAL_CTX_SIZE, shared by WLM_LOCAL_PARALLEL "
        "slots, or ctx_size for it in WLM_LOCAL_OPTIONS; docs/local-models.md)."
    )


class _QueueWatch:
    """A waiting request's place in the queue, as the manager tells it."""

    __slots__ = ("changed", "position")

    def __init__(self) -> None:
        self.position: tuple[int, int] | None = None
        self.changed = asyncio.Event()

    async def moved(self, position: int | None, total: int) -> None:
        self.position = (position, total) if position is not None else None
        self.changed.set()


def _watched(lease: EngineLease, watchdog: Watchdog, watch: Watch) -> EngineLease:
    """``lease``, which also ends the watch when it is released."""

    def release() -> None:
        watchdog.forget(watch)
        lease.release()

    return EngineLease(lease.base_url, release, lease.slot)


def _release_granted(acquiring: asyncio.Future[EngineLease]) -> None:
    if not acquiring.cancelled() and acquiring.exception() is None:
        acquiring.result().release()
