"""The pages in a real browser: they load offline and clean, and do what they show."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.browser.conftest import (
    ADMIN_KEY,
    EXPECTED,
    LOCAL_MODEL,
    XSS_MODEL,
    Demo,
    Watched,
)

pytestmark = pytest.mark.browser

expect: Any = None  # playwright's expect, imported once chromium is known to be there


@pytest.fixture(autouse=True)
def _expect(chromium: Any) -> None:
    global expect
    from playwright.sync_api import expect as playwright_expect

    expect = playwright_expect


def assert_clean(watched: Watched) -> None:
    assert watched.console_errors == []
    assert watched.dialogs == []
    assert watched.foreign_urls() == []


def test_every_page_loads_offline_without_console_errors(
    demo: Demo, watched: Callable[[], Watched]
) -> None:
    view = watched()
    page = view.page
    tour = [
        ("/", "dashboard", "Dashboard"),
        ("/models", "models", "Models"),
        ("/analytics", "analytics", "Analytics"),
        ("/requests", "requests", "Requests"),
        (f"/requests/{demo.xss_request_id}", "request", "Request"),
        ("/instances", "instances", "Local instances"),
        ("/settings", "settings", "Settings"),
    ]
    for path, name, heading in tour:
        response = page.goto(demo.base_url + path)
        assert response is not None and response.status == 200, path
        expect(page.locator("h1")).to_contain_text(heading)
        # htmx and its SSE extension loaded from /static, and nothing else from elsewhere.
        assert page.evaluate("typeof window.htmx") == "object", path
        view.screenshot(name)
    assert any(url.endswith("/static/htmx.min.js") for url in view.urls)
    assert_clean(view)


def test_dashboard_shows_providers_and_a_live_feed(
    demo: Demo, watched: Callable[[], Watched]
) -> None:
    view = watched()
    page = view.page
    page.goto(demo.base_url + "/")
    before = int(page.locator("#requests-last-hour").inner_text())
    assert before >= 7
    expect(page.locator("#errors-last-hour")).to_have_text("1")
    providers = page.locator("table.providers")
    for name in ("openai", "anthropic", "openrouter"):
        expect(providers.locator(f"tr[data-provider={name}] .key")).to_have_text("yes")
    for fake in demo.fakes.values():
        assert fake.api_key is not None and fake.api_key not in page.content()
    # The feed polls: a request made now shows up without a reload. (OpenRouter, so the
    # analytics test's counts for the known mix stay as they are.)
    demo.chat("openrouter/openai/gpt-4o-mini", "one more")
    expect(page.locator("#requests-last-hour")).to_have_text(str(before + 1), timeout=10_000)
    first = page.locator("table.feed tbody tr").first
    expect(first).to_contain_text("openrouter/openai/gpt-4o-mini")
    expect(first.locator(".badge")).to_have_text("openrouter")
    assert_clean(view)


def test_models_page_lists_every_provider_with_badges_and_filters(
    demo: Demo, watched: Callable[[], Watched]
) -> None:
    view = watched()
    page = view.page
    page.goto(demo.base_url + "/models")
    rows = page.locator("tr.model-row")
    local = rows.filter(has=page.locator(".badge.provider-local"))
    expect(local).to_have_count(1)
    expect(local).to_contain_text(LOCAL_MODEL)
    expect(local).to_contain_text("llama")  # architecture from the GGUF header
    openai_rows = rows.filter(has=page.locator(".badge.provider-openai"))
    expect(openai_rows.filter(has_text="gpt-4o-mini")).to_have_count(1)
    anthropic_rows = rows.filter(has=page.locator(".badge.provider-anthropic"))
    expect(anthropic_rows.filter(has_text="claude-haiku-4-5-20251001")).to_have_count(1)
    # A model name with markup is listed as text.
    expect(openai_rows.filter(has_text=XSS_MODEL)).to_have_count(1)

    page.select_option("#provider", "anthropic")
    expect(rows.filter(has=page.locator(".badge.provider-openai"))).to_have_count(0)
    expect(anthropic_rows).to_have_count(3)
    assert "provider=anthropic" in page.url  # the filter is in the address, so it can be shared
    page.select_option("#provider", "")
    page.fill("#q", "tiny")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(LOCAL_MODEL)
    assert page.evaluate("window.__wlm_xss") is None
    assert_clean(view)


def test_load_and_unload_a_local_model_from_the_page(
    demo: Demo, watched: Callable[[], Watched]
) -> None:
    view = watched()
    page = view.page
    page.goto(demo.base_url + "/models?provider=local")
    row = page.locator(f"tr.model-row[data-model='{LOCAL_MODEL}']")
    expect(row).to_have_attribute("data-state", "stopped")
    page.evaluate("window.__same_page = true")  # gone if anything reloads the page
    row.get_by_role("button", name="Load").click()
    # The row is swapped in place: first the load in progress, then its outcome.
    expect(row).to_have_attribute("data-state", re.compile("starting|ready"))
    expect(row).to_have_attribute("data-state", "ready", timeout=30_000)
    expect(row.get_by_role("button", name="Unload")).to_be_visible()
    assert page.evaluate("window.__same_page") is True
    view.screenshot("models-loaded")

    page.goto(demo.base_url + "/instances")
    instance = page.locator(f"table.instances tr[data-model='{LOCAL_MODEL}']")
    expect(instance).to_have_attribute("data-state", "ready")
    expect(instance.locator(".pid")).to_have_text(re.compile(r"^\d+$"))
    expect(instance.locator(".port")).to_have_text(re.compile(r"^\d+$"))
    # The log tail arrives over SSE.
    expect(page.locator("#log-box .logline").first).to_be_visible(timeout=10_000)
    view.screenshot("instances")

    page.goto(demo.base_url + "/models?provider=local")
    row.get_by_role("button", name="Unload").click()
    expect(row).to_have_attribute("data-state", "stopped", timeout=30_000)
    expect(row.get_by_role("button", name="Load")).to_be_visible()
    assert_clean(view)


def test_analytics_counts_the_known_mix_per_provider(
    demo: Demo, watched: Callable[[], Watched]
) -> None:
    view = watched()
    page = view.page
    page.goto(demo.base_url + "/analytics")
    table = page.locator("table.by-provider")
    for provider, figures in EXPECTED.items():
        row = table.locator(f"tr[data-provider='{provider}']")
        expect(row.locator(".requests")).to_have_text(str(figures["requests"]))
        expect(row.locator(".errors")).to_have_text(str(figures["errors"]))
    outcomes = page.locator("table.outcomes tr[data-provider='openai']")
    expect(outcomes.locator("[data-outcome='400']")).to_have_text("1")
    # The charts are drawn: a requests chart per provider, and a p50 and a p95 latency line.
    latency = page.locator("svg.line-chart[data-chart='latency']")
    for provider in EXPECTED:
        expect(page.locator(f"svg.column-chart[data-chart='requests {provider}']")).to_be_visible()
        expect(latency.locator(f"g.series[data-series='{provider}']")).to_have_count(2)
    # Switching the range swaps the figures in place.
    page.get_by_role("link", name="7d").click()
    expect(page.locator("nav.ranges > a.active")).to_have_text("7d")
    assert "range=7d" in page.url
    expect(table.locator("tr[data-provider='openai'] .requests")).to_have_text("5")
    assert_clean(view)


def test_a_conversation_with_markup_shows_as_text_and_runs_nothing(
    demo: Demo, watched: Callable[[], Watched]
) -> None:
    view = watched()
    page = view.page
    page.goto(f"{demo.base_url}/requests/{demo.xss_request_id}")
    user = page.locator(".message.role-user pre.text")
    expect(user).to_have_text(re.compile(re.escape("<script>window.__wlm_xss = 1</script>")))
    expect(page.locator(".message.response pre.text")).not_to_be_empty()
    assert page.locator(".conversation script, .conversation img").count() == 0
    assert page.evaluate("window.__wlm_xss") is None
    assert_clean(view)


def test_a_tool_call_conversation_lists_the_calls(
    demo: Demo, watched: Callable[[], Watched]
) -> None:
    view = watched()
    page = view.page
    page.goto(demo.base_url + "/requests?model=openai%2Ftools")
    page.locator("table.requests tbody tr a").first.click()
    expect(page.locator("h1")).to_contain_text("Request")
    expect(page.locator(".response .tool-call")).to_have_count(2)
    assert_clean(view)


def test_with_an_admin_key_pages_need_a_login(
    admin_server: Any, watched: Callable[[], Watched]
) -> None:
    view = watched()
    page = view.page
    page.goto(admin_server.base_url + "/analytics?range=7d")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    view.screenshot("login")
    page.fill("#key", "not-the-key")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_have_text("That is not the admin key.")
    expect(page).to_have_url(re.compile("/login"))
    page.goto(admin_server.base_url + "/settings")
    expect(page).to_have_url(re.compile("/login"))

    page.fill("#key", ADMIN_KEY)
    page.click("button[type=submit]")
    expect(page).to_have_url(admin_server.base_url + "/settings")
    expect(page.locator("h1")).to_have_text("Settings")
    assert ADMIN_KEY not in page.content()
    cookie = next(c for c in page.context.cookies() if c["name"] == "wlm_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # Logging out ends the session.
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile("/login"))
    page.goto(admin_server.base_url + "/")
    expect(page).to_have_url(re.compile("/login"))
    assert view.foreign_urls() == []
