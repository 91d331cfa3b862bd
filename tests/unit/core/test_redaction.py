"""Redaction: no configured secret survives, whatever else the text holds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wlm.redaction import Redactor

# Keys as providers and wlm issue them, plus the characters a pattern must escape.
KEY_ALPHABET = st.sampled_from(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+*?()|\\$^{}"
)
secrets_ = st.lists(st.text(KEY_ALPHABET, min_size=12, max_size=40), min_size=1, max_size=30)
filler = st.text(max_size=30)


@given(secrets_, st.lists(filler, min_size=1, max_size=8), st.data())
def test_no_secret_survives_in_text_or_bytes(
    secrets: list[str], pieces: list[str], data: st.DataObject
) -> None:
    # The text holds secrets between arbitrary pieces, some of them twice or back to back.
    chosen = data.draw(st.lists(st.sampled_from(secrets), min_size=1, max_size=10))
    text = "".join(p + s for p, s in zip(pieces * 10, chosen, strict=False))
    redactor = Redactor(tuple(secrets))
    as_text = redactor.text(text)
    as_bytes = redactor.bytes(text.encode())
    for secret in secrets:
        assert secret not in as_text
        assert secret.encode() not in as_bytes
    assert "[redacted]" in as_text
    assert as_bytes == as_text.encode()


@given(secrets_, filler)
def test_text_without_a_secret_comes_back_unchanged(secrets: list[str], text: str) -> None:
    redactor = Redactor(tuple(secrets))
    if not any(secret in text for secret in secrets):
        assert redactor.text(text) is text
        assert redactor.bytes(text.encode()) == text.encode()


def test_a_key_that_contains_another_is_redacted_whole() -> None:
    redactor = Redactor(("sk-abc", "sk-abc-longer-key"))
    assert redactor.text("key sk-abc-longer-key and sk-abc") == "key [redacted] and [redacted]"


def test_hundreds_of_keys_are_all_redacted() -> None:
    keys = [f"sk-client-{i:04d}-0123456789" for i in range(300)]
    redactor = Redactor(tuple(keys))
    text = " ".join(keys[::7])
    assert redactor.text(text) == " ".join(["[redacted]"] * len(keys[::7]))


def test_no_secrets_and_an_added_one() -> None:
    assert Redactor(()).text("anything sk-1234") == "anything sk-1234"
    assert Redactor(("",)).text("anything") == "anything"
    redactor = Redactor(()).with_secret("sk-added-key")
    assert redactor.bytes(b"x sk-added-key y") == b"x [redacted] y"
