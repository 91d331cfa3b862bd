"""Fuzzed request bodies and headers against the running shared server (hypothesis).

Every route that could reach an upstream leads to a fake that answers normally (or to
no route at all), so a 5xx here can only come from wlm itself. For every example:
- the client gets a status below 500; anything but 200 carries an OpenAI error body
  ``{"error": {"message", "type", "param", "code"}}``; every answer has x-request-id;
- afterwards the server is still healthy and serves an ordinary request.
Telemetry is covered by the end-of-suite row count (one row per proxied POST).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes import Kind, ScenarioError, parse_scenario
from tests.faults.conftest import World
from tests.faults.helpers import KEYS, chat, error_of

pytestmark = pytest.mark.e2e

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ENDPOINTS = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/api/v1/chat/completions",
]


def ordinary(model: str) -> bool:
    """True unless the fake would read ``model`` as a scenario (a hang, an error...)."""
    try:
        return parse_scenario(model.rsplit("/", 1)[-1]).kind is Kind.ORDINARY
    except ScenarioError:
        return False


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
models = (
    st.sampled_from(
        [
            "gpt-4o-mini",
            "openai/gpt-4o-mini",
            "openrouter/openai/gpt-4o-mini",
            "anthropic/claude-sonnet-4-5-20250929",
            "no-such-model",
            "local/nothing",
            "",
            " ",
        ]
    )
    | st.text(max_size=30).filter(ordinary)
    | json_values
)
messages = (
    st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "assistant", "system", "tool", "developer", "x"])},
            optional={
                "content": st.text(max_size=40) | json_values,
                "tool_calls": json_values,
                "name": json_values,
            },
        ),
        max_size=4,
    )
    | json_values
)
chat_like = st.fixed_dictionaries(
    {"model": models},
    optional={
        "messages": messages,
        "prompt": json_values,
        "input": json_values,
        "stream": st.booleans() | json_values,
        "stream_options": st.fixed_dictionaries({}, optional={"include_usage": json_values})
        | json_values,
        "max_tokens": st.integers(min_value=-5, max_value=10**12) | json_values,
        "temperature": json_values,
        "tools": json_values,
        "tool_choice": json_values,
        "n": json_values,
        "stop": json_values,
        "response_format": json_values,
    },
).filter(lambda body: not isinstance(body["model"], str) or ordinary(body["model"]))
raw_bodies = (
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | chat_like.map(lambda v: json.dumps(v).encode())
    | chat_like.map(lambda v: json.dumps(v).encode()[: len(json.dumps(v)) // 2])
)


def check_answer(response: httpx.Response) -> None:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    assert response.headers.get("x-request-id"), "no (or an empty) x-request-id"
    if response.status_code != 200:
        error_of(response)


def post(world: World, path: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
    with world.http.stream("POST", path, content=content, headers=headers) as response:
        response.read()
    return response


def still_healthy(world: World) -> None:
    assert world.http.get("/health").json()["status"] in ("ok", "degraded")
    reply = world.http.post("/v1/chat/completions", json=chat("gpt-4o-mini"))
    assert reply.status_code == 200


def test_fuzzed_bodies_never_get_a_5xx(world: World) -> None:
    examples = []

    @FUZZ
    @given(path=st.sampled_from(ENDPOINTS), body=raw_bodies)
    def run(path: str, body: bytes) -> None:
        examples.append(body)
        check_answer(post(world, path, body, {"content-type": "application/json"}))

    run()
    world.ledger.figures["fuzz_body_examples"] = len(examples)
    still_healthy(world)


header_names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_!#$%&'*+.^`|~", min_size=1, max_size=20
).filter(lambda n: n.lower() not in ("content-length", "transfer-encoding", "host", "connection"))
header_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=60,
).map(str.strip)
special = st.sampled_from(
    [
        "authorization",
        "x-api-key",
        "x-request-id",
        "content-type",
        "accept",
        "accept-encoding",
        "anthropic-beta",
        "openai-organization",
        "openai-project",
        "cookie",
        "expect",
        "te",
        "upgrade",
        "range",
    ]
)


def test_fuzzed_headers_never_get_a_5xx(world: World) -> None:
    examples = []

    @FUZZ
    @given(
        headers=st.dictionaries(special | header_names, header_values, max_size=6),
        stream=st.booleans(),
        path=st.sampled_from([*ENDPOINTS, "/v1/models", "/api/models", "/health"]),
    )
    def run(headers: dict[str, str], stream: bool, path: str) -> None:
        examples.append(headers)
        sent: dict[str, Any] = {"authorization": f"Bearer {KEYS.alice}"}
        if path == "/api/models":
            sent["authorization"] = f"Bearer {KEYS.admin}"
        sent.update(headers)
        encoded = {k: v.encode("latin-1") for k, v in sent.items()}
        body = json.dumps(chat("gpt-4o-mini", stream=stream)).encode()
        method = "POST" if path in ENDPOINTS else "GET"
        with world.http.stream(
            method, path, content=body if method == "POST" else None, headers=encoded
        ) as response:
            response.read()
        check_answer(response)

    run()
    world.ledger.figures["fuzz_header_examples"] = len(examples)
    still_healthy(world)


FORBIDDEN_SQL = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT getenv('HOME')",
    "ATTACH '/tmp/x.duckdb' AS x",
    "COPY requests TO '/tmp/stolen.csv'",
    "SELECT 1; DROP TABLE requests",
    "DELETE FROM requests",
    "PRAGMA database_list",
    "SELECT * FROM '/etc/passwd'",
    "INSTALL httpfs",
    "SET enable_external_access = true",
]


def test_fuzzed_sql_bodies_never_get_a_5xx(world: World) -> None:
    """POST /api/sql with random JSON, random text and SQL that must be refused."""

    @settings(FUZZ, max_examples=100)
    @given(
        payload=json_values
        | st.fixed_dictionaries(
            {"sql": st.sampled_from(FORBIDDEN_SQL) | st.text(max_size=80)},
            optional={"max_rows": json_values},
        )
    )
    def run(payload: Any) -> None:
        response = world.admin.post("/api/sql", content=json.dumps(payload).encode())
        check_answer(response)
        if isinstance(payload, dict) and payload.get("sql") in FORBIDDEN_SQL:
            assert response.status_code == 400, response.text

    run()
    assert (
        world.admin.post("/api/sql", json={"sql": "SELECT count(*) FROM requests"}).status_code
        == 200
    )
