"""Retries, fallback chains, cooldowns and spillover, in-process on a MockTransport.

Each test scripts what every upstream answers (by URL), sends one request through the
proxy, and checks what the client got (status, body, model, x-wlm-provider and
x-wlm-attempts), what each upstream saw, the waits wlm would have made, and the tries
left on the exchange for telemetry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from wlm.api import proxy
from wlm.api.exchange import Exchange
from wlm.errors import UpstreamBroken, UpstreamUnreachable
from wlm.gateway import Pacing
from wlm.providers.local import LocalAdapter, local_provider_config
from wlm.resilience.cooldowns import Cooldowns
from wlm.transport import MockResponse, UpstreamRequest

from .pipeline import FakeLocal, body, chunk, completion, drive, make_gateway, sse, waits
from .test_messages_endpoint import MESSAGE_STREAM

HELLO = [{"role": "user", "content": "hello"}]
OPENAI = "https://api.openai.com/v1/chat/completions"
ANTHROPIC = "https://api.anthropic.com/v1/messages"
LOCAL = "http://127.0.0.1:9/v1/chat/completions"
LOCAL_MESSAGES = "http://127.0.0.1:9/v1/messages"


@pytest.fixture
def exchanges(monkeypatch: pytest.MonkeyPatch) -> list[Exchange]:
    """Every exchange the proxy recorded (its tries are what telemetry gets)."""
    seen: list[Exchange] = []
    original = proxy.record_exchange

    def keep(exchange: Exchange, **kwargs: Any) -> Any:
        seen.append(exchange)
        return original(exchange, **kwargs)

    monkeypatch.setattr(proxy, "record_exchange", keep)
    return seen


def error(status: int, headers: dict[str, str] | None = None, code: str = "x") -> MockResponse:
    body = {"error": {"message": f"upstream said {status}", "type": "server_error", "code": code}}
    return MockResponse.json(body, status, headers)


def anthropic_message(text: str = "bonjour") -> MockResponse:
    return MockResponse.json(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-upstream",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 5, "output_tokens": 2},
        }
    )


def overloaded() -> MockResponse:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    return MockResponse.json(body, 529)


Script = dict[str, list[Any]]


def scripted(script: Script) -> Callable[[UpstreamRequest], MockResponse]:
    """Answers by URL, in order; the last answer repeats. An exception is raised."""

    def handler(request: UpstreamRequest) -> MockResponse:
        answers = script[request.url]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, MockResponse)
        return answer

    return handler


def urls(transport: Any) -> list[str]:
    return [r.url for r in transport.requests]


def models_sent(transport: Any) -> list[str]:
    return [msgspec.json.decode(r.body or b"")["model"] for r in transport.requests]


def tries(exchange: Exchange) -> list[tuple[Any, ...]]:
    return [(t.provider, t.upstream_model, t.http_status, t.moved_on) for t in exchange.tries]


def local_gateway(handler: Any, env: dict[str, str], local: FakeLocal | None = None) -> Any:
    local = local or FakeLocal()
    gateway, transport, sink = make_gateway(handler, env, local=local)
    gateway.adapters["local"] = LocalAdapter(
        local_provider_config(60.0), transport, local, loading_every_s=0.01
    )
    return gateway, transport, sink, local


# -- retries ------------------------------------------------------------------------


async def test_a_transient_failure_is_retried_on_the_same_target_with_backoff(
    exchanges: list[Exchange],
) -> None:
    gateway, transport, sink = make_gateway(
        scripted({OPENAI: [error(503), error(502), completion("third time")]})
    )
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO))
    assert reply.status == 200
    assert reply.json()["choices"][0]["message"]["content"] == "third time"
    assert (reply.headers["x-wlm-provider"], reply.headers["x-wlm-attempts"]) == ("openai", "3")
    assert urls(transport) == [OPENAI] * 3
    assert waits(gateway) == [0.5, 1.0]  # backoff doubles (no jitter drawn here)
    assert tries(exchanges[0]) == [
        ("openai", "gpt-4o", 503, "retry"),
        ("openai", "gpt-4o", 502, "retry"),
        ("openai", "gpt-4o", 200, None),
    ]
    assert [t.number for t in exchanges[0].tries] == [1, 2, 3]
    assert exchanges[0].tries[0].started_at == exchanges[0].started_at
    assert exchanges[0].fallback_from is None
    assert (sink.only.status, sink.only.attempts) == ("ok", 3)


async def test_retries_stop_at_wlm_retries_and_the_last_error_reaches_the_client(
    exchanges: list[Exchange],
) -> None:
    gateway, transport, _ = make_gateway(scripted({OPENAI: [error(500)]}), {"WLM_RETRIES": "1"})
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO))
    assert reply.status == 500
    assert reply.headers["x-wlm-attempts"] == "2"
    assert urls(transport) == [OPENAI] * 2
    assert [t.moved_on for t in exchanges[0].tries] == ["retry", None]


async def test_connection_errors_and_timeouts_are_retried() -> None:
    gateway, transport, _ = make_gateway(
        scripted({OPENAI: [UpstreamUnreachable("refused"), completion("up again")]})
    )
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO))
    assert reply.status == 200 and len(transport.requests) == 2


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": "Wed, 01 Jan 2025 00:00:04 GMT"}, 4.0),  # an HTTP date
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1.5s"}, 1.5),
    ],
)
async def test_the_upstreams_own_wait_is_honoured(headers: dict[str, str], wait: float) -> None:
    gateway, _, _ = make_gateway(scripted({OPENAI: [error(429, headers), completion()]}))
    now = datetime(2025, 1, 1, tzinfo=UTC)
    gateway.pacing = Pacing(sleep=gateway.pacing.sleep, now=lambda: now, random=lambda: 0.0)
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO))
    assert reply.status == 200
    assert waits(gateway) == [wait]


async def test_a_wait_longer_than_the_maximum_goes_to_the_fallback_at_once(
    exchanges: list[Exchange],
) -> None:
    gateway, transport, sink = make_gateway(
        scripted({OPENAI: [error(429, {"retry-after": "30"})], ANTHROPIC: [anthropic_message()]}),
        {"WLM_FALLBACKS": "gpt-4o=claude-x"},
    )
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO))
    assert reply.status == 200
    assert reply.json()["model"] == "claude-x"  # the model that answered
    assert (reply.headers["x-wlm-provider"], reply.headers["x-wlm-attempts"]) == ("anthropic", "2")
    assert urls(transport) == [OPENAI, ANTHROPIC]
    assert waits(gateway) == []
    assert tries(exchanges[0]) == [
        ("openai", "gpt-4o", 429, "fallback"),
        ("anthropic", "claude-x", 200, None),
    ]
    assert exchanges[0].fallback_from == "gpt-4o"
    assert sink.only.provider == "anthropic"


async def test_without_a_fallback_a_long_wait_is_the_clients_429_with_its_retry_after() -> None:
    gateway, transport, _ = make_gateway(scripted({OPENAI: [error(429, {"retry-after": "30"})]}))
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO))
    assert (reply.status, reply.headers["retry-after"]) == (429, "30")
    assert len(transport.requests) == 1


@pytest.mark.parametrize("status", [400, 413, 422])
async def test_a_request_at_fault_is_neither_retried_nor_sent_elsewhere(status: int) -> None:
    gateway, transport, _ = make_gateway(
        scripted({OPENAI: [error(status)], ANTHROPIC: [anthropic_message()]}),
        {"WLM_FALLBACKS": "gpt-4o=claude-x"},
    )
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO))
    assert reply.status == status
    assert urls(transport) == [OPENAI]
    assert reply.headers["x-wlm-attempts"] == "1"


@pytest.mark.parametrize("status", [401, 402, 403, 404, 501])
async def test_a_target_that_cannot_serve_falls_back_without_a_retry(status: int) -> None:
    gateway, transport, _ = make_gateway(
        scripted({OPENAI: [error(status)], ANTHROPIC: [anthropic_message()]}),
        {"WLM_FALLBACKS": "gpt-4o=claude-x"},
    )
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO))
    assert reply.status == 200
    assert urls(transport) == [OPENAI, ANTHROPIC]


async def test_an_exhausted_quota_falls_back_without_a_retry() -> None:
    gateway, transport, _ = make_gateway(
        scripted(
            {OPENAI: [error(429, code="insufficient_quota")], ANTHROPIC: [anthropic_message()]}
        ),
        {"WLM_FALLBACKS": "gpt-4o=claude-x"},
    )
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO))
    assert reply.status == 200 and urls(transport) == [OPENAI, ANTHROPIC]


# -- fallback chains ------------------------------------------------------------------


FALLBACKS = "gpt-4o=claude-a|claude-b,gpt-*=claude-glob"


@pytest.mark.parametrize(
    ("model", "tried"),
    [
        ("gpt-4o", ["gpt-4o", "claude-a", "claude-b"]),  # the exact entry beats the glob
        ("gpt-4.1", ["gpt-4.1", "claude-glob"]),
    ],
)
async def test_the_chain_is_tried_in_order_and_the_last_error_reaches_the_client(
    model: str, tried: list[str]
) -> None:
    gateway, transport, _ = make_gateway(
        scripted({OPENAI: [error(401)], ANTHROPIC: [error(403)]}),
        {"WLM_FALLBACKS": FALLBACKS, "WLM_RETRIES": "0"},
    )
    reply = await drive(gateway, body(model=model, messages=HELLO))
    assert reply.status == 403  # the last one's error
    assert models_sent(transport) == tried
    assert reply.headers["x-wlm-provider"] == "anthropic"
    assert reply.headers["x-wlm-attempts"] == str(len(tried))


async def test_the_bodys_models_beat_the_header_and_the_configuration_and_stay_home() -> None:
    gateway, transport, _ = make_gateway(
        scripted({OPENAI: [error(503)], ANTHROPIC: [anthropic_message()]}),
        {"WLM_FALLBACKS": FALLBACKS, "WLM_RETRIES": "0"},
    )
    reply = await drive(
        gateway,
        body(model="gpt-4o", messages=HELLO, models=["claude-b"]),
        headers=[(b"x-wlm-fallbacks", b"claude-a")],
    )
    assert reply.status == 200 and reply.json()["model"] == "claude-b"
    assert models_sent(transport) == ["gpt-4o", "claude-b"]
    assert all("models" not in msgspec.json.decode(r.body or b"") for r in transport.requests)


async def test_the_header_chain_beats_the_configuration() -> None:
    gateway, transport, _ = make_gateway(
        scripted({OPENAI: [error(503)], ANTHROPIC: [anthropic_message()]}),
        {"WLM_FALLBACKS": FALLBACKS, "WLM_RETRIES": "0"},
    )
    reply = await drive(
        gateway,
        body(model="gpt-4o", messages=HELLO),
        headers=[(b"x-wlm-fallbacks", b"claude-z, claude-y")],
    )
    assert reply.status == 200 and reply.json()["model"] == "claude-z"
    assert models_sent(transport) == ["gpt-4o", "claude-z"]


@pytest.mark.parametrize(
    ("fields", "headers"),
    [
        ({"models": []}, []),
        ({}, [(b"x-wlm-fallbacks", b"none")]),
        ({}, [(b"x-wlm-fallbacks", b"")]),
    ],
)
async def test_an_empty_chain_asks_for_no_alternatives(
    fields: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> None:
    gateway, transport, _ = make_gateway(
        scripted({OPENAI: [error(503)], ANTHROPIC: [anthropic_message()]}),
        {"WLM_FALLBACKS": FALLBACKS, "WLM_RETRIES": "0"},
    )
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO, **fields), headers=headers)
    assert reply.status == 503 and urls(transport) == [OPENAI]


async def test_a_malformed_models_list_is_a_400_before_any_upstream() -> None:
    gateway, transport, _ = make_gateway(scripted({OPENAI: [completion()]}))
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO, models="claude-x"))
    assert (reply.status, reply.error["param"]) == (400, "models")
    assert reply.headers["x-wlm-attempts"] == "0" and "x-wlm-provider" not in reply.headers
    assert transport.requests == []


async def test_an_alternative_that_routes_nowhere_is_passed_over(
    exchanges: list[Exchange],
) -> None:
    gateway, transport, _ = make_gateway(
        scripted({OPENAI: [error(503)], ANTHROPIC: [anthropic_message()]}), {"WLM_RETRIES": "0"}
    )
    reply = await drive(
        gateway, body(model="gpt-4o", messages=HELLO, models=["nobody-has-this", "claude-x"])
    )
    assert reply.status == 200 and urls(transport) == [OPENAI, ANTHROPIC]
    assert reply.headers["x-wlm-attempts"] == "2"  # two upstream tries; the name is no try
    assert tries(exchanges[0]) == [
        ("openai", "gpt-4o", 503, "fallback"),
        (None, "nobody-has-this", None, "fallback"),
        ("anthropic", "claude-x", 200, None),
    ]
    assert exchanges[0].tries[1].error_code == "model_not_found"


async def test_an_unroutable_name_never_masks_a_real_answer_or_error() -> None:
    gateway, transport, _ = make_gateway(
        scripted({ANTHROPIC: [anthropic_message()]}), {"WLM_RETRIES": "0"}
    )
    reply = await drive(gateway, body(model="nobody-has-this", messages=HELLO, models=["claude-x"]))
    assert reply.status == 200 and reply.json()["model"] == "claude-x"
    assert urls(transport) == [ANTHROPIC]
    gateway, _, _ = make_gateway(scripted({OPENAI: [error(503)]}), {"WLM_RETRIES": "0"})
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO, models=["nobody-has-this"]))
    assert reply.status == 503  # the last target's own error, not the typo's 404


async def test_a_stream_falls_back_and_its_chunks_name_the_model_that_answered() -> None:
    gateway, _, _ = make_gateway(
        scripted(
            {
                OPENAI: [UpstreamUnreachable("refused")],
                ANTHROPIC: [MockResponse.sse(MESSAGE_STREAM)],
            }
        ),
        {"WLM_RETRIES": "0", "WLM_FALLBACKS": "gpt-4o=claude-x"},
    )
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO, stream=True))
    assert reply.status == 200
    assert (reply.headers["x-wlm-provider"], reply.headers["x-wlm-attempts"]) == ("anthropic", "2")
    chunks = [
        msgspec.json.decode(line[6:])
        for line in reply.body.decode().splitlines()
        if line.startswith("data: {")
    ]
    assert chunks and {c["model"] for c in chunks} == {"claude-x"}


async def test_a_messages_request_falls_back_from_claude_to_an_openai_model() -> None:
    """Native to Anthropic, translated to OpenAI: the dialect's choice is per target."""
    gateway, transport, _ = make_gateway(
        scripted({ANTHROPIC: [overloaded()], OPENAI: [completion("from openai")]}),
        {"WLM_RETRIES": "0", "WLM_FALLBACKS": "claude-*=gpt-4o"},
    )
    reply = await drive(
        gateway, body(model="claude-x", max_tokens=16, messages=HELLO), endpoint="messages"
    )
    assert reply.status == 200
    answer = reply.json()
    assert (answer["type"], answer["model"]) == ("message", "gpt-4o")
    assert answer["content"][0]["text"] == "from openai"
    assert urls(transport) == [ANTHROPIC, OPENAI]
    sent = msgspec.json.decode(transport.requests[1].body or b"")
    assert (sent["model"], sent["messages"]) == ("gpt-4o", HELLO)  # translated to chat


async def test_a_messages_request_falls_back_from_claude_to_a_local_gguf() -> None:
    gateway, transport, _, local = local_gateway(
        scripted({ANTHROPIC: [overloaded()], LOCAL_MESSAGES: [anthropic_message("local words")]}),
        {"WLM_RETRIES": "0", "WLM_FALLBACKS": "claude-*=tiny"},
    )
    reply = await drive(
        gateway, body(model="claude-x", max_tokens=16, messages=HELLO), endpoint="messages"
    )
    assert reply.status == 200, reply.body
    answer = reply.json()
    assert (answer["model"], answer["content"][0]["text"]) == ("tiny", "local words")
    assert reply.headers["x-wlm-provider"] == "local"
    assert urls(transport) == [ANTHROPIC, LOCAL_MESSAGES] and local.leased == 0  # native


async def test_a_messages_error_after_every_target_failed_is_anthropic_shaped() -> None:
    gateway, _, _ = make_gateway(
        scripted({ANTHROPIC: [overloaded()], OPENAI: [error(503)]}),
        {"WLM_RETRIES": "0", "WLM_FALLBACKS": "claude-*=gpt-4o"},
    )
    reply = await drive(
        gateway, body(model="claude-x", max_tokens=16, messages=HELLO), endpoint="messages"
    )
    assert reply.status == 503
    assert reply.json()["type"] == "error"
    assert reply.headers["x-wlm-provider"] == "openai"


# -- the commit point -------------------------------------------------------------------


async def test_nothing_is_tried_again_after_the_first_byte() -> None:
    gateway, transport, _ = make_gateway(
        scripted(
            {
                OPENAI: [MockResponse.sse(sse(chunk("a"), done=False), UpstreamBroken("cut"))],
                ANTHROPIC: [anthropic_message()],
            }
        ),
        {"WLM_FALLBACKS": "gpt-4o=claude-x"},
    )
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO, stream=True))
    assert reply.status == 200
    assert b'"upstream_broken"' in reply.body
    assert urls(transport) == [OPENAI]
    assert reply.headers["x-wlm-attempts"] == "1"


async def test_a_whole_answer_that_breaks_before_any_byte_goes_to_the_fallback(
    exchanges: list[Exchange],
) -> None:
    broken = MockResponse(200, {"content-type": "application/json"}, [b"{"], UpstreamBroken("cut"))
    gateway, transport, _ = make_gateway(
        scripted({OPENAI: [broken], ANTHROPIC: [anthropic_message()]}),
        {"WLM_FALLBACKS": "gpt-4o=claude-x"},
    )
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO))
    assert reply.status == 200 and urls(transport) == [OPENAI, ANTHROPIC]
    assert tries(exchanges[0])[0] == ("openai", "gpt-4o", 200, "fallback")
    assert exchanges[0].tries[0].error_code == "upstream_broken"


async def test_a_loading_comment_commits_the_stream_to_the_local_model() -> None:
    """Without WLM_LOCAL_MAX_WAIT_S a stream learns of the load through comments; once
    one went out, a failure of that engine is an error event, not a fallback."""
    local = FakeLocal()
    local.ready.clear()
    gateway, transport, _, local = local_gateway(
        scripted({LOCAL: [UpstreamUnreachable("engine gone")], OPENAI: [completion()]}),
        {"WLM_FALLBACKS": "tiny=gpt-4o"},
        local,
    )

    def ready_after_a_comment(part: bytes) -> None:
        if part.startswith(b": loading"):
            local.ready.set()

    reply = await drive(
        gateway, body(model="tiny", messages=HELLO, stream=True), on_part=ready_after_a_comment
    )
    assert reply.status == 200 and reply.parts[0].startswith(b": loading tiny")
    assert b"upstream_unreachable" in reply.body
    assert OPENAI not in urls(transport)


async def test_a_client_that_leaves_during_a_wait_stops_the_retries(
    exchanges: list[Exchange],
) -> None:
    upstream_called = asyncio.Event()

    def handler(request: UpstreamRequest) -> MockResponse:
        upstream_called.set()
        return error(503, {"retry-after": "5"})

    gateway, transport, sink = make_gateway(handler, {"WLM_FALLBACKS": "gpt-4o=claude-x"})
    gateway.pacing = Pacing()  # a real wait, which the client's leaving must cut short
    messages = [{"type": "http.request", "body": body(model="gpt-4o", messages=HELLO)}]

    async def receive() -> Any:
        if messages:
            return messages.pop(0)
        await upstream_called.wait()
        return {"type": "http.disconnect"}

    started = asyncio.get_running_loop().time()
    reply = await asyncio.wait_for(drive(gateway, b"", receive=receive), timeout=4)
    assert asyncio.get_running_loop().time() - started < 2  # well before the 5 s wait
    assert reply.status == 0  # nothing was sent: the client is gone
    assert urls(transport) == [OPENAI]  # no retry, no fallback
    assert (sink.only.status, sink.only.http_status) == ("cancelled", 499)
    assert tries(exchanges[0]) == [("openai", "gpt-4o", 503, "retry")]


# -- cooldowns --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cooling_gateway(script: Script, **env: str) -> Any:
    gateway, transport, _ = make_gateway(
        scripted(script), {"WLM_RETRIES": "0", "WLM_FALLBACKS": "gpt-4o=claude-x", **env}
    )
    clock = Clock()
    gateway.cooldowns = Cooldowns(2, 30.0, clock)
    return gateway, transport, clock


async def test_a_target_failing_in_a_row_is_skipped_then_probed_once(
    exchanges: list[Exchange],
) -> None:
    script: Script = {OPENAI: [error(503)], ANTHROPIC: [anthropic_message()]}
    gateway, transport, clock = cooling_gateway(script)
    ask = body(model="gpt-4o", messages=HELLO)
    for _ in range(2):  # two retryable failures in a row: openai/gpt-4o cools down
        assert (await drive(gateway, ask)).status == 200
    assert urls(transport) == [OPENAI, ANTHROPIC] * 2
    assert [(s.provider, s.model, s.state) for s in gateway.cooldowns.snapshot()] == [
        ("openai", "gpt-4o", "cooling")
    ]

    transport.requests.clear()
    reply = await drive(gateway, ask)
    assert reply.status == 200 and urls(transport) == [ANTHROPIC]  # skipped, not tried
    assert reply.headers["x-wlm-attempts"] == "1"
    assert tries(exchanges[-1]) == [
        ("openai", "gpt-4o", None, "cooldown_skip"),
        ("anthropic", "claude-x", 200, None),
    ]
    assert exchanges[-1].tries[0].latency is None
    assert gateway.cooldowns.skipped["openai"] == 1

    clock.now += 30  # time is up: the next request is the probe, and it is answered
    script[OPENAI] = [completion("back")]
    transport.requests.clear()
    reply = await drive(gateway, ask)
    assert reply.json()["choices"][0]["message"]["content"] == "back"
    assert urls(transport) == [OPENAI]
    assert gateway.cooldowns.snapshot() == ()


async def test_a_probe_that_fails_cools_the_target_again() -> None:
    gateway, transport, clock = cooling_gateway(
        {OPENAI: [error(503)], ANTHROPIC: [anthropic_message()]}
    )
    ask = body(model="gpt-4o", messages=HELLO)
    for _ in range(2):
        await drive(gateway, ask)
    clock.now += 30
    transport.requests.clear()
    await drive(gateway, ask)  # the probe: it fails, the fallback answers
    await drive(gateway, ask)  # cooling again: skipped
    assert urls(transport) == [OPENAI, ANTHROPIC, ANTHROPIC]
    assert gateway.cooldowns.started["openai"] == 2


async def test_a_cooling_target_is_still_tried_when_it_is_the_last_option() -> None:
    gateway, transport, _ = cooling_gateway(
        {OPENAI: [error(503), error(503), completion("still here")], ANTHROPIC: [error(503)]}
    )
    ask = body(model="gpt-4o", messages=HELLO)
    for _ in range(2):
        await drive(gateway, ask)
    transport.requests.clear()
    reply = await drive(gateway, ask, headers=[(b"x-wlm-fallbacks", b"none")])
    assert reply.status == 200 and urls(transport) == [OPENAI]


async def test_only_retryable_failures_count_towards_a_cooldown() -> None:
    gateway, transport, _ = cooling_gateway(
        {OPENAI: [error(400)], ANTHROPIC: [anthropic_message()]}
    )
    ask = body(model="gpt-4o", messages=HELLO)
    for _ in range(3):
        assert (await drive(gateway, ask)).status == 400
    assert urls(transport) == [OPENAI] * 3
    assert gateway.cooldowns.snapshot() == ()


# -- local engines: spillover, and cloud to local ------------------------------------------


@pytest.mark.parametrize("why", ["loading", "busy", "failed"])
async def test_a_local_model_spills_over_when_its_engine_cannot_take_the_request(
    why: str, exchanges: list[Exchange]
) -> None:
    local = FakeLocal()
    if why == "loading":
        local.ready.clear()
    elif why == "busy":
        local.slot_free.clear()
    else:
        local.failed_to_load = "Local model 'tiny' failed to start: bad file"
    gateway, _, _, local = local_gateway(
        scripted({OPENAI: [MockResponse.sse(sse(chunk("from the cloud", "stop")))]}),
        {"WLM_FALLBACKS": "tiny=gpt-4o", "WLM_LOCAL_MAX_WAIT_S": "0.05"},
        local,
    )
    reply = await drive(gateway, body(model="tiny", messages=HELLO, stream=True))
    assert reply.status == 200
    assert not reply.body.startswith(b":")  # no loading comment: the answer was not committed
    assert b"from the cloud" in reply.body and b'"model":"gpt-4o"' in reply.body
    assert (reply.headers["x-wlm-provider"], reply.headers["x-wlm-attempts"]) == ("openai", "2")
    assert local.bounded == [0.05] and local.leased == 0
    assert tries(exchanges[0]) == [
        ("local", "tiny", None, "spillover"),
        ("openai", "gpt-4o", 200, None),
    ]
    assert exchanges[0].tries[0].error_code == "model_unavailable"


async def test_the_wait_for_a_local_engine_is_bounded_only_when_there_is_somewhere_to_go() -> None:
    local = FakeLocal()
    gateway, _, _, local = local_gateway(
        scripted({LOCAL: [completion("local")]}), {"WLM_LOCAL_MAX_WAIT_S": "0.05"}, local
    )
    reply = await drive(gateway, body(model="tiny", messages=HELLO))
    assert reply.status == 200 and local.bounded == []


async def test_a_local_engine_that_stays_down_falls_back_after_its_own_restart() -> None:
    gateway, transport, _, local = local_gateway(
        scripted({LOCAL: [UpstreamUnreachable("engine gone")], OPENAI: [completion("cloud")]}),
        {"WLM_FALLBACKS": "tiny=gpt-4o"},
    )
    reply = await drive(gateway, body(model="tiny", messages=HELLO))
    assert reply.status == 200
    assert urls(transport) == [LOCAL, LOCAL, OPENAI]  # the restart was its retry
    assert reply.headers["x-wlm-attempts"] == "3"
    assert local.leased == 0


async def test_a_cloud_model_whose_provider_is_down_falls_back_to_a_local_model() -> None:
    gateway, transport, _, _ = local_gateway(
        scripted({OPENAI: [UpstreamUnreachable("refused")], LOCAL: [completion("local")]}),
        {"WLM_FALLBACKS": "gpt-4o=tiny"},
    )
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO))
    assert reply.status == 200 and reply.json()["model"] == "tiny"
    assert urls(transport) == [OPENAI] * 3 + [LOCAL]
    assert waits(gateway) == [0.5, 1.0]
    assert reply.headers["x-wlm-provider"] == "local"


# -- headers on every response ---------------------------------------------------------------


async def test_every_answer_says_who_answered_after_how_many_tries() -> None:
    gateway, _, _ = make_gateway(scripted({OPENAI: [MockResponse.sse(sse(chunk("a", "stop")))]}))
    reply = await drive(gateway, body(model="gpt-4o", messages=HELLO, stream=True))
    assert (reply.headers["x-wlm-provider"], reply.headers["x-wlm-attempts"]) == ("openai", "1")
    gateway, _, _ = make_gateway(scripted({OPENAI: [completion()]}))
    reply = await drive(gateway, body(model="nobody-has-this", messages=HELLO))
    assert reply.status == 404 and reply.headers["x-wlm-attempts"] == "0"
    reply = await drive(gateway, b"{not json")
    assert reply.status == 400 and reply.headers["x-wlm-attempts"] == "0"
