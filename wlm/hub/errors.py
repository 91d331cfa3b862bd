"""What can go wrong with the Hub, as :class:`~wlm.errors.GatewayError` values.

Each message says what to do about it. huggingface_hub's exceptions are mapped in one
place, :func:`hub_errors`::

    HubError                  any Hub failure (its status is what the API answers)
    ├── RepoNotFound (404)    no such repo (or a private one the token cannot read)
    ├── NothingToPull (404)   the repo has no such quantization or file; lists the choices
    ├── GatedRepo (403)       the repo is gated: HF_TOKEN, and access granted on the Hub
    ├── BadToken (401)        the Hub refused HF_TOKEN itself
    ├── HubUnreachable (502)  no answer from HF_ENDPOINT (network, DNS, timeout, 5xx)
    ├── DownloadFailed (502)  the transfer broke off, or the bytes are not what the Hub says
    └── PullCancelled         cancelled (DELETE /api/models/pulls/{id}) or interrupted
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx2
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from wlm.errors import GatewayError

__all__ = [
    "BadToken",
    "DownloadFailed",
    "GatedRepo",
    "HubError",
    "HubUnreachable",
    "NothingToPull",
    "PullCancelled",
    "RepoNotFound",
    "gated_repo",
    "hub_errors",
]


class HubError(GatewayError):
    status = 502
    type = "hub_error"


class RepoNotFound(HubError):
    status = 404
    type = "not_found_error"
    code = "repo_not_found"


class NothingToPull(HubError):
    status = 404
    type = "not_found_error"
    code = "quant_not_found"

    def __init__(self, message: str, available: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.available = available


class GatedRepo(HubError):
    status = 403
    type = "permission_error"
    code = "gated_repo"


class BadToken(HubError):
    status = 401
    type = "authentication_error"
    code = "hf_token_refused"


class HubUnreachable(HubError):
    code = "hub_unreachable"


class DownloadFailed(HubError):
    code = "download_failed"


class PullCancelled(HubError):
    """Raised inside a download when it is cancelled; ``discard`` drops its partial files."""

    status = 409
    code = "cancelled"

    def __init__(self, message: str = "cancelled", *, discard: bool = True) -> None:
        super().__init__(message)
        self.discard = discard


def gated_repo(endpoint: str, repo: str, *, denied: bool) -> GatedRepo:
    """What to do about a gated repo: get a token, or (``denied``) get access with it."""
    page = f"{endpoint}/{repo}"
    if denied:
        return GatedRepo(
            f"{repo} is gated and HF_TOKEN's account has no access to it yet: request "
            f"access at {page} (the authors may have to approve it), then pull again."
        )
    return GatedRepo(
        f"{repo} is gated: accept its conditions at {page}, then set HF_TOKEN to an "
        f"access token of that account ({endpoint}/settings/tokens) in wlm's "
        "environment or .env, and pull again."
    )


@contextmanager
def hub_errors(endpoint: str, repo: str, *, has_token: bool) -> Iterator[None]:
    """Map huggingface_hub's (and its HTTP client's) errors about ``repo`` to :class:`HubError`."""
    try:
        yield
    except GatedRepoError as exc:
        raise gated_repo(
            endpoint, repo, denied=exc.response.status_code == 403 or has_token
        ) from None
    except RepositoryNotFoundError:
        private = (
            "" if has_token else ", or it is private: set HF_TOKEN to a token that can read it"
        )
        raise RepoNotFound(f"There is no model repo {repo} on {endpoint}{private}.") from None
    except RevisionNotFoundError:
        raise RepoNotFound(f"{repo} has no main branch on {endpoint}.") from None
    except EntryNotFoundError as exc:
        raise NothingToPull(f"{repo} has no such file ({exc.__class__.__name__}).") from None
    except HFValidationError as exc:
        raise NothingToPull(f"{repo!r} is not a valid repo id: {exc}") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code
        if status == 401:
            raise BadToken(
                f"{endpoint} refused HF_TOKEN (401): it is not a valid access token; "
                f"create one at {endpoint}/settings/tokens."
            ) from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise HubUnreachable(f"{endpoint} answered {status} for {repo}: {first}") from None
    except httpx2.TransportError as exc:
        raise HubUnreachable(
            f"cannot reach the Hub at {endpoint} ({type(exc).__name__}: {exc}); "
            "check the network, or set HF_ENDPOINT to a mirror."
        ) from None
