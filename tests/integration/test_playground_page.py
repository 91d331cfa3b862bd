"""The playground in-process: the page behind the admin login, its requests through the
proxy on the page's session, their telemetry rows, and replay from a logged request."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from wlm.app import create_app
from wlm.config import load_settings
from wlm.transport import MockResponse, MockTransport, UpstreamRequest

ADMIN_KEY = "admin-key-for-the-playground-0123456789"
CLIENT_KEY = "client-key-for-the-playground-0123456789"
OPENAI_KEY = "sk-openai-playground-secret-0123456789"
PLAYGROUND = {"x-wlm-playground": "1"}

Client = AsyncTestClient[Any]


def upstream(request: UpstreamRequest) -> MockResponse:
    """OpenAI: every chat answered with usage, so the row has tokens and a cost."""
    return MockResponse.json(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Paris."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23},
        }
    )


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    settings = load_settings(
        {
            "WLM_DATA_DIR": str(tmp_path / "data"),
            "WLM_MODELS_DIR": str(tmp_path / "models"),
            "OPENAI_API_KEY": OPENAI_KEY,
            "WLM_OPENAI_MODELS": "gpt-4o-mini,gpt-4o",
            "WLM_ROUTES": "gpt-*=openai",
            "WLM_ADMIN_KEY": ADMIN_KEY,
            "WLM_API_KEYS": f"app:{CLIENT_KEY}",
        }
    )
    app = create_app(settings, local=None, transports=MockTransport(upstream).factory)
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1") as c:
        yield c


def csrf_token(page: str) -> str:
    match = re.search(r'"X-CSRF-Token": "([^"]+)"', page) or re.search(
        r'name="csrf_token" value="([^"]+)"', page
    )
    assert match, "no CSRF token in the page"
    return match.group(1)


async def log_in(client: Client) -> str:
    """Log in with the admin key; the playground page's CSRF token."""
    form = await client.get("/login")
    await client.post("/login", data={"key": ADMIN_KEY, "csrf_token": csrf_token(form.text)})
    page = await client.get("/playground")
    assert page.status_code == 200
    return csrf_token(page.text)


async def written(client: Client) -> None:
    telemetry = client.app.state.gateway.telemetry
    assert await asyncio.to_thread(telemetry.flush, 10.0)


async def chat(client: Client, headers: dict[str, str], **body: Any) -> Any:
    payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Capital?"}]}
    return await client.post("/v1/chat/completions", json={**payload, **body}, headers=headers)


async def test_the_page_lists_every_model_and_holds_no_key(client: Client) -> None:
    assert (await client.get("/playground", follow_redirects=False)).status_code == 303
    await log_in(client)
    page = await client.get("/playground")
    text = page.text
    for model in ("gpt-4o-mini", "gpt-4o"):
        assert f'<option value="{model}" data-provider="openai"' in text
    assert '<script src="/static/playground.js" defer></script>' in text
    assert 'href="/playground" class="active"' in text  # in the navigation
    for secret in (ADMIN_KEY, CLIENT_KEY, OPENAI_KEY):
        assert secret not in text
    script = await client.get("/static/playground.js")
    assert script.status_code == 200 and "x-wlm-playground" in script.text
    for secret in (ADMIN_KEY, CLIENT_KEY, OPENAI_KEY):
        assert secret not in script.text
    twin = (await client.get("/playground.json")).json()
    assert [m["id"] for m in twin["models"]] == ["gpt-4o-mini", "gpt-4o"]


async def test_a_playground_request_rides_the_admin_session_and_is_recorded_as_playground(
    client: Client,
) -> None:
    token = await log_in(client)
    reply = await chat(client, {**PLAYGROUND, "x-csrf-token": token}, temperature=0.2)
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == "Paris."
    request_id = reply.headers["x-request-id"]
    # The figures the page shows under the reply: its telemetry row's, waited for.
    figures = (await client.get(f"/playground/figures?id={request_id}")).json()
    record = (await client.get(f"/requests/{request_id}.json")).json()["record"]
    assert figures["record"] == {key: record[key] for key in figures["record"]}
    assert record["client"] == "playground"
    assert record["completion_tokens"] == 3
    assert record["cost_usd"] is not None and record["cost_usd"] > 0
    missing = (await client.get("/playground/figures")).json()
    assert missing["record"] is None

    # The same session without the header, or the header without the token: refused.
    assert (await chat(client, {"x-csrf-token": token})).status_code == 401
    assert (await chat(client, PLAYGROUND)).status_code == 401
    # A client key still works as ever, and is not the playground.
    keyed = await chat(client, {"authorization": f"Bearer {CLIENT_KEY}"})
    assert keyed.status_code == 200
    await written(client)
    other = (await client.get(f"/requests/{keyed.headers['x-request-id']}.json")).json()
    assert other["record"]["client"] == "app"


async def test_a_browser_that_is_not_logged_in_cannot_use_the_playground(client: Client) -> None:
    page = await client.get("/login")  # a session, but not an admin's
    reply = await chat(client, {**PLAYGROUND, "x-csrf-token": csrf_token(page.text)})
    assert reply.status_code == 401
    assert "log in" in reply.json()["error"]["message"]


async def test_a_logged_request_opens_in_the_playground_and_replays_on_another_model(
    client: Client,
) -> None:
    token = await log_in(client)
    messages = [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Capital of France?"},
    ]
    reply = await chat(
        client, {**PLAYGROUND, "x-csrf-token": token}, messages=messages, max_tokens=40
    )
    request_id = reply.headers["x-request-id"]
    await written(client)

    detail = (await client.get(f"/requests/{request_id}")).text
    assert f'href="/playground?from={request_id}"' in detail
    assert 'name="replay"' in detail and '<option value="gpt-4o">' in detail

    opened = html.unescape((await client.get(f"/playground?from={request_id}")).text)
    assert ">Answer in one word.</textarea>" in opened
    assert ">Capital of France?</textarea>" in opened
    assert 'name="max_tokens" type="number" min="1" step="1" value="40"' in opened
    assert '<option value="gpt-4o-mini" data-provider="openai" selected>' in opened
    assert "data-autorun" not in opened

    replay = (await client.get(f"/playground?from={request_id}&replay=gpt-4o")).text
    assert 'data-autorun="1"' in replay
    assert '<option value="gpt-4o" data-provider="openai" selected>' in replay
    logged = re.search(r'<article class="pg-column pg-logged"[^>]*>.*?</article>', replay, re.S)
    assert logged and "Paris." in logged.group(0) and request_id in logged.group(0)


async def test_with_client_keys_and_no_admin_key_the_page_says_it_cannot_send(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        {
            "WLM_DATA_DIR": str(tmp_path / "data"),
            "WLM_MODELS_DIR": str(tmp_path / "models"),
            "OPENAI_API_KEY": OPENAI_KEY,
            "WLM_OPENAI_MODELS": "gpt-4o-mini",
            "WLM_ROUTES": "gpt-*=openai",
            "WLM_API_KEYS": f"app:{CLIENT_KEY}",
        }
    )
    app = create_app(settings, local=None, transports=MockTransport(upstream).factory)
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1") as c:
        page = await c.get("/playground")
        assert 'id="pg-refused"' in page.text
        assert re.search(r'<button type="submit" id="pg-send" class="primary" disabled>', page.text)
        reply = await chat(c, {**PLAYGROUND, "x-csrf-token": csrf_token(page.text)})
        assert reply.status_code == 401
