"""Headers: only an allowlist of client headers reaches a provider; x-request-id everywhere.

- upstream: credentials, cookies, forwarding and hop-by-hop headers sent by the client
  never reach the provider, which gets wlm's own key instead; the few headers a
  provider needs (x-request-id, openai-organization, anthropic-beta) do;
- client: every response, error or not, proxied or not, carries an x-request-id (the
  client's own when it sent one);
- telemetry: the proxied request's row has that same id.
"""

from __future__ import annotations

import pytest

from tests.faults.conftest import World
from tests.faults.helpers import (
    KEYS,
    RowChecks,
    chat,
    index_of,
    new_request_id,
    sql_safe,
    telemetry_rows,
    wait_for,
)

pytestmark = pytest.mark.e2e

HOSTILE = {
    "cookie": "session=client-cookie-value",
    "x-forwarded-for": "203.0.113.7",
    "x-real-ip": "203.0.113.7",
    "forwarded": "for=203.0.113.7",
    "proxy-authorization": "Basic Y2xpZW50OnNlY3JldA==",
    "connection": "keep-alive",
    "keep-alive": "timeout=99",
    "x-foo": "bar",
    "x-api-key": KEYS.alice,
}
NEVER_FORWARDED = [*HOSTILE, "proxy-connection", "upgrade"]


@pytest.fixture(scope="module")
def rows() -> RowChecks:
    return RowChecks()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_only_allowlisted_client_headers_reach_openai(world: World, stream: bool) -> None:
    fake = world.fakes["openai"]
    request_id = new_request_id()
    body = chat("openai/gpt-4o-mini", stream=stream)
    headers = {**HOSTILE, "openai-organization": "org-faults", "x-request-id": request_id}

    response = world.http.post("/v1/chat/completions", json=body, headers=headers)

    assert response.status_code == 200
    seen = fake.requests[index_of(fake, body["messages"][0]["content"])].headers
    leaked = sorted(name for name in NEVER_FORWARDED if name in seen)
    assert not leaked, f"forwarded to the provider: {leaked}"
    assert seen["authorization"] == f"Bearer {KEYS.openai}"
    assert seen["x-request-id"] == request_id
    assert seen["openai-organization"] == "org-faults"
    assert not [v for v in seen.values() if KEYS.alice in v or "client-cookie" in v]


def test_openai_organization_and_project_reach_only_openai(world: World) -> None:
    fake = world.fakes["openrouter"]
    body = chat("openrouter/meta-llama/llama-3.1-8b-instruct")
    headers = {"openai-organization": "org-faults", "openai-project": "proj-faults"}

    response = world.http.post("/v1/chat/completions", json=body, headers=headers)

    assert response.status_code == 200
    seen = fake.requests[index_of(fake, body["messages"][0]["content"])].headers
    assert "openai-organization" not in seen and "openai-project" not in seen
    assert seen["authorization"] == f"Bearer {KEYS.openrouter}"


def test_only_allowlisted_client_headers_reach_anthropic(world: World) -> None:
    fake = world.fakes["anthropic"]
    body = chat("anthropic/claude-sonnet-4-5-20250929")
    headers = {**HOSTILE, "anthropic-beta": "faults-beta-2025"}

    response = world.http.post("/v1/chat/completions", json=body, headers=headers)

    assert response.status_code == 200
    seen = fake.requests[index_of(fake, body["messages"][0]["content"])].headers
    leaked = sorted(name for name in NEVER_FORWARDED if name in seen and name != "x-api-key")
    assert not leaked, f"forwarded to the provider: {leaked}"
    assert seen["x-api-key"] == KEYS.anthropic
    assert "authorization" not in seen
    assert seen["anthropic-beta"] == "faults-beta-2025"


SURFACE = [
    ("POST", "/v1/chat/completions", chat("openai/gpt-4o-mini"), 200),
    ("POST", "/v1/chat/completions", chat("openai/gpt-4o-mini", stream=True), 200),
    ("POST", "/v1/chat/completions", chat("no-such-model"), 404),
    ("POST", "/v1/chat/completions", chat("openai/error:500"), 500),
    ("POST", "/v1/chat/completions", {"model": "gpt-4o-mini"}, 400),
    ("POST", "/v1/embeddings", {"model": "openai/text-embedding-3-small", "input": "x"}, 200),
    ("GET", "/v1/chat/completions", None, 405),
    ("GET", "/v1/models", None, 200),
    ("GET", "/v1/models/gpt-4o-mini", None, 200),
    ("GET", "/v1/models/not-listed", None, 404),
    ("GET", "/health", None, 200),
    ("GET", "/v1/nope", None, 404),
    ("GET", "/api/models", None, 200),
    ("POST", "/api/sql", {"sql": "SELECT 1"}, 200),
    ("GET", "/api/instances", None, 200),
]


@pytest.mark.parametrize("given", [True, False], ids=["client-id", "generated"])
@pytest.mark.parametrize(("method", "path", "body", "status"), SURFACE)
def test_every_response_carries_x_request_id(
    world: World,
    rows: RowChecks,
    method: str,
    path: str,
    body: dict | None,
    status: int,
    given: bool,
) -> None:
    client = world.admin if path.startswith("/api/") else world.http
    request_id = new_request_id()
    headers = {"x-request-id": request_id} if given else {}

    response = client.request(method, path, json=body, headers=headers)

    assert response.status_code == status, response.text
    returned = response.headers.get("x-request-id")
    assert returned, "no x-request-id"
    if given:
        assert returned == request_id
    if method == "POST" and path.startswith("/v1/") and sql_safe(returned):
        # The row is found by its request_id (the returned value); its own id is the
        # returned one when wlm made it, and wlm's own when the client sent one.
        own_id = (lambda v: v != returned and v.startswith("req_")) if given else returned
        rows.expect(f"{path} {status} given={given}", returned, id=own_id)


def test_an_empty_x_request_id_gets_a_fresh_one(world: World) -> None:
    empty = {"x-request-id": ""}
    proxied = world.http.post("/v1/chat/completions", json=chat("gpt-4o-mini"), headers=empty)
    assert proxied.headers.get("x-request-id"), "a proxied answer echoed an empty x-request-id"
    for path in ("/health", "/v1/models"):
        response = world.http.get(path, headers=empty)
        assert response.headers.get("x-request-id"), f"{path} echoed an empty x-request-id"


def test_generated_request_ids_are_unique(world: World) -> None:
    ids = {world.http.get("/health").headers["x-request-id"] for _ in range(50)}
    ids |= {
        world.http.post("/v1/chat/completions", json=chat("no-such-model")).headers["x-request-id"]
        for _ in range(20)
    }
    assert len(ids) == 70


def test_a_reused_client_request_id_still_gives_rows_their_own_ids(world: World) -> None:
    request_id = new_request_id()
    for _ in range(2):
        response = world.http.post(
            "/v1/chat/completions", json=chat("gpt-4o-mini"), headers={"x-request-id": request_id}
        )
        assert response.headers["x-request-id"] == request_id

    def both_rows() -> list[dict] | None:
        found = telemetry_rows(world.admin, f"request_id = '{request_id}'")
        return found if len(found) == 2 else None

    stored = wait_for(both_rows, 5, "both rows")
    assert len({row["id"] for row in stored}) == 2


def test_zz_telemetry_rows_carry_the_returned_request_id(world: World, rows: RowChecks) -> None:
    if not rows.expected:
        pytest.skip("no proxied case of this module ran")
    assert rows.verify(world.admin) == len(rows.expected)
