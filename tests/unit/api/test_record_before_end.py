"""With a journal (a durable sink), a request's row is submitted before the last part of
its answer goes out: a crash at any moment loses no row of an answer a client has in full.

Each test notes how many rows the sink held as each body part reached the client.
"""

from __future__ import annotations

from typing import Any

import pytest

from wlm.transport import MockResponse

from .pipeline import ListSink, body, chunk, completion, drive, make_gateway, sse
from .test_resilience import ANTHROPIC, HELLO, OPENAI, anthropic_message, error, scripted

KEYS = {"WLM_API_KEYS": "alice:sk-alice-0123456789"}
ALICE = [(b"authorization", b"Bearer sk-alice-0123456789")]


class Parts:
    """The number of rows the sink held when each part reached the client."""

    def __init__(self, sink: ListSink) -> None:
        self.sink = sink
        self.rows_seen: list[int] = []

    def __call__(self, part: bytes) -> None:
        self.rows_seen.append(len(self.sink.rows))


async def serve_durably(
    handler: Any, payload: bytes, env: dict[str, str] | None = None, **drive_args: Any
) -> tuple[Any, ListSink, Parts]:
    gateway, _, sink = make_gateway(handler, env)
    sink.durable = True
    parts = Parts(sink)
    reply = await drive(gateway, payload, on_part=parts, **drive_args)
    return reply, sink, parts


async def test_a_whole_answers_row_is_in_before_its_body_goes_out() -> None:
    reply, sink, parts = await serve_durably(
        scripted({OPENAI: [completion("hi")]}), body(model="gpt-4o", messages=HELLO)
    )
    assert reply.status == 200
    assert parts.rows_seen == [1]
    record = sink.only
    assert (record.status, record.http_status) == ("ok", 200)
    assert record.bytes_out == len(reply.body)
    assert record.completion_tokens == 1


async def test_a_streams_row_is_in_before_its_last_part_and_counts_the_whole_stream() -> None:
    events = sse(chunk("a"), chunk("b"), chunk(None, "stop", usage=USAGE))
    reply, sink, parts = await serve_durably(
        lambda request: MockResponse.sse(events),
        body(model="gpt-4o", messages=HELLO, stream=True),
    )
    assert reply.status == 200 and reply.body.endswith(b"data: [DONE]\n\n")
    assert parts.rows_seen[:-1] == [0] * (len(parts.rows_seen) - 1)  # during the stream
    assert parts.rows_seen[-1] == 1
    record = sink.only
    assert (record.status, record.http_status) == ("ok", 200)
    assert (record.prompt_tokens, record.completion_tokens) == (5, 2)
    assert record.bytes_out == len(reply.body)


async def test_a_stream_that_breaks_is_recorded_as_an_error_before_its_error_event() -> None:
    events = [*sse(chunk("a"), done=False), b"data: {not json\n\n"]
    reply, sink, parts = await serve_durably(
        lambda request: MockResponse.sse(events),
        body(model="gpt-4o", messages=HELLO, stream=True),
    )
    assert b"error" in reply.parts[-1]
    assert parts.rows_seen[-1] == 1
    assert sink.only.status == "error"


async def test_an_upstream_error_is_recorded_before_the_client_hears_of_it() -> None:
    reply, sink, parts = await serve_durably(
        scripted({OPENAI: [error(400)]}), body(model="gpt-4o", messages=HELLO)
    )
    assert reply.status == 400
    assert parts.rows_seen == [1]
    assert (sink.only.status, sink.only.http_status) == ("error", 400)


async def test_a_fallbacks_row_names_the_first_target_before_the_answer_goes_out() -> None:
    reply, sink, parts = await serve_durably(
        scripted({OPENAI: [error(503)], ANTHROPIC: [anthropic_message("hi")]}),
        body(model="gpt-4o", messages=HELLO),
        {"WLM_FALLBACKS": "gpt-4o=claude-sonnet-4-5", "WLM_RETRIES": "0"},
    )
    assert reply.status == 200
    assert parts.rows_seen == [1]
    record = sink.only
    assert (record.provider, record.fallback_from, record.attempts) == ("anthropic", "gpt-4o", 2)


async def test_a_chain_that_fails_throughout_names_no_fallback() -> None:
    reply, sink, _ = await serve_durably(
        scripted({OPENAI: [error(503)], ANTHROPIC: [error(503)]}),
        body(model="gpt-4o", messages=HELLO),
        {"WLM_FALLBACKS": "gpt-4o=claude-sonnet-4-5", "WLM_RETRIES": "0"},
    )
    assert reply.status == 503
    assert sink.only.fallback_from is None and sink.only.status == "error"


async def test_a_keys_tokens_count_before_the_answer_goes_out() -> None:
    gateway, _, sink = make_gateway(
        scripted({OPENAI: [completion("hi")] * 2}),
        {**KEYS, "WLM_KEY_LIMITS": "alice:tpm=4"},
    )
    sink.durable = True
    charged: list[int | None] = []
    usage = gateway.key_limits.usage

    def seen(part: bytes) -> None:
        charged.append(usage(["alice"])[0].tokens_used)

    first = await drive(gateway, body(model="gpt-4o", messages=HELLO), headers=ALICE, on_part=seen)
    assert first.status == 200 and charged == [4]  # the answer's 4 tokens, counted once
    refused = await drive(gateway, body(model="gpt-4o", messages=HELLO), headers=ALICE)
    assert refused.status == 429 and refused.error["code"] == "rate_limit_exceeded"
    assert len(sink.rows) == 2


async def test_a_client_that_leaves_mid_stream_leaves_one_row_saying_so() -> None:
    reply, sink, parts = await serve_durably(
        # One event, then nothing: only the client's leaving ends it.
        lambda request: MockResponse.sse(sse(chunk("a"), done=False), stall_after=True),
        body(model="gpt-4o", messages=HELLO, stream=True),
        leave_after_parts=1,
    )
    assert reply.status == 200 and parts.rows_seen == [0]
    assert (sink.only.status, sink.only.http_status) == ("cancelled", 499)


async def test_a_translated_stream_s_row_is_in_before_message_stop_goes_out() -> None:
    events = sse(chunk("a"), chunk(None, "stop", usage=USAGE))
    reply, sink, parts = await serve_durably(
        lambda request: MockResponse.sse(events),
        body(model="gpt-4o", max_tokens=10, messages=HELLO, stream=True),
        endpoint="messages",
    )
    assert reply.status == 200
    assert b"event: message_stop" in reply.parts[-1]
    assert b"message_stop" not in b"".join(reply.parts[:-1])
    assert parts.rows_seen[-1] == 1 and set(parts.rows_seen[:-1]) <= {0}
    assert (sink.only.status, sink.only.completion_tokens) == ("ok", 2)


@pytest.mark.parametrize("stream", [False, True])
async def test_without_a_journal_the_answer_does_not_wait_for_its_row(stream: bool) -> None:
    events = sse(chunk("a"), chunk(None, "stop"))
    gateway, _, sink = make_gateway(
        lambda request: MockResponse.sse(events) if stream else completion("hi")
    )
    parts = Parts(sink)
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO, stream=stream), on_part=parts)
    assert reply.status == 200
    assert set(parts.rows_seen) == {0}  # every part went out first
    assert sink.only.status == "ok"


async def test_a_failure_to_count_a_keys_use_never_costs_the_client_its_answer(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    gateway, _, sink = make_gateway(
        scripted({OPENAI: [completion("hi")]}), {**KEYS, "WLM_KEY_LIMITS": "alice:tpm=100"}
    )
    sink.durable = True

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug in counting")

    monkeypatch.setattr(gateway.key_limits, "finished", broken)
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO), headers=ALICE)
    assert reply.status == 200 and reply.json()["choices"][0]["message"]["content"] == "hi"
    assert sink.only.status == "ok"
    assert any("could not count request" in r.getMessage() for r in caplog.records)


USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
