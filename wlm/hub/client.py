"""The Hub client: search GGUF repos and list a repo's models, through huggingface_hub.

Every call goes through ``HfApi`` with wlm's ``HF_ENDPOINT`` (a mirror works) and
``HF_TOKEN``; without a token the library's own lookup applies (``hf auth login``).
Calls block: the server runs them in a worker thread.
"""

from __future__ import annotations

from datetime import datetime

from attrs import frozen
from huggingface_hub import HfApi, constants, get_token

from wlm.config import Settings
from wlm.hub.errors import NothingToPull, gated_repo, hub_errors
from wlm.hub.quants import (
    REPO_ID,
    HubFile,
    ModelFiles,
    PullRef,
    RefError,
    group_gguf_files,
    select_model,
)

__all__ = ["HubClient", "RepoListing", "RepoSummary"]

_SEARCH_FIELDS = ["downloads", "likes", "gated", "lastModified"]


@frozen
class RepoSummary:
    """A search hit: a repo holding GGUF files, with how popular and how open it is."""

    id: str
    downloads: int
    likes: int
    gated: bool
    last_modified: datetime | None


@frozen
class RepoListing:
    """A repo's GGUF models (by quantization, split sets joined) at one commit."""

    repo: str
    commit: str | None
    gated: bool
    models: tuple[ModelFiles, ...]
    projectors: tuple[HubFile, ...]

    def select(self, ref: PullRef) -> ModelFiles:
        """The model ``ref`` names; :class:`NothingToPull` lists what there is.

        A projector (``mmproj``) named by its file is pulled like a model: in the same
        folder, wlm attaches it to the repo's models.
        """
        projector = next((p for p in self.projectors if p.path == ref.file), None)
        if projector is not None:
            return ModelFiles(projector.name[: -len(".gguf")], None, (projector,))
        try:
            return select_model(list(self.models), ref)
        except RefError as exc:
            raise NothingToPull(str(exc), exc.available) from None


class HubClient:
    """Search and list through one ``HfApi`` configured from Settings."""

    def __init__(self, settings: Settings) -> None:
        self.endpoint = (settings.hf_endpoint or constants.ENDPOINT).rstrip("/")
        self.token = settings.hf_token
        self.api = HfApi(endpoint=self.endpoint, token=self.token)

    @property
    def has_token(self) -> bool:
        """HF_TOKEN is set, or the library has a token of its own (``hf auth login``)."""
        return self.token is not None or get_token() is not None

    def search(self, query: str, limit: int = 20) -> list[RepoSummary]:
        """GGUF repos whose id contains ``query``, most downloaded first."""
        with hub_errors(self.endpoint, "the model search", has_token=self.has_token):
            found = self.api.list_models(
                search=query.strip() or None,
                filter="gguf",
                sort="downloads",
                limit=limit,
                expand=_SEARCH_FIELDS,  # type: ignore[arg-type]
            )
            return [
                RepoSummary(
                    id=info.id,
                    downloads=info.downloads or 0,
                    likes=info.likes or 0,
                    gated=bool(info.gated),
                    last_modified=info.last_modified,
                )
                for info in found
            ]

    def listing(self, repo: str) -> RepoListing:
        """``repo``'s GGUF models with their sizes and LFS sha256 (one call: ``model_info``)."""
        with hub_errors(self.endpoint, repo, has_token=self.has_token):
            info = self.api.model_info(repo, files_metadata=True)
        files = [
            HubFile(
                path=sibling.rfilename,
                size=sibling.lfs.size if sibling.lfs else sibling.size,
                sha256=sibling.lfs.sha256 if sibling.lfs else None,
            )
            for sibling in info.siblings or []
        ]
        models, projectors = group_gguf_files(files)
        return RepoListing(
            repo=_canonical(repo, info.id),
            commit=info.sha,
            gated=bool(info.gated),
            models=tuple(models),
            projectors=tuple(projectors),
        )

    def plan(self, ref: PullRef) -> tuple[RepoListing, ModelFiles]:
        """The repo's listing and the model ``ref`` names, or the :class:`HubError` to show:
        no such repo or quantization, or a gated repo while no token is set."""
        listing = self.listing(ref.repo)
        model = listing.select(ref)
        if listing.gated and not self.has_token:
            raise gated_repo(self.endpoint, listing.repo, denied=False)
        return listing, model


def _canonical(asked: str, answered: str | None) -> str:
    """The repo id to name its folder under WLM_MODELS_DIR: the Hub's spelling of the one
    asked for, or the one asked for (an endpoint may answer any id, even a path)."""
    if answered and answered.lower() == asked.lower() and REPO_ID.fullmatch(answered):
        return answered
    return asked
