"""The merged model list and client keys, in-process on a MockTransport."""

from __future__ import annotations

import hashlib

import msgspec

from wlm.errors import UpstreamUnreachable
from wlm.transport import MockResponse, UpstreamRequest

from .pipeline import body, completion, drive, make_gateway

HELLO = [{"role": "user", "content": "hello"}]


def lists(request: UpstreamRequest) -> MockResponse:
    if request.url == "https://api.openai.com/v1/models":
        return MockResponse.json({"data": [{"id": "gpt-4o", "created": 7}, {"id": "o3"}]})
    if request.url.startswith("https://api.anthropic.com/v1/models"):
        if "after_id" not in request.url:
            page = {"data": [{"id": "claude-a"}], "has_more": True, "last_id": "claude-a"}
        else:
            page = {"data": [{"id": "claude-b"}], "has_more": False, "last_id": "claude-b"}
        return MockResponse.json(page)
    raise AssertionError(request.url)


async def test_model_list_merges_providers_with_ids_that_route_back() -> None:
    gateway, transport, _ = make_gateway(lists)
    entries = await gateway.catalog.entries()
    by_id = {e["id"]: e["provider"] for e in entries}
    # gpt-* and claude-* route by WLM_ROUTES, so they are listed bare; o3 needs a prefix.
    assert by_id == {
        "gpt-4o": "openai",
        "openai/o3": "openai",
        "claude-a": "anthropic",
        "claude-b": "anthropic",
    }
    # The provider's key goes with the list request, as with a proxied one.
    openai_list = next(r for r in transport.requests if "openai" in r.url)
    assert openai_list.headers["authorization"] == "Bearer sk-openai-secret-1234"
    assert [r.url for r in transport.requests if "anthropic" in r.url] == [
        "https://api.anthropic.com/v1/models?limit=1000",
        "https://api.anthropic.com/v1/models?limit=1000&after_id=claude-a",
    ]


async def test_a_provider_that_fails_to_list_keeps_its_last_list_and_says_why() -> None:
    failing = False

    def handler(request: UpstreamRequest) -> MockResponse:
        if failing and "openai" in request.url:
            raise UpstreamUnreachable("Provider 'openai' is unreachable: Connection refused.")
        return lists(request)

    gateway, _, _ = make_gateway(handler)
    await gateway.catalog.refresh(only_stale=False)
    failing = True
    await gateway.catalog.refresh(only_stale=False)
    listing = {x.provider: x for x in gateway.catalog.listings()}["openai"]
    assert [m.id for m in listing.models] == ["gpt-4o", "o3"]
    assert listing.error is not None and "unreachable" in listing.error
    assert "sk-openai-secret-1234" not in listing.error


async def test_configured_model_list_needs_no_request() -> None:
    gateway, transport, _ = make_gateway(
        lists, {"ANTHROPIC_API_KEY": "", "WLM_OPENAI_MODELS": "gpt-4o,gpt-x"}
    )
    entries = await gateway.catalog.entries()
    assert [e["id"] for e in entries] == ["gpt-4o", "gpt-x"]
    assert transport.requests == []


async def test_a_key_stored_as_a_hash_admits_its_client_and_is_redacted_from_its_records() -> None:
    key = "sk-client-bob-secret-777"
    digest = hashlib.sha256(key.encode()).hexdigest()

    def echo_key(request: UpstreamRequest) -> MockResponse:
        return completion(f"you said {key}")  # an upstream echoing what it was sent

    gateway, _, sink = make_gateway(echo_key, {"WLM_API_KEYS": f"bob:sha256:{digest}"})
    reply = await drive(
        gateway,
        body(model="gpt-4o", messages=[{"role": "user", "content": f"my key is {key}"}]),
        headers=[(b"authorization", f"Bearer {key}".encode())],
    )
    assert reply.status == 200
    record, conversation = sink.rows[0]
    assert record.client == "bob"
    assert conversation is not None
    stored = msgspec.json.encode([record, conversation]).decode()
    assert key not in stored and "[redacted]" in stored


async def test_the_admin_key_also_works_as_a_client_key() -> None:
    gateway, _, sink = make_gateway(
        lambda request: completion(),
        {"WLM_API_KEYS": "alice:sk-client-alice-0001", "WLM_ADMIN_KEY": "sk-admin-0002"},
    )
    reply = await drive(
        gateway,
        body(model="gpt-4o", messages=HELLO),
        headers=[(b"x-api-key", b"sk-admin-0002")],
    )
    assert reply.status == 200
    assert sink.only.client == "admin"


async def test_each_key_names_its_client_and_any_other_key_gets_a_401_before_any_upstream_call() -> (
    None
):
    gateway, transport, sink = make_gateway(
        lambda request: completion(),
        {"WLM_API_KEYS": "alice:sk-client-alice-0001,bob:sk-client-bob-0002"},
    )
    payload = body(model="gpt-4o", messages=HELLO)
    for headers, client in (
        ([(b"authorization", b"Bearer sk-client-bob-0002")], "bob"),
        ([(b"x-api-key", b"sk-client-alice-0001")], "alice"),
        # A scheme that is not Bearer is no key; an x-api-key after it still is.
        ([(b"authorization", b"Basic abc"), (b"x-api-key", b"sk-client-bob-0002")], "bob"),
    ):
        reply = await drive(gateway, payload, headers=headers)
        assert reply.status == 200
        assert sink.rows[-1][0].client == client
    upstream_calls = len(transport.requests)
    for headers in (
        [],
        [(b"authorization", b"Bearer ")],
        [(b"authorization", b"Bearer sk-client-alice-000")],  # a prefix of a key
        [(b"authorization", b"Bearer sk-client-alice-00011")],
        [(b"x-api-key", b"")],
    ):
        reply = await drive(gateway, payload, headers=headers)
        assert reply.status == 401, headers
        assert msgspec.json.decode(reply.body)["error"]["type"] == "authentication_error"
    assert len(transport.requests) == upstream_calls
