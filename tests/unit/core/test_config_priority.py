"""WLM_KEY_PRIORITY: each client key's default place in the local engines' queue."""

from __future__ import annotations

import pytest

from wlm.config import PRIORITIES, ConfigError, load_settings
from wlm.local.queue import PRIORITIES as QUEUE_PRIORITIES

KEYS = "ci:sk-wlm-ci-0123456789,alice:sk-wlm-alice-0123456789"


def test_key_priorities_are_read_in_any_case() -> None:
    settings = load_settings(
        {"WLM_API_KEYS": KEYS, "WLM_KEY_PRIORITY": "ci:batch, alice:Interactive,*:normal"}
    )
    assert settings.key_priority == (("ci", "batch"), ("alice", "interactive"), ("*", "normal"))
    assert load_settings({}).key_priority == ()
    assert PRIORITIES == QUEUE_PRIORITIES


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ci:urgent", "ci: unknown priority 'urgent'; use interactive, normal, batch"),
        ("bob:batch", "'bob' is not a key name from WLM_API_KEYS (known: alice, ci) nor *"),
        ("ci", "expected name:priority, got 'ci'"),
        ("ci:batch,ci:normal", "'ci' has two entries"),
    ],
)
def test_a_bad_entry_stops_wlm_with_a_message_that_names_it(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"WLM_API_KEYS": KEYS, "WLM_KEY_PRIORITY": value})
    assert str(caught.value) == f"WLM_KEY_PRIORITY: {message}"
