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

    # The request page's Replay on: the browser says it came from there, so it runs at once.
    from_page = {
        "sec-fetch-site": "same-origin",
        "referer": f"http://127.0.0.1/requests/{request_id}",
    }
    replay = (
        await client.get(f"/playground?from={request_id}&replay=gpt-4o", headers=from_page)
    ).text
    assert 'data-autorun="1"' in replay and 'id="pg-replay-confirm"' not in replay
    assert '<option value="gpt-4o" data-provider="openai" selected>' in replay
    logged = re.search(r'<article class="pg-column pg-logged"[^>]*>.*?</article>', replay, re.S)
    assert logged and "Paris." in logged.group(0) and request_id in logged.group(0)


async def logged_request(client: Client) -> str:
    """A client's own request (its own x-request-id), written: what a replay link names."""
    reply = await chat(
        client,
        {"authorization": f"Bearer {CLIENT_KEY}", "x-request-id": "cheap-prompt-1"},
        messages=[{"role": "user", "content": "Write a long essay."}],
    )
    assert reply.status_code == 200
    await written(client)
    return "cheap-prompt-1"


@pytest.mark.parametrize(
    ("headers", "autorun"),
    [
        ({"sec-fetch-site": "same-origin", "referer": "http://127.0.0.1/requests/{id}"}, True),
        ({}, False),  # a typed URL, a bookmark, an old browser: no fetch metadata
        ({"sec-fetch-site": "none"}, False),
        ({"sec-fetch-site": "cross-site", "referer": "https://evil.example/requests/x"}, False),
        # A cross-site link to /playground goes through /login?next=...: after logging in,
        # the page's GET is same-origin, but from the login page, not a request's page.
        ({"sec-fetch-site": "same-origin", "referer": "http://127.0.0.1/login?next=/x"}, False),
        ({"sec-fetch-site": "same-origin", "referer": "http://127.0.0.1/playground"}, False),
        ({"sec-fetch-site": "same-site", "referer": "http://127.0.0.1/requests/{id}"}, False),
    ],
)
async def test_a_replay_sends_at_once_only_when_the_browser_came_from_the_request_page(
    client: Client, headers: dict[str, str], autorun: bool
) -> None:
    await log_in(client)
    request_id = await logged_request(client)
    headers = {name: value.format(id=request_id) for name, value in headers.items()}
    page = await client.get(f"/playground?from={request_id}&replay=gpt-4o", headers=headers)
    text = page.text
    assert page.status_code == 200
    assert ("data-autorun" in text) is autorun
    # Otherwise the form is loaded all the same, and says a click on Replay sends it.
    assert ('id="pg-replay-confirm"' in text) is not autorun
    assert ">Write a long essay.</textarea>" in text
    assert '<option value="gpt-4o" data-provider="openai" selected>' in text
    button = re.search(r'<button type="submit" id="pg-send"[^>]*>([^<]*)</button>', text)
    assert button and button.group(1) == ("Send" if autorun else "Replay")


async def test_a_cross_site_replay_link_through_the_login_does_not_send(client: Client) -> None:
    await log_in(client)
    request_id = await logged_request(client)
    await client.post("/logout", headers={"x-csrf-token": csrf_token((await client.get("/")).text)})
    # The admin follows another site's link: not logged in, so to /login?next=<the link>.
    link = f"/playground?from={request_id}&replay=gpt-4o"
    cross = {"sec-fetch-site": "cross-site", "referer": "https://evil.example/"}
    to_login = await client.get(link, headers=cross, follow_redirects=False)
    assert to_login.status_code == 303 and to_login.headers["location"].startswith("/login?next=")
    form = await client.get(to_login.headers["location"], headers=cross)
    logged_in = await client.post(
        to_login.headers["location"],
        data={"key": ADMIN_KEY, "csrf_token": csrf_token(form.text)},
        follow_redirects=False,
    )
    assert logged_in.status_code == 303 and logged_in.headers["location"] == link
    # The browser's GET after the login's redirect: same-origin, from the login page.
    after = {
        "sec-fetch-site": "same-origin",
        "referer": f"http://127.0.0.1{to_login.headers['location']}",
    }
    page = (await client.get(link, headers=after)).text
    assert "data-autorun" not in page and 'id="pg-replay-confirm"' in page


async def test_the_request_page_does_not_wait_for_a_stale_model_list(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = await log_in(client)
    reply = await chat(client, {**PLAYGROUND, "x-csrf-token": token})
    await written(client)
    catalog = client.app.state.gateway.catalog
    await catalog.entries()  # the lists cached

    async def hanging(name: str) -> None:
        await asyncio.sleep(60)  # a provider that does not answer its model list

    monkeypatch.setattr(catalog, "_stale", lambda name: True)
    monkeypatch.setattr(catalog, "_fetch", hanging)
    loop = asyncio.get_running_loop()
    started = loop.time()
    page = await client.get(f"/requests/{reply.headers['x-request-id']}")
    assert loop.time() - started < 2.0  # entries() waits up to 5 s for a stale list
    assert page.status_code == 200 and '<option value="gpt-4o">' in page.text  # as cached


async def test_the_figures_look_the_row_up_by_its_own_id_only(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    await log_in(client)
    request_id = await logged_request(client)  # a client's own id, not the row's
    record = (await client.get(f"/requests/{request_id}.json")).json()["record"]
    row_id = record["id"]
    assert row_id != request_id
    monkeypatch.setattr("wlm.web.playground.FIGURES_WAIT_S", 0.3)
    by_row = (await client.get(f"/playground/figures?id={row_id}")).json()
    assert by_row["record"]["id"] == row_id
    # The page never sends x-request-id, so the id it asks about is always a row's.
    assert (await client.get(f"/playground/figures?id={request_id}")).json()["record"] is None


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
        # One rule for both: the page gives the reason the proxy refuses with.
        message = reply.json()["error"]["message"]
        reason = message.removeprefix("This playground request was refused: ").rstrip(".")
        assert "WLM_ADMIN_KEY" in reason
        assert f"The playground cannot send here: {html.escape(reason)}." in page.text
