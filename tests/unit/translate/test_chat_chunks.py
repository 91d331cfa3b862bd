"""The short path for text-only chunks gives exactly the events of the full reading."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wlm.translate import chat_chunks, messages_stream, responses_stream
from wlm.translate.chat_chunks import plain_text_delta
from wlm.translate.messages_stream import ChatToMessagesStream

from .test_responses_stream import translator


def text_chunk(text: str, **delta: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text, **delta}, "finish_reason": None}]}


def test_only_a_text_only_chunk_takes_the_short_path() -> None:
    assert plain_text_delta(text_chunk("hi")) == "hi"
    assert plain_text_delta(text_chunk("hi", role="assistant", refusal=None)) == "hi"
    assert plain_text_delta({**text_chunk("hi"), "usage": None}) == "hi"  # OpenAI's null
    for other in (
        text_chunk(""),
        text_chunk("hi", refusal="no"),
        text_chunk("hi", reasoning_content="hmm"),
        text_chunk("hi", tool_calls=[{"index": 0}]),
        {**text_chunk("hi"), "usage": {"prompt_tokens": 1}},
        {**text_chunk("hi"), "error": {"message": "x"}},
        {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]},
        {"choices": [{"index": 1, "delta": {"content": "hi"}}]},
        {"choices": [text_chunk("a")["choices"][0], text_chunk("b")["choices"][0]]},
        {"choices": [{"index": 0, "delta": {"content": 5}}]},
        [],
    ):
        assert plain_text_delta(other) is None, other  # type: ignore[arg-type]


pieces = st.lists(
    st.one_of(
        st.builds(text_chunk, st.text(min_size=1, max_size=8)),
        st.builds(lambda t: text_chunk("", reasoning_content=t), st.text(min_size=1, max_size=8)),
        st.builds(lambda t: text_chunk(t, refusal=t), st.text(min_size=1, max_size=8)),
        st.just({**text_chunk("x"), "usage": None}),
    ),
    max_size=12,
)
ending = [
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}},
]


@given(chunks=pieces)
def test_both_translations_are_the_same_with_and_without_the_short_path(
    chunks: list[dict[str, Any]],
) -> None:
    def both() -> tuple[list[Any], list[Any]]:
        messages = ChatToMessagesStream(model="m", message_id="msg_1")
        responses = translator()
        out_m: list[Any] = []
        out_r: list[Any] = []
        for chunk in [*chunks, *ending]:
            out_m += messages.feed(chunk)
            out_r += responses.feed(chunk)
        return out_m + messages.finish(), out_r + responses.finish()

    fast = both()
    with pytest.MonkeyPatch.context() as patch:
        for module in (messages_stream, responses_stream):
            patch.setattr(module, "plain_text_delta", lambda chunk: None)
        slow = both()
    assert fast == slow
    assert chat_chunks.plain_text_delta is plain_text_delta  # the patch was undone
