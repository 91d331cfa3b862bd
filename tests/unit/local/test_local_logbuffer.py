"""The engine log ring buffer, its live subscribers, and picking the engine's reason."""

from __future__ import annotations

from wlm.local.logbuffer import LogBuffer, engine_reason
from wlm.redaction import Redactor


def test_keeps_only_the_last_lines() -> None:
    logs = LogBuffer(capacity=3)
    for i in range(5):
        logs.append(f"line {i}\n")

    assert logs.lines() == ["line 2", "line 3", "line 4"]
    assert logs.tail(2) == ["line 3", "line 4"]


async def test_follow_gives_backlog_then_live_lines() -> None:
    logs = LogBuffer()
    logs.append("old")
    follower = logs.follow()
    assert await anext(follower) == "old"  # subscribed from here on

    logs.append("new 1")
    logs.append("new 2")

    assert [await anext(follower), await anext(follower)] == ["new 1", "new 2"]
    await follower.aclose()


async def test_keys_in_engine_output_are_redacted_for_the_tail_and_followers() -> None:
    """A verbose engine may print a prompt with a pasted key; pages and /api show these."""
    secret = "sk-provider-secret-0123456789"
    logs = LogBuffer(redact=Redactor((secret,)).text)
    follower = logs.follow()
    logs.append(f"prompt: 'my key is {secret}'")

    assert logs.lines() == ["prompt: 'my key is [redacted]'"]
    assert await anext(follower) == "prompt: 'my key is [redacted]'"
    await follower.aclose()


async def test_close_ends_followers_and_slow_readers_never_block() -> None:
    logs = LogBuffer(subscriber_backlog=2)
    logs.append("old")
    follower = logs.follow()
    assert await anext(follower) == "old"
    for i in range(10):  # far more than the subscriber's queue holds; append never waits
        logs.append(f"l{i}")
    logs.close()

    rest = [line async for line in follower]

    assert rest == ["l1"]  # the queue kept l0, l1; close() dropped l0 to fit its end mark


def test_reason_prefers_llama_cpp_model_load_error() -> None:
    lines = [
        "0.00.004.577 I srv          init: loading model",
        "0.00.005.071 E llama_model_load: error loading model: unknown model architecture: 'x'",
        "0.00.005.163 E llama_model_load_from_file_impl: failed to load model",
        "wlm launcher: engine failed to start: Failed to init server",
    ]
    assert engine_reason(lines) == "unknown model architecture: 'x'"


def test_reason_falls_back_to_the_first_error_line() -> None:
    lines = ["0.00.001.000 I ok", "0.00.002.000 E srv init: bad mmproj file", "more"]
    assert engine_reason(lines) == "srv init: bad mmproj file"
    assert engine_reason(["starting", "error: cannot bind port"]) == "error: cannot bind port"
    assert engine_reason(["wlm launcher: the embedded engine does not support --x"]) == (
        "the embedded engine does not support --x"
    )
    assert engine_reason([]) is None
