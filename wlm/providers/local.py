"""Local GGUF models as one more upstream: a llama.cpp engine speaking the OpenAI API.

The adapter acquires the model's engine (starting it if needed, with loading
progress reported every few seconds), sends the call through the shared transport,
and holds the engine until the response is closed or released. An engine that died
after it was last seen ready gets one retry, which restarts it: nothing has reached
the client yet. Engine errors that read badly (llama.cpp's own texts) become wlm's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from wlm.config import LOCAL, ProviderConfig
from wlm.errors import BadRequest, GatewayError, UpstreamBroken, UpstreamError, UpstreamUnreachable
from wlm.local.protocol import EngineLease, LocalModels
from wlm.providers.accounting import ResponseAccount
from wlm.providers.base import Call, ModelEntry, Progress, StreamRelay
from wlm.providers.openai_compat import OpenAICompatAdapter
from wlm.translate.openai_fields import check_field_types
from wlm.transport import Transport, UpstreamRequest, UpstreamResponse, read_json

__all__ = ["LOCAL", "LocalAdapter", "local_provider_config"]

_LOADING_EVERY_S = 2.0
_CRASH_NOTICE_S = 2.0


def local_provider_config(load_timeout_s: float) -> ProviderConfig:
    """The provider entry of local engines (addresses come per request from the lease)."""
    return ProviderConfig(
        name=LOCAL,
        kind="local",
        base_url="",
        keyless=True,
        connect_timeout_s=10.0,
        # A local engine may take long over a long prompt on a CPU.
        read_timeout_s=max(600.0, load_timeout_s),
    )


class LeasedResponse:
    """An engine's response that lets the engine go once it is closed or released."""

    __slots__ = ("_lease", "_response")

    def __init__(self, response: UpstreamResponse, lease: EngineLease) -> None:
        self._response = response
        self._lease = lease

    @property
    def status(self) -> int:
        return self._response.status

    def header(self, name: str) -> str | None:
        return self._response.header(name)

    async def read(self) -> bytes:
        return await self._response.read()

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.chunks()

    def close(self) -> None:
        try:
            self._response.close()
        finally:
            self._lease.release()

    def release(self) -> None:
        try:
            self._response.release()
        finally:
            self._lease.release()


class LocalAdapter:
    """Adapter for the local llama.cpp engines behind :class:`LocalModels`."""

    def __init__(
        self,
        config: ProviderConfig,
        transport: Transport,
        local: LocalModels,
        *,
        loading_every_s: float = _LOADING_EVERY_S,
    ) -> None:
        self._openai = OpenAICompatAdapter(config, transport)
        self._local = local
        self._loading_every_s = loading_every_s
        self.transport = transport

    @property
    def config(self) -> ProviderConfig:
        return self._openai.config

    async def open(self, call: Call, progress: Progress) -> UpstreamResponse:
        check_field_types(call.body)
        for attempt in (1, 2):
            progress.attempt(attempt)
            lease = await self._acquire(call.upstream_model, progress)
            try:
                request = self._openai.prepare(call, f"{lease.base_url}/v1")
                response = await self.transport.send(request)
            except (UpstreamUnreachable, UpstreamBroken):
                lease.release()
                if attempt == 2:
                    raise
            except BaseException:
                lease.release()
                raise
            else:
                return LeasedResponse(response, lease)
            # The engine died after the supervisor last saw it ready (its socket lingers
            # for a moment): wait for the crash to be noticed, then go round once more,
            # which restarts it.
            with contextlib.suppress(TimeoutError, GatewayError):
                await self._local.wait_for_state(
                    call.upstream_model, "failed", "stopped", timeout=_CRASH_NOTICE_S
                )
        raise AssertionError("unreachable")  # pragma: no cover

    async def _acquire(self, model_id: str, progress: Progress) -> EngineLease:
        """The engine's lease; ``progress.loading`` every few seconds while it loads."""
        if self._local.is_ready(model_id):
            return await self._local.acquire(model_id)
        acquiring = asyncio.ensure_future(self._local.acquire(model_id))
        try:
            while True:
                done, _ = await asyncio.wait({acquiring}, timeout=self._loading_every_s)
                if done:
                    return acquiring.result()
                await progress.loading(model_id)
        except BaseException:
            acquiring.cancel()
            # A lease granted just as we were cancelled must not leak an in-flight count.
            acquiring.add_done_callback(_release_granted)
            raise

    def relay(self, call: Call, account: ResponseAccount) -> StreamRelay:
        return self._openai.relay(call, account)

    def finish_response(self, call: Call, body: bytes, account: ResponseAccount) -> bytes:
        return self._openai.finish_response(call, body, account)

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
        if "[json.exception." in error.message:
            return BadRequest(
                "The local engine could not read the request: a field has the wrong type "
                f"({error.message.strip()}).",
                code="invalid_type",
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
        await self.transport.close()


def _release_granted(acquiring: asyncio.Future[EngineLease]) -> None:
    if not acquiring.cancelled() and acquiring.exception() is None:
        acquiring.result().release()
