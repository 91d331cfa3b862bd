"""Telemetry through a real `wlm serve`: the rows a user reads back after a known mix.

One server takes a known mix of requests from the official openai SDK: the OpenAI,
OpenRouter and Anthropic fakes, an upstream error, a client that leaves mid-stream, an
unknown model and a tiny local model. The module fixture reads what wlm recorded while
it serves (``POST /api/sql``, ``/metrics``, ``wlm sql``), stops it with SIGTERM and
reads the file again (duckdb read-only, ``wlm sql``, ``wlm telemetry export``); each
test compares one of those views with what the clients saw.
(Bursts, content logging and a broken file: test_telemetry_durability_e2e.py.)
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import openai
import pytest
from attrs import define, field

from tests.conftest import WlmServer
from tests.e2e.telemetry_helpers import (
    Rows,
    sql_api,
    sql_file,
    stop,
    telemetry_file,
    wait_for_rows,
    wlm_cli,
)
from tests.fakes import FakeUpstream
from wlm.config import load_settings
from wlm.local.testmodel import write_tiny_gguf
from wlm.telemetry.pricing import Prices

pytestmark = [pytest.mark.e2e, pytest.mark.local]  # the mix includes a local model

LIGHT = {"WLM_LOCAL_THREADS": "1", "WLM_LOCAL_CTX_SIZE": "512", "WLM_LOCAL_PARALLEL": "1"}
Tokens = tuple[int | None, int | None, int | None]  # prompt, completion, total
USAGE: Tokens = (11, 7, 18)  # what every fake reports
UNKNOWN: Tokens = (None, None, None)
PROVIDERS_SQL = "SELECT provider, count(*) AS n FROM requests GROUP BY 1 ORDER BY 1"
FORBIDDEN = {
    "read_text": "SELECT * FROM read_text('/etc/passwd')",
    "copy": "COPY requests TO '{tmp}/x.csv'",
    "attach": "ATTACH '{tmp}/other.duckdb' AS other",
}
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@define
class Sent:
    """One request of the mix: what the client saw, and so what its row should say."""

    request_id: str  # the x-request-id header the client got
    model: str
    provider: str | None
    upstream_model: str | None
    messages: list[dict[str, Any]]
    stream: bool = False
    status: str = "ok"
    http_status: int = 200
    error_type: str | None = None
    tokens: Tokens = USAGE
    text: str | None = None  # the reply text the client assembled
    tool_calls: list[tuple[str, dict[str, Any]]] = field(factory=list)
    settings: dict[str, Any] = field(factory=dict)  # e.g. max_tokens, kept with the content


@define
class Mix:
    """The mix's requests and everything read back, while serving and after the stop."""

    sent: list[Sent]
    live_rows: Rows
    live_conversations: Rows
    metrics: str
    stopped_rows: Rows
    stopped_conversations: Rows
    cli: dict[tuple[str, str], subprocess.CompletedProcess[str]]  # (phase, name) -> run
    workdir: Path

    def row(self, sent: Sent) -> dict[str, Any]:
        return next(r for r in self.live_rows if r["id"] == sent.request_id)


# The generation settings a conversation row keeps beside the messages.
KEPT_SETTINGS = ("temperature", "top_p", "max_tokens", "max_completion_tokens")


def ask() -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"Say hello ({uuid.uuid4().hex})"}]


class Client:
    """The official SDK against wlm; every call notes what its telemetry row should say."""

    def __init__(self, server: WlmServer) -> None:
        self.sdk = openai.OpenAI(
            base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=60
        )
        self.sent: list[Sent] = []

    def chat(
        self, model: str, route: tuple[str, str], tokens: Tokens | None = USAGE, **kwargs: Any
    ) -> None:
        """A request that succeeds, stream or not; ``tokens=None``: the usage the client got."""
        messages = ask()
        raw = self.sdk.chat.completions.with_raw_response.create(
            model=model, messages=messages, **kwargs
        )
        text, calls = "", dict[int, tuple[str, str]]()
        if kwargs.get("stream"):
            for chunk in raw.parse():
                for choice in chunk.choices:
                    text += choice.delta.content or ""
                    for call in choice.delta.tool_calls or ():
                        # Fragments: the name comes first, the arguments in pieces.
                        name, args = calls.get(call.index, ("", ""))
                        if call.function is not None:
                            name += call.function.name or ""
                            args += call.function.arguments or ""
                        calls[call.index] = (name, args)
        else:
            reply = raw.parse()
            if tokens is None and reply.usage is not None:
                u = reply.usage
                tokens = (u.prompt_tokens, u.completion_tokens, u.total_tokens)
            text = reply.choices[0].message.content or ""
            for i, call in enumerate(reply.choices[0].message.tool_calls or ()):
                calls[i] = (call.function.name, call.function.arguments)
        self.sent.append(
            Sent(
                raw.headers["x-request-id"],
                model,
                *route,
                messages,
                stream=bool(kwargs.get("stream")),
                tokens=tokens or UNKNOWN,
                text=text or None,
                tool_calls=[(n, json.loads(a)) for _, (n, a) in sorted(calls.items())],
                settings={k: v for k, v in kwargs.items() if k in KEPT_SETTINGS},
            )
        )

    def failing(self, model: str, route: tuple[str | None, str | None]) -> None:
        """A request wlm answers with an error status; its row carries the client's error."""
        messages = ask()
        with pytest.raises(openai.APIStatusError) as caught:
            self.sdk.chat.completions.create(model=model, messages=messages)
        error = caught.value
        body = error.body if isinstance(error.body, dict) else {}
        self.sent.append(
            Sent(
                error.response.headers["x-request-id"],
                model,
                *route,
                messages,
                status="error",
                http_status=error.status_code,
                error_type=body.get("type"),
                tokens=UNKNOWN,
            )
        )

    def leave_mid_stream(self, fake: FakeUpstream) -> None:
        """Read the first chunk of a slow stream (20 chunks 300 ms apart), then hang up."""
        index = len(fake.requests)
        messages = ask()
        model = "openai/paced:300:20"
        raw = self.sdk.chat.completions.with_raw_response.create(
            model=model, messages=messages, stream=True
        )
        stream = raw.parse()
        next(iter(stream))
        stream.close()
        # wlm noticed and hung up on the upstream long before the 6 s stream was over.
        assert fake.wait_closed(index, timeout=10) is not None
        self.sent.append(
            Sent(
                raw.headers["x-request-id"],
                model,
                "openai",
                "paced:300:20",
                messages,
                stream=True,
                status="cancelled",
                http_status=499,  # it left: 499 even though it had its 200 headers
                tokens=UNKNOWN,  # gone before the usage chunk
            )
        )


def send_the_mix(server: WlmServer, openai_fake: FakeUpstream) -> list[Sent]:
    client = Client(server)
    client.chat("gpt-4o-mini", ("openai", "gpt-4o-mini"))
    client.chat("gpt-4o-mini", ("openai", "gpt-4o-mini"), stream=True)
    client.chat("openrouter/openai/gpt-4o-mini", ("openrouter", "openai/gpt-4o-mini"), stream=True)
    client.chat("claude-sonnet-4-5-20250929", ("anthropic", "claude-sonnet-4-5-20250929"))
    client.chat(
        "claude-haiku-4-5-20251001", ("anthropic", "claude-haiku-4-5-20251001"), stream=True
    )
    client.chat("openai/tools", ("openai", "tools"), stream=True, tools=[WEATHER_TOOL])
    client.failing("openai/error:429", ("openai", "error:429"))
    client.leave_mid_stream(openai_fake)
    client.failing("no-such-model", (None, None))
    client.chat("tiny", ("local", "tiny"), tokens=None, max_tokens=5)
    return client.sent


def cli_runs(server: WlmServer, phase: str) -> dict[tuple[str, str], Any]:
    """``wlm sql`` in three formats, three forbidden statements, and an export."""
    runs = {
        (phase, fmt): wlm_cli(server, "sql", PROVIDERS_SQL, "--format", fmt)
        for fmt in ("table", "csv", "json")
    }
    for name, statement in FORBIDDEN.items():
        runs[(phase, name)] = wlm_cli(server, "sql", statement.format(tmp=server.workdir))
    runs[(phase, "export")] = wlm_cli(server, "telemetry", "export", f"{phase}.parquet")
    return runs


@pytest.fixture(scope="module")
def mix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mix]:
    """The mix sent to one server, read while it serves and again after a graceful stop."""
    fakes = {f: FakeUpstream(f).start() for f in ("openai", "openrouter", "anthropic")}
    workdir = tmp_path_factory.mktemp("wlm-telemetry")
    write_tiny_gguf(workdir / "models" / "tiny.gguf", seed=1)
    env = {
        **LIGHT,
        "WLM_ROUTES": "gpt-*=openai,claude-*=anthropic",
        **{f"{f.upper()}_API_KEY": fake.api_key or "" for f, fake in fakes.items()},
        **{f"{f.upper()}_BASE_URL": fake.base_url for f, fake in fakes.items()},
    }
    server = WlmServer(env, workdir).start()
    try:
        sent = send_the_mix(server, fakes["openai"])
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            wait_for_rows(http, len(sent))
            live_rows = sql_api(http, "SELECT * FROM requests")
            live_conversations = sql_api(http, "SELECT * FROM conversations")
            metrics = http.get("/metrics").text
        cli = cli_runs(server, "live")
        stop(server)
        db = telemetry_file(server)
        yield Mix(
            sent=sent,
            live_rows=live_rows,
            live_conversations=live_conversations,
            metrics=metrics,
            stopped_rows=sql_file(db, "SELECT * FROM requests"),
            stopped_conversations=sql_file(db, "SELECT * FROM conversations"),
            cli=cli | cli_runs(server, "stopped"),
            workdir=workdir,
        )
    finally:
        server.stop()
        for fake in fakes.values():
            fake.stop()


# -- the rows ----------------------------------------------------------------------------------


def test_each_request_leaves_one_row_that_says_what_happened(mix: Mix) -> None:
    assert sorted(r["id"] for r in mix.live_rows) == sorted(s.request_id for s in mix.sent)
    keys = ("model", "provider", "upstream_model", "stream", "status", "http_status")
    for sent in mix.sent:
        row = mix.row(sent)
        assert row["request_id"] == sent.request_id  # the x-request-id the client got
        assert {k: row[k] for k in keys} == {k: getattr(sent, k) for k in keys}
        assert row["endpoint"] == "chat/completions"


def test_error_type_is_the_error_type_the_client_got(mix: Mix) -> None:
    # docs/telemetry.md: "the OpenAI-style error `type` the client got".
    failed = [s for s in mix.sent if s.status == "error"]
    assert [mix.row(s)["error_type"] for s in failed] == [s.error_type for s in failed]
    assert all(s.error_type for s in failed) and all(mix.row(s)["error_message"] for s in failed)
    assert {mix.row(s)["error_type"] for s in mix.sent if s.status != "error"} == {None}


def test_token_counts_are_the_reported_usage_and_null_when_unknown(mix: Mix) -> None:
    for sent in mix.sent:
        row = mix.row(sent)
        counts = (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"])
        assert counts == sent.tokens, sent.model
    local = next(s for s in mix.sent if s.provider == "local")
    assert local.tokens[0] and local.tokens[1] == 5  # the engine's own usage, not a guess


_USAGE_COLUMNS = (
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cache_write_tokens",
)
_PRICES = Prices.from_settings(load_settings({}))


def test_timings_cost_and_local_engine_figures(mix: Mix) -> None:
    local_columns = ("local_prompt_n", "local_prompt_ms", "local_predicted_n", "local_predicted_ms")
    for sent in mix.sent:
        row = mix.row(sent)
        assert row["latency_ms"] > 0, sent.model
        if sent.status == "ok":
            assert 0 < row["ttft_ms"] <= row["latency_ms"], sent.model
        # OpenRouter's own figure wins; every other answer is priced from its usage
        # (local: 0 unless priced in WLM_PRICES), a model nobody prices gets NULL.
        if sent.provider == "openrouter":
            assert row["cost_usd"] == 0.00042
        elif sent.provider == "local":
            assert row["cost_usd"] == 0.0
        else:
            counts = {k: row[k] for k in _USAGE_COLUMNS}
            expected = _PRICES.cost_of(sent.provider, row["upstream_model"], counts)
            assert row["cost_usd"] == pytest.approx(expected), sent.model
            if sent.model == "gpt-4o-mini" and sent.status == "ok":
                assert row["cost_usd"] > 0  # a model genai-prices knows
        local = [row[k] for k in local_columns]
        if sent.provider == "local":
            assert None not in local
            assert row["local_predicted_n"] == row["completion_tokens"] == 5
        else:
            assert local == [None] * 4, sent.model
    tools = next(s for s in mix.sent if s.model == "openai/tools")
    assert mix.row(tools)["finish_reason"] == "tool_calls"


def test_conversations_hold_the_messages_reply_and_tool_calls(mix: Mix) -> None:
    conversations = {c["request_id"]: c for c in mix.live_conversations}
    routed = [s for s in mix.sent if s.provider is not None]
    assert sorted(conversations) == sorted(s.request_id for s in routed)  # none for the 404
    for sent in routed:
        conversation = conversations[sent.request_id]
        # The messages, and the generation settings the client set (for a replay).
        assert json.loads(conversation["request_json"]) == {
            "messages": sent.messages,
            **sent.settings,
        }
        if sent.status == "ok":
            assert conversation["response_text"] == sent.text, sent.model
        calls = json.loads(conversation["tool_calls_json"] or "[]")
        assert [
            (c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls
        ] == sent.tool_calls, sent.model
    tools = next(s for s in mix.sent if s.model == "openai/tools")
    assert tools.tool_calls == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "London"}),
    ]
    assert "Hello from fake-anthropic" in [s.text for s in routed]


def test_the_file_after_a_graceful_stop_holds_what_the_server_showed(mix: Mix) -> None:
    def by(rows: Rows, key: str) -> Rows:
        return sorted(rows, key=lambda row: row[key])

    assert by(mix.stopped_rows, "id") == by(mix.live_rows, "id")
    assert by(mix.stopped_conversations, "request_id") == by(mix.live_conversations, "request_id")


def test_metrics_count_requests_per_provider_like_the_rows(mix: Mix) -> None:
    pattern = r'wlm_requests_total\{provider="([^"]*)",model="[^"]*",status="([^"]*)"\} (\d+)'
    counted: Counter[tuple[str, str]] = Counter()
    for provider, status, n in re.findall(pattern, mix.metrics):
        counted[(provider, status)] += int(n)
    rows = Counter((r["provider"] or "none", r["status"]) for r in mix.live_rows)
    assert counted == rows
    assert sum(counted.values()) == len(mix.sent)


# -- wlm sql and wlm telemetry export ------------------------------------------------------------


def expected_providers(mix: Mix) -> Rows:
    counts = Counter(s.provider for s in mix.sent)
    named = sorted((p, n) for p, n in counts.items() if p is not None)
    return [{"provider": p, "n": n} for p, n in [*named, (None, counts[None])]]  # NULLS LAST


@pytest.mark.parametrize("phase", ["live", "stopped"])
def test_wlm_sql_prints_table_csv_and_json(mix: Mix, phase: str) -> None:
    expected = expected_providers(mix)
    runs = {fmt: mix.cli[(phase, fmt)] for fmt in ("table", "csv", "json")}
    for fmt, run in runs.items():
        assert run.returncode == 0, (fmt, run.stderr)

    assert json.loads(runs["json"].stdout) == expected
    lines = list(csv.reader(io.StringIO(runs["csv"].stdout)))
    assert lines[0] == ["provider", "n"]
    assert lines[1:] == [[e["provider"] or "", str(e["n"])] for e in expected]
    table = runs["table"].stdout.splitlines()
    assert table[0].split() == ["provider", "n"]
    assert set(table[1]) <= {"-", " "}
    assert [line.split() for line in table[2:]] == [
        [e["provider"], str(e["n"])] if e["provider"] else [str(e["n"])] for e in expected
    ]


@pytest.mark.parametrize("phase", ["live", "stopped"])
@pytest.mark.parametrize("statement", sorted(FORBIDDEN))
def test_wlm_sql_refuses_what_is_not_a_read_only_select(
    mix: Mix, phase: str, statement: str
) -> None:
    run = mix.cli[(phase, statement)]
    assert run.returncode != 0
    assert run.stdout == ""
    message = run.stderr.strip()
    assert message.startswith("wlm sql: ")
    assert re.search(r"not allowed|only SELECT", message), message
    assert "root:" not in message  # not a byte of /etc/passwd
    assert not (mix.workdir / "x.csv").exists()
    assert not (mix.workdir / "other.duckdb").exists()


def test_export_after_stop_writes_every_row_to_parquet(mix: Mix) -> None:
    run = mix.cli[("stopped", "export")]
    assert run.returncode == 0, run.stderr
    assert f"wrote {len(mix.sent)} requests" in run.stderr
    out = mix.workdir / "stopped.parquet"
    with duckdb.connect() as con:
        ids = [r[0] for r in con.execute("SELECT id FROM read_parquet(?)", [str(out)]).fetchall()]
    assert sorted(ids) == sorted(s.request_id for s in mix.sent)


def test_export_while_the_server_runs_says_to_stop_it_or_use_wlm_sql(mix: Mix) -> None:
    run = mix.cli[("live", "export")]
    assert run.returncode != 0
    assert "stop the server first, or use `wlm sql`" in run.stderr
    assert not (mix.workdir / "live.parquet").exists()
