"""Pull one model from the Hub into ``WLM_MODELS_DIR/<owner>/<repo>/``.

Each file goes through huggingface_hub: ``get_hf_file_metadata`` (the HEAD of its
``/resolve/`` URL: commit, ETag, size, where the bytes are) and ``http_get`` (the
transfer, with ``Range`` to resume). What wlm adds:

- **Resumable across runs.** Bytes land in a hidden ``.<file>.<etag>.part`` next to the
  final file (discovery skips dot-names). A pull that was interrupted (Ctrl-C, a dropped
  connection, the server stopping) leaves it; the next pull of the same file sends
  ``Range: bytes=<what is there>-`` and fetches only the rest. A new upload (another ETag)
  starts over.
- **One model, all parts.** A split set's parts stay hidden until every one of them is
  complete and verified, then all are renamed into place, so wlm never lists a
  half-downloaded set.
- **Verified.** The size the Hub reports, and the sha256 of its LFS metadata (GGUF files
  are LFS files): a mismatch deletes the part and fails the pull.
- **Progress and cancel.** A :class:`~wlm.hub.progress.Progress` is updated per chunk;
  ``check`` is called per chunk too and raises :class:`PullCancelled` to stop.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from attrs import frozen
from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
from huggingface_hub.file_download import http_get
from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]  # re-exported
from tqdm import tqdm

from wlm.hub.client import HubClient, RepoListing
from wlm.hub.errors import DownloadFailed, hub_errors
from wlm.hub.progress import Progress
from wlm.hub.quants import HubFile, ModelFiles

__all__ = ["CHUNK_BYTES", "Pulled", "discard_partials", "model_dir", "model_id", "pull_model"]

# huggingface_hub reads 10 MB before each write, progress update and chance to cancel;
# 64 KiB (what a socket read gives anyway) keeps the bar live and a cancel prompt.
CHUNK_BYTES = 64 * 1024
_HASH_BLOCK = 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SAFE_TAG = re.compile(r"[^0-9A-Za-z]")

Check = Callable[[], None]


@frozen
class Pulled:
    """A model now on disk: its local id, files, size, and the bytes a resume saved."""

    model_id: str
    files: tuple[Path, ...]
    size_bytes: int
    resumed_bytes: int


def model_dir(models_dir: Path, repo: str) -> Path:
    """Where ``owner/repo``'s files go: ``<models_dir>/owner/repo``."""
    return models_dir / repo


def model_id(repo: str, model: ModelFiles) -> str:
    """The id wlm lists the pulled model under (its path under the models directory)."""
    return f"{repo}/{model.name}"


def _partials(directory: Path, file: HubFile) -> list[Path]:
    return sorted(directory.glob(f".{glob.escape(file.name)}.*.part"))


def discard_partials(models_dir: Path, repo: str, model: ModelFiles) -> None:
    """Delete what a cancelled pull of ``model`` left behind."""
    directory = model_dir(models_dir, repo)
    for file in model.files:
        for partial in _partials(directory, file):
            partial.unlink(missing_ok=True)


def _progress_bar(progress: Progress, check: Check) -> type[Any]:
    """A silent tqdm for http_get that feeds ``progress`` and calls ``check`` per chunk."""

    class Bar(tqdm):  # type: ignore[misc]  # tqdm ships no type information
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            check()
            progress.add(int(n or 0))
            return None

    return Bar


def _sha256(path: Path, check: Check) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(_HASH_BLOCK):
            digest.update(block)
            check()
    return digest.hexdigest()


def _download(
    client: HubClient,
    listing: RepoListing,
    file: HubFile,
    directory: Path,
    progress: Progress,
    check: Check,
) -> Path:
    """Fetch (or finish fetching) ``file`` into its hidden part file; return that path."""
    repo = listing.repo
    url = hf_hub_url(repo, file.path, revision=listing.commit, endpoint=client.endpoint)
    with hub_errors(client.endpoint, repo, has_token=client.has_token):
        meta = get_hf_file_metadata(url, token=client.token, endpoint=client.endpoint)
    size = meta.size if meta.size is not None else file.size
    sha256 = file.sha256 or (meta.etag if meta.etag and _SHA256.match(meta.etag) else None)
    tag = _SAFE_TAG.sub("", sha256 or meta.etag or meta.commit_hash or "")[:16] or "part"
    partial = directory / f".{file.name}.{tag}.part"
    for stale in _partials(directory, file):
        if stale != partial:  # an earlier upload of this file: its bytes are no use
            stale.unlink(missing_ok=True)
    have = partial.stat().st_size if partial.exists() else 0
    if size is not None and have > size:
        partial.unlink()
        have = 0
    headers = build_hf_headers(token=client.token)
    if urlsplit(meta.location).netloc != urlsplit(url).netloc:
        headers.pop("authorization", None)  # a CDN's signed URL: the token stays home
    progress.begin_file(file.name, have)
    constants.DOWNLOAD_CHUNK_SIZE = CHUNK_BYTES
    try:
        with (
            hub_errors(client.endpoint, repo, has_token=client.has_token),
            partial.open("ab") as out,
        ):
            http_get(
                meta.location,
                out,
                resume_size=have,
                headers=headers,
                expected_size=size,
                displayed_filename=file.name,
                tqdm_class=_progress_bar(progress, check),
            )
    except OSError as exc:
        if "Consistency check failed" not in str(exc):
            raise DownloadFailed(f"cannot write {partial}: {exc.strerror or exc}") from None
    got = partial.stat().st_size
    if size is not None and got != size:
        raise DownloadFailed(
            f"{file.path}: the Hub reports {size} bytes but {got} arrived; pull again to resume"
        )
    if sha256 is not None:
        progress.phase("verifying")
        digest = _sha256(partial, check)
        if digest != sha256:
            partial.unlink(missing_ok=True)
            raise DownloadFailed(
                f"{file.path}: sha256 {digest} is not the {sha256} the Hub reports; "
                "the download was deleted, pull again"
            )
    progress.end_file(got)
    return partial


def pull_model(
    client: HubClient,
    listing: RepoListing,
    model: ModelFiles,
    models_dir: Path,
    progress: Progress,
    check: Check = lambda: None,
) -> Pulled:
    """Download every file of ``model`` (resuming what is there), verify, then put it in place.

    Blocks; raises :class:`~wlm.hub.errors.HubError` (``PullCancelled`` from ``check``).
    A file already in place with the size the Hub reports is kept as it is.
    """
    if not model.complete:
        raise DownloadFailed(
            f"{listing.repo}: {model.name} is a split set of {model.parts} parts but the repo "
            f"holds {len(model.files)}"
        )
    directory = model_dir(models_dir, listing.repo)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadFailed(f"cannot create {directory}: {exc.strerror or exc}") from None
    progress.plan(len(model.files), model.size)
    moves: list[tuple[Path, Path]] = []
    for file in model.files:
        check()
        final = directory / file.name
        if final.is_file() and file.size is not None and final.stat().st_size == file.size:
            progress.begin_file(file.name, file.size)
            progress.end_file(file.size)
            continue
        moves.append((_download(client, listing, file, directory, progress, check), final))
    check()
    for partial, final in moves:
        os.replace(partial, final)
    progress.phase("done")
    files = tuple(directory / f.name for f in model.files)
    return Pulled(
        model_id=model_id(listing.repo, model),
        files=files,
        size_bytes=sum(f.stat().st_size for f in files),
        resumed_bytes=progress.snapshot().resumed_bytes,
    )
