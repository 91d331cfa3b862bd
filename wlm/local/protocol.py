"""What the rest of wlm needs from local models: the :class:`LocalModels` protocol.

:class:`wlm.local.manager.LocalManager` implements it; the local adapter, the
catalog, the management API and the pages depend on this protocol only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from attrs import define, frozen

if TYPE_CHECKING:
    from wlm.local.supervisor import InstanceInfo

__all__ = ["EngineLease", "LocalModel", "LocalModels", "ScanChanges"]


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
    """A running engine held for one request; ``release()`` (idempotent) lets it go."""

    base_url: str
    _release: Callable[[], None] | None

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


class LocalModels(Protocol):
    """Local GGUF models and the engines that serve them."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def kill_engines_now(self) -> list[int]: ...

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

    async def acquire(self, model_id: str, *, max_wait_s: float | None = None) -> EngineLease:
        """Start the engine if needed and hold it for one request.

        With ``max_wait_s``, wait at most that long for the engine to be ready with a
        free slot (ModelUnavailable past it; a load it began goes on).
        """
        ...

    async def load(self, model_id: str) -> None: ...

    async def unload(self, model_id: str) -> None: ...

    def instances(self) -> list[InstanceInfo]: ...

    def logs(self, model_id: str) -> list[str]: ...

    def follow_logs(self, model_id: str, backlog: bool = True) -> AsyncIterator[str]: ...

    async def wait_for_state(self, model_id: str, *states: str, timeout: float = 30.0) -> str: ...
