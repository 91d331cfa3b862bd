"""The Hugging Face Hub: find GGUF models and pull them into the models directory.

- :mod:`wlm.hub.client`: the Hub client (search, a repo's models) over huggingface_hub.
- :mod:`wlm.hub.downloads`: one model's resumable, verified download.
- :mod:`wlm.hub.pulls`: the server's background pulls (progress, cancel).
- :mod:`wlm.hub.quants`: pull references, quantizations and split sets (pure).
- :mod:`wlm.hub.progress`, :mod:`wlm.hub.fit`, :mod:`wlm.hub.errors`: progress and its
  bar, the memory hint, and what can go wrong.
"""

from wlm.hub.client import HubClient, RepoListing, RepoSummary
from wlm.hub.downloads import Pulled, model_id, pull_model
from wlm.hub.errors import HubError, PullCancelled
from wlm.hub.progress import Progress, format_bar
from wlm.hub.pulls import Pull, PullManager
from wlm.hub.quants import PullRef, RefError, parse_ref

__all__ = [
    "HubClient",
    "HubError",
    "Progress",
    "Pull",
    "PullCancelled",
    "PullManager",
    "PullRef",
    "Pulled",
    "RefError",
    "RepoListing",
    "RepoSummary",
    "format_bar",
    "model_id",
    "parse_ref",
    "pull_model",
]
