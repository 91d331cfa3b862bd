"""Pulls the server runs in the background: one thread each, cancellable, readable.

``POST /api/models/pull`` and the Models page start one with :meth:`PullManager.start`
(the repo is listed and the model chosen first, so a missing repo or quantization is
answered at once); the download runs in a daemon thread, off the event loop. Its
:class:`Pull` is kept (the last ``_KEEP`` of them) for ``GET /api/models/pulls``. When the
files are in place the manager awaits ``on_pulled`` (the local models' rescan) before
the pull reads ``done``, so a finished model is listed and loadable at once.

:meth:`PullManager.close` (the server stopping) interrupts every running pull: their
partial files stay, and the next pull of the same model resumes them. A cancel
(:meth:`PullManager.cancel`) deletes them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from attrs import define, field

from wlm.hub.client import HubClient, RepoListing
from wlm.hub.downloads import Pulled, discard_partials, model_id, pull_model
from wlm.hub.errors import HubError, PullCancelled
from wlm.hub.fit import fit_hint, machine_memory
from wlm.hub.progress import Progress
from wlm.hub.quants import ModelFiles, PullRef

__all__ = ["ACTIVE", "Pull", "PullManager"]

log = logging.getLogger("wlm.hub")

ACTIVE = ("queued", "downloading", "cancelling")
_KEEP = 50
_JOIN_ON_CLOSE_S = 3.0


@define(eq=False)
class Pull:
    """One pull: what, where it stands, and how it ended."""

    id: str
    ref: PullRef
    listing: RepoListing
    model: ModelFiles
    state: str = "queued"  # queued, downloading, cancelling, done, failed, cancelled, interrupted
    error: str | None = None
    error_code: str | None = None
    progress: Progress = field(factory=Progress)
    created_at: datetime = field(factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    pulled: Pulled | None = None
    stop: PullCancelled | None = None  # set to have the download stop at its next chunk
    thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def check(self) -> None:
        """Called by the download per chunk: raises once a stop was asked for."""
        if self.stop is not None:
            raise self.stop

    def view(self, redact: Callable[[str], str] = str) -> dict[str, Any]:
        """The pull as JSON-ready data (what the API and the page show); its error
        message goes through ``redact``."""
        snapshot = self.progress.snapshot()
        fraction = 1.0 if self.state == "done" else snapshot.fraction
        return {
            "id": self.id,
            "ref": str(self.ref),
            "repo": self.listing.repo,
            "quant": self.model.label,
            "model_id": model_id(self.listing.repo, self.model),
            "files": [f.path for f in self.model.files],
            "state": self.state,
            "phase": snapshot.phase if self.state == "downloading" else self.state,
            "bytes_done": self.model.size if self.state == "done" else snapshot.bytes_done,
            "bytes_total": self.model.size,
            "percent": round(fraction * 100, 1) if fraction is not None else None,
            "speed_bps": round(snapshot.speed_bps) if self.state == "downloading" else 0,
            "eta_s": round(snapshot.eta_s, 1)
            if self.state == "downloading" and snapshot.eta_s is not None
            else None,
            "resumed_bytes": snapshot.resumed_bytes,
            "file": snapshot.file,
            "files_done": snapshot.files_done,
            "files_total": len(self.model.files),
            "error": redact(self.error) if self.error else None,
            "error_code": self.error_code,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


class PullManager:
    """Starts, lists, cancels and (on close) interrupts the server's pulls."""

    def __init__(
        self,
        client: HubClient,
        models_dir: Path,
        on_pulled: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        self.client = client
        self.models_dir = models_dir
        self._on_pulled = on_pulled
        self._pulls: dict[str, Pull] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def all(self) -> list[Pull]:
        """Every kept pull, newest first."""
        return sorted(self._pulls.values(), key=lambda p: p.created_at, reverse=True)

    def get(self, pull_id: str) -> Pull | None:
        return self._pulls.get(pull_id)

    async def search(self, query: str, limit: int = 20) -> list[dict[str, Any]]:
        hits = await asyncio.to_thread(self.client.search, query, limit)
        return [
            {
                "id": h.id,
                "downloads": h.downloads,
                "likes": h.likes,
                "gated": h.gated,
                "last_modified": h.last_modified.isoformat() if h.last_modified else None,
            }
            for h in hits
        ]

    async def files(self, repo: str) -> dict[str, Any]:
        """``repo``'s GGUF models grouped by quantization, with sizes and a memory hint."""
        listing = await asyncio.to_thread(self.client.listing, repo)
        memory = machine_memory()
        local = self.models_dir / listing.repo
        models = []
        for model in listing.models:
            level, hint = fit_hint(model.size, memory)
            models.append(
                {
                    "quant": model.label,
                    "name": model.name,
                    "size_bytes": model.size,
                    "parts": model.parts,
                    "complete": model.complete,
                    "files": [{"path": f.path, "size_bytes": f.size} for f in model.files],
                    "fit": level,
                    "fit_hint": hint,
                    "model_id": model_id(listing.repo, model),
                    "on_disk": all((local / f.name).is_file() for f in model.files),
                }
            )
        return {
            "repo": listing.repo,
            "commit": listing.commit,
            "gated": listing.gated,
            "token_set": self.client.has_token,
            "models": models,
            "projectors": [{"path": f.path, "size_bytes": f.size} for f in listing.projectors],
            "memory": {"total_bytes": memory.total, "available_bytes": memory.available},
        }

    async def start(self, ref: PullRef) -> tuple[Pull, bool]:
        """Start pulling ``ref`` (or return the running pull of the same model).

        Returns the pull and whether it is new. Raises :class:`HubError` when the repo
        or the quantization does not exist, or the repo is gated and no token is set.
        """
        if self._closed:
            raise HubError("The server is stopping.", status=503)
        self._loop = asyncio.get_running_loop()
        listing, model = await asyncio.to_thread(self.client.plan, ref)
        wanted = model_id(listing.repo, model)
        for pull in self._pulls.values():
            if pull.active and model_id(pull.listing.repo, pull.model) == wanted:
                return pull, False
        before = [p for p in self._pulls.values() if model_id(p.listing.repo, p.model) == wanted]
        pull = Pull(id=f"pull_{secrets.token_hex(6)}", ref=ref, listing=listing, model=model)
        self._pulls[pull.id] = pull
        self._forget_old()
        thread = threading.Thread(
            target=self._run, args=(pull, before), name=f"wlm-pull-{pull.id}", daemon=True
        )
        pull.thread = thread
        thread.start()
        return pull, True

    def _forget_old(self) -> None:
        finished = [p for p in self.all() if not p.active]
        for pull in finished[_KEEP:]:
            self._pulls.pop(pull.id, None)

    def _run(self, pull: Pull, before: list[Pull]) -> None:
        """The pull's thread: wait out an earlier pull of the same files, then download."""
        for earlier in before:  # a cancelled one may still be cleaning up its part files
            if earlier.thread is not None:
                earlier.thread.join()
        if pull.stop is None:
            pull.state = "downloading"
        try:
            pull.check()
            pulled = pull_model(
                self.client, pull.listing, pull.model, self.models_dir, pull.progress, pull.check
            )
        except PullCancelled as stop:
            if stop.discard:
                discard_partials(self.models_dir, pull.listing.repo, pull.model)
            self._finish(pull, "cancelled" if stop.discard else "interrupted", None)
            return
        except HubError as exc:
            self._finish(pull, "failed", exc)
            return
        except Exception as exc:
            log.exception("pull %s failed", pull.ref)
            self._finish(pull, "failed", HubError(f"{type(exc).__name__}: {exc}"))
            return
        pull.pulled = pulled
        loop = self._loop
        if self._on_pulled is not None and loop is not None and not loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(self._rescan(), loop).result(timeout=60)
            except Exception as exc:  # the files are there; the next scan lists them
                log.warning("rescan after pulling %s failed: %s", pull.ref, exc)
        log.info("pulled %s as %s (%d bytes)", pull.ref, pulled.model_id, pulled.size_bytes)
        self._finish(pull, "done", None)

    async def _rescan(self) -> None:
        if self._on_pulled is not None:
            await self._on_pulled()

    @staticmethod
    def _finish(pull: Pull, state: str, error: HubError | None) -> None:
        if error is not None:
            pull.error, pull.error_code = error.message, error.code
            log.warning("pull %s failed: %s", pull.ref, error.message)
        pull.finished_at = datetime.now(UTC)
        pull.state = state

    async def cancel(self, pull_id: str, wait_s: float = 5.0) -> Pull | None:
        """Stop a pull and delete its partial files; waits up to ``wait_s`` for its thread."""
        pull = self._pulls.get(pull_id)
        if pull is None:
            return None
        if pull.active:
            pull.stop = PullCancelled("cancelled", discard=True)
            pull.state = "cancelling"
            if pull.thread is not None:
                await asyncio.to_thread(pull.thread.join, wait_s)
        return pull

    async def close(self) -> None:
        """Interrupt every running pull (their part files stay, to resume later)."""
        self._closed = True
        running = [p for p in self._pulls.values() if p.active]
        for pull in running:
            pull.stop = PullCancelled("interrupted: the server stopped", discard=False)
        deadline = time.monotonic() + _JOIN_ON_CLOSE_S
        for pull in running:
            if pull.thread is not None:
                remaining = max(0.0, deadline - time.monotonic())
                await asyncio.to_thread(pull.thread.join, remaining)
