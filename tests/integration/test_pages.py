"""The pages in-process: an app per test, a real telemetry file, records put in directly."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from litestar.testing import AsyncTestClient

from tests.integration.local.localhelpers import write_unloadable_gguf
from wlm.app import create_app
from wlm.config import load_settings
from wlm.local.testmodel import write_tiny_gguf
from wlm.sessions import Session, SessionSigner
from wlm.telemetry.records import AttemptRecord, ConversationRecord, RequestRecord
from wlm.web.conversation import conversation_view

PAGES = ["/", "/models", "/analytics", "/requests", "/instances", "/settings"]
ADMIN_KEY = "admin-key-0123456789-abcdef"
PROVIDER_KEYS = {
    "OPENAI_API_KEY": "sk-openai-secret-value-0123456789",
    "ANTHROPIC_API_KEY": "sk-ant-secret-value-0123456789",
}
CLIENT_KEY = "client-secret-value-0123456789"

Client = AsyncTestClient[Any]


def settings_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "WLM_DATA_DIR": str(tmp_path / "data"),
        "WLM_MODELS_DIR": str(tmp_path / "models"),
        "WLM_OPENAI_MODELS": "gpt-4o-mini,<script>alert('model')</script>",
        "WLM_ANTHROPIC_MODELS": "claude-haiku-4-5",
        "WLM_LOCAL_THREADS": "1",
        "WLM_LOCAL_CTX_SIZE": "512",
        "WLM_LOCAL_PARALLEL": "1",
        **PROVIDER_KEYS,
        **extra,
    }


@pytest.fixture
def make_client(tmp_path: Path) -> Callable[..., Any]:
    """``async with make_client(env_extra, local=...) as client`` over a fresh app."""

    def make(local: Any = None, telemetry: Any = "default", **extra: str) -> Client:
        settings = load_settings(settings_env(tmp_path, **extra))
        app = create_app(settings, local="default" if local else None, telemetry=telemetry)
        return AsyncTestClient(app=app, base_url="http://127.0.0.1")

    return make


@pytest.fixture
async def client(make_client: Callable[..., Client]) -> AsyncIterator[Client]:
    async with make_client() as c:
        yield c


def csrf_token(html: str) -> str:
    match = re.search(r'"X-CSRF-Token": "([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html
    )
    assert match, "no CSRF token in the page"
    return match.group(1)


def record(
    request_id: str,
    *,
    provider: str | None = "openai",
    model: str = "gpt-4o-mini",
    status: str = "ok",
    http_status: int = 200,
    minutes_ago: float = 1,
    latency_ms: float = 120.0,
) -> RequestRecord:
    started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes_ago)
    ok = status == "ok"
    return RequestRecord(
        id=request_id,
        started_at=started,
        ended_at=started + dt.timedelta(milliseconds=latency_ms),
        endpoint="chat/completions",
        model=model,
        provider=provider,
        upstream_model=model,
        stream=False,
        status=status,
        http_status=http_status,
        error_type=None if ok else "upstream_error",
        error_message=None if ok else "upstream said no",
        ttft_ms=latency_ms / 2,
        latency_ms=latency_ms,
        prompt_tokens=10 if ok else None,
        completion_tokens=5 if ok else None,
        total_tokens=15 if ok else None,
    )


async def store(client: Client, *items: RequestRecord | tuple[RequestRecord, Any]) -> None:
    """Put records in the app's telemetry and wait until they are written."""
    telemetry = client.app.state.gateway.telemetry
    for item in items:
        rec, conversation = item if isinstance(item, tuple) else (item, None)
        assert telemetry.submit(rec, conversation)
    assert await asyncio.to_thread(telemetry.flush, 10.0)


# -- every page, and its JSON twin ---------------------------------------------------------


async def test_every_page_renders_and_has_a_json_twin(client: Client) -> None:
    for path in PAGES:
        page = await client.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html")
        assert "/static/htmx.min.js" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        twin = "/index.json" if path == "/" else f"{path}.json"
        assert f'href="{twin}"' in page.text
        for url in (twin, f"{path}?format=json"):
            data = await client.get(url)
            assert data.status_code == 200, url
            assert data.headers["content-type"].startswith("application/json")
            assert isinstance(data.json(), dict)


async def test_static_files_are_served_with_the_vendored_htmx(client: Client) -> None:
    htmx = await client.get("/static/htmx.min.js")
    assert htmx.status_code == 200 and b"htmx" in htmx.content
    sse = await client.get("/static/htmx-ext-sse.min.js")
    assert sse.status_code == 200 and b"sse" in sse.content
    assert (await client.get("/static/htmx.LICENSE")).status_code == 200
    assert (await client.get("/static/wlm.css")).status_code == 200


async def test_no_page_shows_a_key_and_settings_say_set_or_not_set(
    make_client: Callable[..., Client],
) -> None:
    extra = {"WLM_ADMIN_KEY": ADMIN_KEY, "WLM_API_KEYS": f"laptop:{CLIENT_KEY}"}
    async with make_client(**extra) as c:
        headers = {"authorization": f"Bearer {ADMIN_KEY}"}
        secrets = [ADMIN_KEY, CLIENT_KEY, *PROVIDER_KEYS.values()]
        for path in PAGES:
            for url in (path, "/index.json" if path == "/" else f"{path}.json"):
                page = await c.get(url, headers=headers)
                assert page.status_code == 200, url
                assert not [s for s in secrets if s in page.text], url
        settings = (await c.get("/settings.json", headers=headers)).json()
    keys = {p["name"]: p["api_key"] for p in settings["providers"]}
    assert keys == {"openai": "set", "anthropic": "set", "openrouter": "not set"}
    assert settings["keys"] == {
        "admin_key": "set",
        "client_keys": [{"name": "laptop", "key": "set"}],
    }


async def test_dashboard_tells_which_providers_have_a_key(client: Client) -> None:
    data = (await client.get("/index.json")).json()
    keys = {p["name"]: p["key"] for p in data["providers"]}
    assert keys == {"openai": "yes", "anthropic": "yes", "openrouter": "no"}
    assert data["last_hour"] == {"requests": 0, "errors": 0, "cancelled": 0, "error_rate": None}


# -- login, sessions, CSRF ---------------------------------------------------------------------


async def test_with_an_admin_key_pages_send_the_browser_to_login(
    make_client: Callable[..., Client],
) -> None:
    async with make_client(WLM_ADMIN_KEY=ADMIN_KEY) as c:
        for path in PAGES:
            page = await c.get(path, follow_redirects=False)
            assert page.status_code == 303, path
            assert page.headers["location"].startswith("/login?next=")
        refused = await c.get("/analytics.json")
        assert refused.status_code == 401
        assert refused.json()["error"]["type"] == "authentication_error"
        htmx = await c.get("/", headers={"hx-request": "true"})
        assert htmx.status_code == 401 and htmx.headers["hx-redirect"].startswith("/login")
        # The admin key as a bearer works for scripts, like /api.
        bearer = {"authorization": f"Bearer {ADMIN_KEY}"}
        c.cookies.clear()
        scripted = await c.get("/analytics.json", headers=bearer)
        assert scripted.status_code == 200
        assert "set-cookie" not in scripted.headers  # a script gets no session
        wrong = {"authorization": "Bearer nope"}
        assert (await c.get("/analytics.json", headers=wrong)).status_code == 401
        # Static files and the login form itself are open.
        assert (await c.get("/static/wlm.css")).status_code == 200
        assert (await c.get("/login")).status_code == 200


async def test_login_refuses_a_wrong_key_and_accepts_the_right_one(
    make_client: Callable[..., Client],
) -> None:
    async with make_client(WLM_ADMIN_KEY=ADMIN_KEY) as c:
        form = await c.get("/login?next=/analytics%3Frange%3D7d")
        token = csrf_token(form.text)
        wrong = await c.post(
            "/login", data={"key": "guess", "csrf_token": token, "next": "/analytics?range=7d"}
        )
        assert wrong.status_code == 401
        assert "That is not the admin key." in wrong.text
        assert (await c.get("/", follow_redirects=False)).status_code == 303

        right = await c.post(
            "/login",
            data={"key": ADMIN_KEY, "csrf_token": token, "next": "/analytics?range=7d"},
            follow_redirects=False,
        )
        assert right.status_code == 303
        assert right.headers["location"] == "/analytics?range=7d"
        cookie = right.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert ADMIN_KEY not in cookie
        assert (await c.get("/analytics")).status_code == 200

        page = await c.get("/")
        out = await c.post("/logout", data={"csrf_token": csrf_token(page.text)})
        assert out.url.path == "/login"
        assert (await c.get("/", follow_redirects=False)).status_code == 303


async def test_login_posts_need_the_form_token_and_next_stays_on_site(
    make_client: Callable[..., Client],
) -> None:
    async with make_client(WLM_ADMIN_KEY=ADMIN_KEY) as c:
        forged = await c.post("/login", data={"key": ADMIN_KEY})
        assert forged.status_code == 403
        token = csrf_token((await c.get("/login")).text)
        targets = (
            "//evil.example/x",
            "https://evil.example/",
            "/\\evil.example",
            "/\t/evil.example",
        )
        for target in targets:
            answer = await c.post(
                "/login",
                data={"key": ADMIN_KEY, "csrf_token": token, "next": target},
                follow_redirects=False,
            )
            assert answer.headers["location"] == "/", target
            token = csrf_token((await c.get("/")).text)


async def test_a_forged_session_cookie_is_not_a_login(make_client: Callable[..., Client]) -> None:
    async with make_client(WLM_ADMIN_KEY=ADMIN_KEY) as c:
        forged = SessionSigner(b"another secret").encode(Session("x" * 24, 2_000_000_000, True))
        c.cookies.set("wlm_session", forged)
        assert (await c.get("/", follow_redirects=False)).status_code == 303
        sid, issued, _admin, mac = forged.split(".")
        c.cookies.set("wlm_session", f"{sid}.{issued}.1.{mac[:-2]}xx")
        assert (await c.get("/", follow_redirects=False)).status_code == 303
        c.cookies.clear()
        garbled = await c.get(
            "/",
            headers={"cookie": "wlm_session=a.1.0.\u00e9".encode("latin-1")},
            follow_redirects=False,
        )
        assert garbled.status_code == 303  # a garbled cookie is no session, not a 500
        odd_token = await c.post("/login", data={"key": ADMIN_KEY, "csrf_token": "\u00ff"})
        assert odd_token.status_code == 403


def test_sessions_are_signed_and_expire() -> None:
    now = [1_000_000.0]
    signer = SessionSigner(b"k" * 32, max_age_s=60, clock=lambda: now[0])
    session = signer.new(admin=True)
    value = signer.encode(session)
    assert signer.decode(value) == session
    assert signer.decode(value.replace(".1.", ".0.")) is None  # the flag is signed
    assert signer.check_csrf(session, signer.csrf_token(session))
    assert not signer.check_csrf(session, signer.csrf_token(signer.new(admin=True)))
    assert not signer.check_csrf(session, None)
    now[0] += 61
    assert signer.decode(value) is None


async def test_posts_without_the_csrf_token_are_refused(client: Client) -> None:
    page = await client.get("/models")
    refused = await client.post("/models/load", data={"id": "nope"})
    assert refused.status_code == 403
    other = await client.post("/models/load", data={"id": "nope"}, headers={"x-csrf-token": "x"})
    assert other.status_code == 403
    garbled = await client.post(
        "/models/load", data={"id": "nope"}, headers={"x-csrf-token": "\u00e9".encode("latin-1")}
    )
    assert garbled.status_code == 403
    allowed = await client.post(
        "/models/load", data={"id": "nope"}, headers={"x-csrf-token": csrf_token(page.text)}
    )
    assert allowed.status_code == 404  # past the CSRF check; there is no such local model


# -- fragments -----------------------------------------------------------------------------------


async def test_htmx_gets_the_fragment_and_everyone_else_the_page(client: Client) -> None:
    htmx = {"hx-request": "true", "hx-target": "models-table"}
    fragment = await client.get("/models?provider=anthropic", headers=htmx)
    assert fragment.text.lstrip().startswith('<div id="models-table">')
    assert "claude-haiku-4-5" in fragment.text and "gpt-4o-mini" not in fragment.text
    assert "<html" not in fragment.text
    restore = await client.get(
        "/models?provider=anthropic", headers={**htmx, "hx-history-restore-request": "true"}
    )
    assert "<html" in restore.text
    assert "<html" in (await client.get("/models?fragment=models-table")).text
    live = await client.get("/", headers={"hx-request": "true", "hx-target": "live"})
    assert live.text.lstrip().startswith('<div id="live"')


# -- escaping -------------------------------------------------------------------------------------

XSS = "<script>alert('xss')</script>"


async def test_markup_from_clients_and_models_is_escaped(client: Client) -> None:
    conversation = ConversationRecord(
        request_id="req-xss",
        request_json=json.dumps(
            {
                "messages": [
                    {"role": "system", "content": f"system {XSS}"},
                    {"role": "user", "content": [{"type": "text", "text": f"user {XSS}"}]},
                ]
            }
        ),
        response_text=f"reply {XSS}",
        tool_calls_json=json.dumps(
            [{"id": "c1", "function": {"name": XSS, "arguments": json.dumps({"q": XSS})}}]
        ),
    )
    await store(client, (record("req-xss", model=f"m{XSS}"), conversation))
    for path in ("/requests/req-xss", "/requests", "/", "/analytics", "/models"):
        page = await client.get(path)
        assert page.status_code == 200, path
        assert "<script>alert" not in page.text, path
    detail = (await client.get("/requests/req-xss")).text
    assert detail.count("&lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt;") >= 5


# -- telemetry figures ---------------------------------------------------------------------------


async def test_analytics_breaks_requests_down_by_endpoint_native_or_translated(
    client: Client,
) -> None:
    native = attrs.evolve(record("m1"), endpoint="messages", upstream_endpoint="messages")
    translated = [
        attrs.evolve(record(f"m{i}"), endpoint="messages", upstream_endpoint="chat/completions")
        for i in (2, 3)
    ]
    chat = attrs.evolve(record("c1"), upstream_endpoint="chat/completions")
    refused = attrs.evolve(
        record("r1", status="error", http_status=401), endpoint="responses", upstream_endpoint=None
    )
    await store(client, native, *translated, chat, refused)
    data = (await client.get("/analytics.json")).json()
    rows = {(e["endpoint"], e["path"]): (e["requests"], e["errors"]) for e in data["endpoints"]}
    assert rows == {
        ("messages", "native"): (1, 0),
        ("messages", "translated"): (2, 0),
        ("chat/completions", "native"): (1, 0),
        ("responses", "none"): (1, 1),
    }
    html = (await client.get("/analytics")).text
    assert 'hx-get="/analytics?range=24h&amp;fragment=endpoints" hx-trigger="load"' in html
    table = (await client.get("/analytics?range=24h&fragment=endpoints")).text
    assert 'data-endpoint="messages" data-path="translated"' in table


async def test_analytics_and_dashboard_count_per_provider(client: Client) -> None:
    await store(
        client,
        record("a1"),
        record("a2"),
        record("a3", status="error", http_status=429),
        record("b1", provider="anthropic", model="claude-haiku-4-5"),
        record(
            "b2", provider="anthropic", model="claude-haiku-4-5", status="error", http_status=529
        ),
        record(
            "b3",
            provider="anthropic",
            model="claude-haiku-4-5",
            status="cancelled",
            http_status=499,
        ),
        record("old", minutes_ago=3 * 24 * 60),  # outside 24h, inside 7d
    )
    data = (await client.get("/analytics.json")).json()
    figures = {p["provider"]: (p["requests"], p["errors"]) for p in data["providers"]}
    assert figures == {"openai": (3, 1), "anthropic": (3, 1)}
    outcomes = {row["provider"]: row["counts"] for row in data["outcomes"]}
    assert outcomes == {
        "openai": {"ok": 2, "429": 1},
        "anthropic": {"ok": 1, "529": 1, "499": 1},
    }
    by_model = {(r["provider"], r["model"]): r["counts"] for r in data["model_outcomes"]}
    assert by_model == {
        ("openai", "gpt-4o-mini"): {"ok": 2, "429": 1},
        ("anthropic", "claude-haiku-4-5"): {"ok": 1, "529": 1, "499": 1},
    }
    models = {(m["provider"], m["model"]): m["requests"] for m in data["models"]}
    assert models == {("openai", "gpt-4o-mini"): 3, ("anthropic", "claude-haiku-4-5"): 3}
    assert set(data["latency_p50_ms"]) == {"openai", "anthropic"}
    week = (await client.get("/analytics.json?range=7d")).json()
    assert {p["provider"]: p["requests"] for p in week["providers"]}["openai"] == 4

    html = (await client.get("/analytics")).text
    # A requests chart per provider, and a p50 and a p95 line per provider in the latency chart.
    assert 'data-figure="requests-openai"' in html and 'data-figure="requests-anthropic"' in html
    latency = html[html.index('data-chart="latency"') :]
    latency = latency[: latency.index("</svg>")]
    assert latency.count('data-series="openai"') == latency.count('data-series="anthropic"') == 2

    dashboard = (await client.get("/index.json")).json()
    assert dashboard["last_hour"]["requests"] == 6
    assert dashboard["last_hour"]["errors"] == 2
    assert dashboard["feed"][0]["id"] in {"a1", "a2", "a3", "b1", "b2", "b3"}


async def test_outcomes_count_a_stream_that_failed_after_its_200_as_a_failure(
    client: Client,
) -> None:
    await store(
        client,
        record("ok1"),
        record("ok2"),
        record("limited", status="error", http_status=429),
        record("broke", status="error", http_status=200),  # failed mid-stream, after its 200
        record("left", status="cancelled", http_status=499),
        record("left-old", status="cancelled", http_status=200),  # stored before 499 was
        record("other", model="gpt-4o", status="error", http_status=200),
    )
    data = (await client.get("/analytics.json")).json()
    assert data["outcome_columns"] == ["ok", "429", "499", "error after 200"]
    assert data["outcomes"] == [
        {"provider": "openai", "counts": {"ok": 2, "429": 1, "499": 2, "error after 200": 2}}
    ]
    by_model = {r["model"]: r["counts"] for r in data["model_outcomes"]}
    assert by_model == {
        "gpt-4o-mini": {"ok": 2, "429": 1, "499": 2, "error after 200": 1},
        "gpt-4o": {"error after 200": 1},
    }
    # Every request is counted once, and the provider's errors are the failures shown.
    (openai,) = data["providers"]
    assert sum(data["outcomes"][0]["counts"].values()) == openai["requests"] == 7
    assert openai["errors"] == 3

    html = (await client.get("/analytics")).text
    table = html[html.index('<table class="analytics outcomes">') :]
    table = table[: table.index("</table>")]
    headings = re.findall(r'<th class="num"[^>]*>([^<]+)</th>', table)
    assert headings == ["ok", "429", "499", "error after 200"]
    cells = dict(re.findall(r'data-outcome="([^"]+)">(\d+)</td>', table))
    assert cells == {"ok": "2", "429": "1", "499": "2", "error after 200": "2"}
    assert "error after 200</b> when a stream failed after it had started" in html


async def test_requests_filter_and_page_back(client: Client) -> None:
    records = [record(f"r{i:02d}", minutes_ago=60 - i * 0.5) for i in range(55)]
    records.append(record("c1", provider="anthropic", model="claude-haiku-4-5"))
    records.append(record("e1", status="error", http_status=500))
    await store(client, *records)
    first = (await client.get("/requests.json")).json()
    assert len(first["requests"]) == 50 and first["older"] is not None
    assert first["requests"][0]["id"] in {"c1", "e1"}
    assert "claude-haiku-4-5" in first["models"]
    older = (await client.get("/requests.json", params={"before": first["older"]})).json()
    ids = {r["id"] for r in first["requests"]} | {r["id"] for r in older["requests"]}
    assert len(ids) == 57 and older["older"] is None
    only = (await client.get("/requests.json?provider=anthropic")).json()["requests"]
    assert [r["id"] for r in only] == ["c1"]
    errors = (await client.get("/requests.json?status=error")).json()["requests"]
    assert [r["id"] for r in errors] == ["e1"]
    html = (await client.get("/requests?status=error")).text
    assert 'data-id="e1"' in html and 'data-id="c1"' not in html


async def test_a_request_without_content_says_logging_was_off(client: Client) -> None:
    await store(client, (record("quiet"), ConversationRecord("quiet", None, None)))
    page = await client.get("/requests/quiet")
    assert page.status_code == 200
    assert "No content was kept" in page.text
    data = (await client.get("/requests/quiet.json")).json()
    assert data["record"]["id"] == "quiet" and data["conversation"]["logged"] is False
    missing = await client.get("/requests/nope")
    assert missing.status_code == 404 and "No request with this id" in missing.text


async def test_pages_work_without_telemetry(make_client: Callable[..., Client]) -> None:
    async with make_client(telemetry=None) as c:
        for path in PAGES:
            page = await c.get(path)
            assert page.status_code == 200, path
        assert "Telemetry is off." in (await c.get("/")).text
        assert (await c.get("/requests/x")).status_code == 503


# -- local models ------------------------------------------------------------------------------


async def row_in_state(c: Client, model_id: str, state: str, timeout: float = 30.0) -> str:
    """Poll the row (as the page does) until the model reaches ``state``; the row's HTML."""
    # The app runs on the test client's own loop, so the manager cannot be awaited here.
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        row = (await c.get(f"/models/row?id={model_id}")).text
        if f'data-state="{state}"' in row:
            return row
        assert asyncio.get_running_loop().time() < deadline, f"{model_id} never got {state}"
        await asyncio.sleep(0.1)  # the page polls every second; this is the same, faster


async def test_load_and_unload_answer_with_the_row_in_its_new_state(
    make_client: Callable[..., Client], tmp_path: Path
) -> None:
    write_tiny_gguf(tmp_path / "models" / "tiny.gguf")
    async with make_client(local=True) as c:
        token = csrf_token((await c.get("/models")).text)
        headers = {"x-csrf-token": token, "hx-request": "true"}
        row = await c.post("/models/load", data={"id": "tiny"}, headers=headers)
        assert row.status_code == 200
        assert re.search(r'data-state="(starting|ready)"', row.text)
        ready = await row_in_state(c, "tiny", "ready")
        assert "Unload" in ready
        assert "hx-trigger" not in ready  # a settled row stops polling
        instances = (await c.get("/instances.json")).json()["instances"]
        assert instances[0]["model_id"] == "tiny" and instances[0]["pid"]
        gone = await c.post("/models/unload", data={"id": "tiny"}, headers=headers)
        assert re.search(r'data-state="(stopping|stopped)"', gone.text)
        assert "Load" in await row_in_state(c, "tiny", "stopped")


async def test_a_model_that_cannot_load_shows_why(
    make_client: Callable[..., Client], tmp_path: Path
) -> None:
    (tmp_path / "models").mkdir()
    write_unloadable_gguf(tmp_path / "models" / "bad.gguf")
    async with make_client(local=True) as c:
        token = csrf_token((await c.get("/models")).text)
        await c.post("/models/load", data={"id": "bad"}, headers={"x-csrf-token": token})
        row = await row_in_state(c, "bad", "failed")
        assert 'class="error small"' in row  # the engine's reason, under the state
        assert "Load" in row  # and it can be tried again


# -- pure parts ------------------------------------------------------------------------------------


def test_conversation_view_reads_every_shape() -> None:
    row = {
        "request_json": json.dumps(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "look"},
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/png;base64,AAAA"},
                            },
                        ],
                    },
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "t1",
                                "type": "function",
                                "function": {"name": "f", "arguments": '{"a": 1}'},
                            },
                        ],
                    },
                    {"role": "tool", "tool_call_id": "t1", "content": "42"},
                ]
            }
        ),
        "response_text": "done",
        "reasoning_text": None,
        "tool_calls_json": "not json",
    }
    view = conversation_view(row)
    user, assistant, tool = view["messages"]
    assert [p["kind"] for p in user["parts"]] == ["text", "image"]
    assert user["parts"][1]["text"] == "data:image/png;base64,…"
    assert assistant["tool_calls"] == [{"id": "t1", "name": "f", "arguments": '{\n  "a": 1\n}'}]
    assert tool["tool_call_id"] == "t1" and tool["parts"][0]["text"] == "42"
    assert view["tool_calls"][0]["arguments"] == "not json"  # kept, not dropped
    assert conversation_view({"request_json": None})["logged"] is False
    completion = conversation_view({"request_json": json.dumps({"prompt": "once upon"})})
    assert completion["prompt"] == "once upon"


CHARTS = (
    "latency",
    "ttft",
    "speed",
    "tokens",
    "cost",
    "latency histogram",
    "ttft histogram",
    "speed against cost",
)


def chart(html: str, name: str) -> str:
    """The ``<svg>`` of the chart named ``name`` in a page."""
    start = html.index(f'data-chart="{name}"')
    return html[html.rindex("<svg", 0, start) : html.index("</svg>", start)]


async def test_every_chart_says_when_the_window_is_empty(client: Client) -> None:
    html = (await client.get("/analytics")).text
    for name in (*CHARTS, "requests"):
        svg = chart(html, name)
        assert 'data-empty="true"' in svg, name
        assert "No requests in this window" in svg or "No model" in svg or "No priced" in svg
    # the requests' charts, and the box's three (CPU and GPU use, memory, slots)
    assert html.count('<details class="numbers">') == len(CHARTS) + 1 + 3


async def test_one_request_draws_one_visible_point_in_every_chart(client: Client) -> None:
    await store(client, attrs.evolve(record("only"), cost_usd=0.002, tokens_per_s=50.0))
    html = (await client.get("/analytics")).text
    for name in CHARTS:
        svg = chart(html, name)
        assert 'data-empty="true"' not in svg, name
        assert 'data-marks="0"' not in svg, name
    latency = chart(html, "latency")
    dots = re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)" r="([\d.]+)"', latency)
    assert len(dots) == 2  # p50 and p95, each a visible mark inside the plot
    for x, y, r in dots:
        assert 82 < float(x) < 616 and 12 < float(y) < 194 and float(r) >= 4
    # Its numbers are a click away, and in the JSON twin.
    # (speed from the histogram: within 2.5%)
    assert re.search(r"<td>openai</td><td>gpt-4o-mini</td><td>5\d(\.\d)? tok/s</td>", html)
    data = (await client.get("/analytics.json")).json()
    assert [r["series"] for r in data["timeseries"]] == ["openai"]
    assert data["outcomes_timeseries"][0]["outcome"] == "ok"
    assert {r["metric"] for r in data["latency_histogram"]} == {"latency_ms", "ttft_ms"}
    for name in ("1h", "7d", "30d"):
        other = (await client.get(f"/analytics?range={name}&by=model")).text
        assert 'data-series="gpt-4o-mini"' in chart(other, "latency"), name


async def test_dashboard_shows_the_last_minutes(client: Client) -> None:
    gateway = client.app.state.gateway
    gateway.metrics.observe("openai", "gpt-4o-mini", "ok", 0.1, None, None, None)
    gateway.metrics.observe("openai", "gpt-4o-mini", "error", 0.1, None, None, None)
    gateway.pulse.beat(time.time())
    html = (await client.get("/")).text
    for name in ("requests per second", "in flight", "errors"):
        assert 'data-empty="true"' not in chart(html, name), name
    assert 'data-series="openai"' not in html  # columns, not lines: a rect per provider
    assert "openai: 0.4/s" in chart(html, "requests per second")
    pulse = (await client.get("/index.json")).json()["pulse"]
    assert pulse[-1]["requests_per_s"] == {"openai": 0.4} and pulse[-1]["errors"] == {"openai": 1}


async def test_json_twin_of_a_page_needs_no_browser(client: Client) -> None:
    """A script can read every page as JSON with nothing but an HTTP client."""
    transport = httpx.ASGITransport(app=client.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as plain:
        models = (await plain.get("/models.json")).json()
    ids = {(m["provider"], m["id"]) for m in models["models"]}
    # Listed as they route: with no WLM_ROUTES, behind the provider's prefix.
    assert ("anthropic", "anthropic/claude-haiku-4-5") in ids
    assert models["filter"] == {"provider": "", "q": ""}


async def test_dashboard_shows_a_failing_telemetry_writer(
    make_client: Callable[..., Client], tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the telemetry directory should be")
    async with make_client(WLM_TELEMETRY_PATH=str(blocker / "telemetry.duckdb")) as client:
        html = (await client.get("/")).text
    assert 'id="telemetry-writer"' in html
    assert "Telemetry writer: failing" in html


# -- settings ---------------------------------------------------------------------------------------


async def test_settings_show_the_telemetry_file_in_use(
    make_client: Callable[..., Client], tmp_path: Path
) -> None:
    default = tmp_path / "data" / "telemetry.duckdb"
    chosen = tmp_path / "elsewhere" / "t.duckdb"
    for extra, expected in (({}, default), ({"WLM_TELEMETRY_PATH": str(chosen)}, chosen)):
        async with make_client(**extra) as c:
            general = (await c.get("/settings.json")).json()["general"]
            html = (await c.get("/settings")).text
        rows = {row["name"]: row for row in general}
        assert rows["telemetry_path"] == {
            "name": "telemetry_path",
            "variable": "WLM_TELEMETRY_PATH",
            "value": str(expected),
        }
        assert "telemetry_file" not in rows  # one row for the file, not two
        assert re.search(
            rf"<td>telemetry_path</td><td><code>WLM_TELEMETRY_PATH</code></td><td>{re.escape(str(expected))}</td>",
            html,
        )


async def test_a_request_whose_messages_are_not_objects_still_shows(client: Client) -> None:
    # A client may send anything; the 400 it got is stored with the body it sent.
    conversation = ConversationRecord(
        request_id="req-odd",
        request_json=json.dumps({"messages": ["just text", {"role": "user", "content": "hi"}]}),
        response_text=None,
    )
    await store(client, (record("req-odd", status="error", http_status=400), conversation))
    page = await client.get("/requests/req-odd")
    assert page.status_code == 200
    assert "just text" in page.text and "hi" in page.text


async def test_settings_show_each_keys_use_against_its_limits(
    make_client: Callable[..., Client],
) -> None:
    env = {
        "WLM_API_KEYS": "alice:sk-alice-0123456789,bob:sk-bob-0123456789",
        "WLM_KEY_LIMITS": "alice:rpm=1;usd_per_day=5,*:concurrency=4",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",  # nothing listens: the try fails fast
    }
    async with make_client(**env) as c:
        alice = {"authorization": "Bearer sk-alice-0123456789"}
        chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        first = await c.post("/v1/chat/completions", json=chat, headers=alice)
        refused = await c.post("/v1/chat/completions", json=chat, headers=alice)
        limits = (await c.get("/settings.json")).json()["limits"]
        html = (await c.get("/settings")).text
    assert first.status_code != 429 and refused.status_code == 429
    rows = {row["client"]: row for row in limits}
    assert set(rows) == {"alice", "bob", "anonymous"}
    assert rows["alice"]["requests_used"] == 1 and rows["alice"]["rpm"] == 1
    assert rows["alice"]["refused"] == 1 and rows["alice"]["usd_per_day"] == 5
    assert rows["bob"]["rpm"] is None and rows["bob"]["concurrency"] == 4
    assert "<h2>Limits" in html and "1 of 1" in html


async def test_analytics_shows_retries_fallbacks_and_spillovers_per_provider(
    client: Client,
) -> None:
    now = dt.datetime.now(dt.UTC)
    rescued = attrs.evolve(
        record("f1", provider="openrouter"),
        attempts=3,
        fallback_from="gpt-4o-mini",
        upstream_endpoint="chat/completions",
    )
    spilled = attrs.evolve(
        record("s1", provider="openai"),
        attempts=2,
        fallback_from="qwen",
        upstream_endpoint="chat/completions",
    )

    def tried(request_id: str, number: int, provider: str, moved_on: str | None) -> AttemptRecord:
        status = 429 if moved_on in ("retry", "fallback") else None
        return AttemptRecord(request_id, number, provider, "m", now, 5.0, status, None, moved_on)

    telemetry = client.app.state.gateway.telemetry
    assert telemetry.submit(
        rescued,
        None,
        (
            tried("f1", 1, "openai", "retry"),
            tried("f1", 2, "openai", "fallback"),
            tried("f1", 3, "openrouter", None),
        ),
    )
    assert telemetry.submit(
        spilled, None, (tried("s1", 1, "local", "spillover"), tried("s1", 2, "openai", None))
    )
    await store(client, attrs.evolve(record("plain"), upstream_endpoint="chat/completions"))
    rows = {r["provider"]: r for r in (await client.get("/analytics.json")).json()["resilience"]}
    assert set(rows) == {"openai", "openrouter", "local"}  # the plain request moved nothing
    assert (rows["openai"]["retries"], rows["openai"]["fallbacks"]) == (1, 1)
    assert rows["openai"]["rescued"] == 1  # it answered for the local model
    assert rows["openrouter"]["rescued"] == 1 and rows["openrouter"]["ok_after_more_tries"] == 1
    assert rows["local"]["spillovers"] == 1
    html = (await client.get("/analytics")).text
    assert "<h2>Retries and fallbacks</h2>" in html and 'data-provider="local"' in html


async def test_dashboard_and_metrics_show_the_pairs_cooling_down(client: Client) -> None:
    gateway = client.app.state.gateway
    assert "Cooling down" not in (await client.get("/")).text  # nothing failing: no section
    cooldowns = gateway.cooldowns
    for _ in range(3):  # WLM_COOLDOWN_FAILURES retryable failures in a row
        cooldowns.failed(("openai", "gpt-4o"), cooldowns.admit(("openai", "gpt-4o")))
    cooldowns.failed(("anthropic", "claude-x"), cooldowns.admit(("anthropic", "claude-x")))
    cooldowns.admit(("openai", "gpt-4o"), last=False)  # a request skips it

    html = (await client.get("/", headers={"hx-request": "true", "hx-target": "live"})).text
    assert "<h2>Cooling down</h2>" in html
    rows = re.findall(r'<tr data-provider="([^"]+)">(.*?)</tr>', html, re.S)
    assert [provider for provider, _ in rows] == ["openai", "anthropic"]  # cooling first
    assert "cooling down" in rows[0][1] and "30 s" in rows[0][1]
    assert "failing" in rows[1][1]
    data = (await client.get("/index.json")).json()
    assert [(c["provider"], c["model"], c["state"]) for c in data["cooldowns"]] == [
        ("openai", "gpt-4o", "cooling"),
        ("anthropic", "claude-x", "failing"),
    ]

    metrics = (await client.get("/metrics")).text.split("\n")
    assert "wlm_cooldowns_active 1" in metrics
    assert 'wlm_cooldowns_started_total{provider="openai"} 1' in metrics
    assert 'wlm_cooldown_skips_total{provider="openai"} 1' in metrics
