"""What the rest of wlm needs from local models: the :class:`LocalModels` protocol.

:class:`wlm.local.manager.LocalManager` implements it; the local adapter, the
catalog, the management API and the pages depend on this protocol only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from attrs import define, frozen

if TYPE_CHECKING:
    from wlm.local.slot_affinity import Prefix
    from wlm.local.supervisor import InstanceInfo

__all__ = ["EngineLease", "LocalModel", "LocalModels", "QueueEntry", "QueuePlace", "ScanChanges"]


@frozen
class LocalModel:
    """A GGUF model under the models directory, with its engine's state."""

    id: str
    path: Path
    size_bytes: int
    architecture: str | None
    parameters: int | None
    context_length: int | None
    quantization: str | None
    has_chat_template: bool
    projector: Path | None
    broken_reason: str | None
    state: str  # an InstanceState value; "stopped" for a model never started


@frozen
class ScanChanges:
    """What a rescan changed: model ids (broken ones included) found or gone, sorted."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@define
class EngineLease:
    """A running engine held for one request; ``release()`` (idempotent) lets it go.

    ``slot``: the engine slot to ask for (llama.cpp's ``id_slot``; cache-aware slots),
    or None to let the engine pick.
    """

    base_url: str
    _release: Callable[[], None] | None
    slot: int | None = None

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


@frozen
class QueuePlace:
    """Who waits in the queue in front of the engines (docs/local-models.md).

    ``priority``: ``interactive``, ``normal`` or ``batch``. ``cancel()`` ends the request
    (``DELETE /api/queue/{id}``); ``tokens()`` counts what it generated so far.
    ``on_position(position, of)`` is awaited each time its place in the queue changes
    while it waits, and with ``(None, 0)`` once it leaves the queue (only if it was
    told a position). ``waited(seconds)`` is told how long it waited in the queue.
    ``prefix``: its prompt's fingerprint, for cache-aware slots (None: none).
    """

    request_id: str = ""  # unique: the telemetry row's id (what a cancel names)
    priority: str = "normal"
    client: str | None = None
    stream: bool = False
    cancel: Callable[[], None] | None = None
    tokens: Callable[[], int | None] | None = None
    on_position: Callable[[int | None, int], Awaitable[None]] | None = None
    waited: Callable[[float], None] | None = None
    client_request_id: str = ""  # the x-request-id the client sent or was given
    prefix: Prefix | None = None


@frozen
class QueueEntry:
    """A queued or running request, for ``GET /api/queue`` and ``/instances``."""

    id: str  # the telemetry row's id (what DELETE /api/queue/{id} takes)
    request_id: str  # the x-request-id the client got
    model: str
    priority: str
    state: str  # "waiting" or "running"
    position: int | None  # 1 = next, while waiting
    client: str | None
    stream: bool
    enqueued_at: float  # epoch seconds
    waited_s: float  # in the queue (still waiting: so far)
    running_s: float | None  # since it was let through
    tokens: int | None  # generated so far, when known


class LocalModels(Protocol):
    """Local GGUF models and the engines that serve them."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def kill_engines_now(self) -> list[int]: ...

    def on_engine_event(self, sink: Callable[[str, str, str], None] | None) -> None:
        """Tell ``sink(model_id, event, detail)`` what happens to engines by themselves:
        ``crash`` (it exited on its own) and ``held`` (a crash loop; docs/local-models.md)."""
        ...

    def model_ids(self) -> frozenset[str]:
        """Usable model ids (cached; cheap on every request)."""
        ...

    def routable_ids(self) -> frozenset[str]:
        """Every discovered id, broken ones too (a broken one answers 503 with its reason)."""
        ...

    def has_model(self, model_id: str) -> bool: ...

    def list_models(self) -> list[LocalModel]: ...

    async def rescan(self) -> ScanChanges: ...

    def is_ready(self, model_id: str) -> bool: ...

    async def acquire(
        self, model_id: str, *, max_wait_s: float | None = None, place: QueuePlace | None = None
    ) -> EngineLease:
        """Wait for a turn in the queue, start the engine if needed and hold one of its
        slots for one request (``place`` says who waits).

        With ``max_wait_s``, wait at most that long for the engine to be ready with a
        free slot (ModelUnavailable past it; a load it began goes on).
        """
        ...

    def queue(self) -> list[QueueEntry]:
        """The requests running on the engines and waiting for them."""
        ...

    def cancel_queued(self, request_id: str) -> QueueEntry | None:
        """Cancel a running or waiting request; what it was, or None when unknown."""
        ...

    async def load(self, model_id: str) -> None: ...

    async def unload(self, model_id: str) -> None: ...

    def instances(self) -> list[InstanceInfo]: ...

    def logs(self, model_id: str) -> list[str]: ...

    def follow_logs(self, model_id: str, backlog: bool = True) -> AsyncIterator[str]: ...

    async def wait_for_state(self, model_id: str, *states: str, timeout: float = 30.0) -> str: ...
