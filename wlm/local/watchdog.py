"""The stall watchdog: a local request that gets no token for ``WLM_LOCAL_STALL_S``.

Every request on a local engine is *watched* from the moment it is sent until its
response is closed. Nothing runs per token: the request's progress is read only when
the watchdog looks, every quarter of ``stall_s`` (one sweep task for all the watched
requests, which exists only while there are some). Progress is the bytes the engine
has sent (the aiohttp reader counts them as they arrive) and, when they stand still,
the engine's own ``GET /slots``:

- a stream that has received nothing for ``stall_s`` while wlm is waiting to read
  (not while a slow client holds it up) is *suspect*; so is a request whose answer
  has not started after ``stall_s`` (a non-streamed one until its whole body);
- for the suspects of one engine the watchdog asks ``/slots`` once (llama.cpp answers
  between two decoding steps). A slot that is processing with no token decoded yet
  (``next_token.n_decoded == 0``) is reading its prompt: the suspects wait another
  ``stall_s``. So do they when the decoded counts moved since the engine's previous
  ``/slots`` (tokens held back, e.g. for a stop string, or a non-streamed answer);
- otherwise (no slot working, the counts standing still, or no answer to ``/slots``
  within ``probe_s``) the request is stalled: it ends with :class:`LocalStalled`
  (a 504), and its connection to the engine is closed, which makes llama.cpp stop the
  task and free the slot.

A request is so ended between ``stall_s`` and about twice that after its last token
(a second look is needed when the engine still answers ``/slots`` and no earlier
look at it is known).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from wlm.errors import GatewayError, ModelUnavailable
from wlm.transport import Transport, UpstreamRequest

__all__ = ["LocalStalled", "SlotsView", "Watch", "Watchdog", "read_slots"]

log = logging.getLogger("wlm.local")

T = TypeVar("T")


class LocalStalled(ModelUnavailable):
    """A local engine produced no token for ``WLM_LOCAL_STALL_S`` (not reading a prompt).

    A 504: wlm's upstream, the engine, did not answer in time. It is a kind of
    :class:`ModelUnavailable`, so the retry policy does not repeat it on the same
    engine, and a request with a fallback that has sent nothing yet moves on.
    """

    status = 504
    type = "timeout_error"
    code = "local_stalled"


class SlotsView:
    """What one ``GET /slots`` answer says, in the terms the watchdog needs."""

    __slots__ = ("decoded", "prompt", "working")

    def __init__(self, slots: Any) -> None:
        self.prompt = False  # some slot is reading its prompt
        self.working = 0  # slots processing a task
        decoded: list[tuple[Any, Any]] = []
        for slot in slots if isinstance(slots, list) else ():
            if not isinstance(slot, dict) or not slot.get("is_processing"):
                continue
            self.working += 1
            tokens = slot.get("next_token")
            first = tokens[0] if isinstance(tokens, list) and tokens else tokens
            n = first.get("n_decoded") if isinstance(first, dict) else None
            if not n:
                self.prompt = True
            decoded.append((slot.get("id_task"), n))
        self.decoded = tuple(sorted(decoded, key=repr))


async def read_slots(transport: Transport, base_url: str, timeout_s: float) -> SlotsView | None:
    """The engine's ``/slots``; None when it does not answer (in ``timeout_s``) or errs."""
    request = UpstreamRequest("GET", f"{base_url}/slots", {}, None, timeout_s=timeout_s)
    try:
        async with asyncio.timeout(timeout_s):
            response = await transport.send(request)
            try:
                if response.status != 200:
                    return None
                body = await response.read()
            finally:
                response.close()
        return SlotsView(msgspec.json.decode(body))
    except (GatewayError, TimeoutError, msgspec.DecodeError):
        return None


class Watch:
    """One local request under the watchdog (made by :meth:`Watchdog.watch`)."""

    __slots__ = ("_response", "_stalled", "base_url", "mark", "model", "since")

    def __init__(self, model: str, base_url: str, now: float) -> None:
        self.model = model
        self.base_url = base_url
        self.mark: int = -1
        self.since = now
        self._response: Any = None
        self._stalled: asyncio.Future[GatewayError] = asyncio.get_running_loop().create_future()

    def attach(self, response: Any) -> None:
        """The engine's answer has started: its bytes are the progress from now on."""
        self._response = response

    def progress(self) -> tuple[int, bool]:
        """(bytes received so far, whether wlm waits to read more)."""
        response = self._response
        received = getattr(response, "received", None)
        if received is None:
            return -1, True  # not started yet: wlm waits for the engine
        mark, waiting = received()
        return int(mark), bool(waiting)

    @property
    def stalled(self) -> bool:
        return self._stalled.done()

    def stall(self, error: GatewayError) -> None:
        """End the request with ``error``: a pending read of its answer raises it, and
        so does a send still waiting for the answer to start."""
        if self._stalled.done():
            return
        self._stalled.set_result(error)
        response = self._response
        if response is None:
            return
        fail = getattr(response, "fail", None)
        if fail is not None:
            fail(error)
        else:
            response.close()

    async def guard(self, sending: Awaitable[T]) -> T:
        """Await ``sending`` (the request to the engine), unless the request stalls first."""
        task = asyncio.ensure_future(sending)
        stalled: asyncio.Future[Any] = self._stalled
        try:
            await asyncio.wait((task, stalled), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        if task.done():
            return task.result()
        task.cancel()  # closes the connection: llama.cpp stops the task
        with contextlib.suppress(BaseException):
            await task
        raise self._stalled.result()


class Watchdog:
    """Ends local requests that stall (see the module docstring).

    ``stall_s <= 0`` turns it off (:meth:`watch` returns None). ``probe_s``: how long
    ``/slots`` may take before the engine counts as not answering (default: ``stall_s``,
    at least 1 s and at most 30 s). ``clock`` is monotonic seconds.
    """

    def __init__(
        self,
        transport: Transport,
        stall_s: float,
        *,
        probe_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self.stall_s = stall_s
        self.probe_s = probe_s if probe_s is not None else min(30.0, max(1.0, stall_s))
        self._tick = min(5.0, max(0.02, stall_s / 4))
        self._clock = clock
        self._watches: set[Watch] = set()
        self._task: asyncio.Task[None] | None = None
        # Per engine: the decoded counts its /slots showed at the previous look.
        self._seen: dict[str, tuple[tuple[Any, Any], ...]] = {}
        # Per engine: since when its /slots has not answered (looks in a row).
        self._silent: dict[str, float] = {}
        self.stalls = 0  # requests ended so far

    def watch(self, model: str, base_url: str) -> Watch | None:
        """Start watching one request on the engine at ``base_url``; None when off."""
        if self.stall_s <= 0:
            return None
        watch = Watch(model, base_url, self._clock())
        self._watches.add(watch)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._sweep(), name="wlm stall watchdog")
        return watch

    def forget(self, watch: Watch | None) -> None:
        """The request is over (its response closed or released)."""
        if watch is not None:
            self._watches.discard(watch)

    async def _sweep(self) -> None:
        while self._watches:
            await asyncio.sleep(self._tick)
            suspects: dict[str, list[Watch]] = {}
            now = self._clock()
            for watch in list(self._watches):
                mark, waiting = watch.progress()
                if mark != watch.mark or not waiting or watch.stalled:
                    watch.mark = mark
                    watch.since = now
                elif now - watch.since >= self.stall_s:
                    suspects.setdefault(watch.base_url, []).append(watch)
            if suspects:
                try:
                    await asyncio.gather(*(self._look(u, w) for u, w in suspects.items()))
                except Exception:  # the watchdog must never die
                    log.exception("stall watchdog: a look at the engines failed")
        self._seen.clear()
        self._silent.clear()

    async def _look(self, base_url: str, suspects: list[Watch]) -> None:
        """Ask the engine's ``/slots`` whether its suspects are stalled, and end those."""
        asked = self._clock()
        view = await read_slots(self._transport, base_url, self.probe_s)
        now = self._clock()
        if view is not None:
            self._silent.pop(base_url, None)  # it answers: any silence is over
        why: str | None
        if view is None:
            # llama.cpp answers /slots between batches only, and one batch of a long
            # prompt on a CPU can take a minute: a silent engine is a stall only once it
            # has stayed silent, look after look, for twice the stall time.
            silent_since = self._silent.setdefault(base_url, asked)
            silent_s = now - silent_since
            why = (
                f"its engine has not answered /slots for {silent_s:.0f} s"
                if silent_s >= 2 * self.stall_s
                else None
            )
        elif view.prompt:
            why = None  # reading a prompt: not a stall
        elif not view.working:
            why = "its engine is working on no request (/slots)"
        else:
            before = self._seen.get(base_url)
            self._seen[base_url] = view.decoded
            why = (
                None
                if before is None or before != view.decoded
                else "its engine's slots decoded nothing since the last look (/slots)"
            )
        for watch in suspects:
            if watch not in self._watches or watch.stalled:
                continue
            if why is None:
                watch.since = now
                continue
            self.stalls += 1
            message = (
                f"Local model '{watch.model}' produced no token for "
                f"{now - watch.since:.0f} s (WLM_LOCAL_STALL_S={self.stall_s:g}) and "
                f"{why}: the request was ended and its slot freed."
            )
            log.warning("%s", message)
            watch.stall(LocalStalled(message))

    async def close(self) -> None:
        self._watches.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
