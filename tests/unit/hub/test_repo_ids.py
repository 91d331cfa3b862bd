"""The folder a pull writes to is named by the repo asked for, never by whatever id the
Hub endpoint (a mirror, HF_ENDPOINT) answers with."""

from __future__ import annotations

import pytest

from wlm.hub.client import _canonical


def test_the_hubs_spelling_of_the_same_repo_is_kept() -> None:
    assert _canonical("someone/tiny-chat-gguf", "someone/Tiny-Chat-GGUF") == (
        "someone/Tiny-Chat-GGUF"
    )


@pytest.mark.parametrize(
    "answered",
    ["/tmp/wlm-escape", "../../etc", "someone/../../etc", "other/Tiny-Chat-GGUF", "", None],
)
def test_any_other_answer_is_ignored(answered: str | None) -> None:
    assert _canonical("someone/Tiny-Chat-GGUF", answered) == "someone/Tiny-Chat-GGUF"
