"""The charts in a real browser: with data, with none, with one point, and the live dashboard.

Three worlds: the demo (fake providers, a tiny local model, the known mix sent), a
fresh server with an empty telemetry file, and a fresh server that has answered one
request. Every page is watched for console errors and foreign URLs; screenshots
at 1400x1000 go to tests/artifacts/screenshots/ (and docs/screenshots/ with
WLM_UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.browser.conftest import LOCAL_MODEL, Demo, Watched, wait_until
from tests.conftest import WlmServer
from tests.fakes import FakeUpstream

pytestmark = pytest.mark.browser

expect: Any = None  # playwright's expect, imported once chromium is known to be there

# Every chart of /analytics but the per-series request charts (one per provider).
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
LIVE_CHARTS = ("requests per second", "in flight", "errors")


@pytest.fixture(autouse=True)
def _expect(chromium: Any) -> None:
    global expect
    from playwright.sync_api import expect as playwright_expect

    expect = playwright_expect


@pytest.fixture(scope="module")
def empty_server(chromium: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WlmServer]:
    """A fresh install: no provider, no request, an empty telemetry file."""
    server = WlmServer({}, tmp_path_factory.mktemp("wlm-empty")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def one_request_server(
    chromium: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WlmServer]:
    """A fresh install that has answered exactly one request (a fake OpenAI)."""
    openai = FakeUpstream("openai").start()
    env = {
        "OPENAI_API_KEY": openai.api_key or "",
        "OPENAI_BASE_URL": openai.base_url,
        "WLM_ROUTES": "gpt-*=openai",
    }
    server = WlmServer(env, tmp_path_factory.mktemp("wlm-one")).start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
            assert http.post("/v1/chat/completions", json=body).status_code == 200
            wait_until(lambda: http.get("/requests.json").json()["requests"], 15, "the one request")
        yield server
    finally:
        server.stop()
        openai.stop()


def assert_clean(view: Watched) -> None:
    assert view.console_errors == []
    assert view.dialogs == []
    assert view.foreign_urls() == []


def chart(page: Any, name: str) -> Any:
    return page.locator(f'svg.chart[data-chart="{name}"]')


def assert_drawn(page: Any, name: str) -> None:
    """The chart is on screen, has marks, and no empty-state message."""
    svg = chart(page, name)
    expect(svg).to_be_visible()
    expect(svg).not_to_have_attribute("data-empty", "true")
    assert int(svg.get_attribute("data-marks")) > 0, name
    box = svg.bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 80, name


def errors_drawn(page: Any) -> int:
    """The errors the live chart shows: the sum of its columns' values (their tooltips)."""
    titles = chart(page, "errors").locator("rect title").all_text_contents()
    return sum(int(title.split(": ")[1].split(",")[0]) for title in titles)


def test_every_chart_draws_the_demo_traffic_with_its_numbers_a_click_away(
    demo: Demo, watched: Callable[[], Watched]
) -> None:
    # A local model answers too, so the scatter has a free one beside the cloud ones.
    assert demo.chat(LOCAL_MODEL, "Hello, local model.", max_tokens=8).status_code == 200
    wait_until(
        lambda: any(r["provider"] == "local" for r in demo.recorded()), 15, "the local request"
    )
    view = watched()
    page = view.page
    page.goto(demo.base_url + "/analytics")
    for name in CHARTS:
        assert_drawn(page, name)
    for provider in ("openai", "anthropic"):
        assert_drawn(page, f"requests {provider}")
    # The latency chart has a p50 and a p95 line per provider, with round ticks in ms or s.
    latency = chart(page, "latency")
    expect(latency.locator('g.series[data-series="openai"]')).to_have_count(2)
    ticks = latency.locator("text.tick").all_text_contents()
    assert any(t.endswith(" ms") or t.endswith(" s") for t in ticks), ticks
    # The openai requests chart shows the one 400 among its successes.
    requests = chart(page, "requests openai")
    expect(requests.locator("rect.outcome-4xx")).to_have_count(1)
    # Local models sit at zero cost in the scatter: on the y axis, left of the cloud ones.
    scatter = chart(page, "speed against cost")
    local_x = float(scatter.locator("g.point.chart-local circle").get_attribute("cx"))
    cloud_x = float(scatter.locator("g.point.chart-anthropic circle").get_attribute("cx"))
    assert local_x < cloud_x
    # The numbers open under the chart.
    figure = page.locator("#figure-speed-cost")
    figure.locator("details.numbers summary").click()
    expect(figure.locator("table.numbers")).to_be_visible()
    expect(figure.locator("table.numbers")).to_contain_text("gpt-4o-mini")
    # The per-endpoint table (raw rows, not the rollups) follows the page on its own.
    expect(page.locator("table.by-endpoint tr[data-endpoint='chat/completions']")).to_be_visible()
    view.screenshot("analytics")

    # Per model: the same charts, a series per model.
    page.get_by_role("link", name="per model").click()
    expect(page.locator("nav.ranges a.active[data-by='model']")).to_be_visible()
    expect(chart(page, "latency").locator('g.series[data-series="gpt-4o-mini"]')).to_have_count(2)
    assert "by=model" in page.url
    page.get_by_role("link", name="1h").click()
    expect(page.locator("nav.ranges a.active").first).to_have_text("1h")
    assert_drawn(page, "latency")
    assert_clean(view)


def test_the_dashboard_shows_the_last_minutes_live(
    demo: Demo, watched: Callable[[], Watched]
) -> None:
    view = watched()
    page = view.page
    page.goto(demo.base_url + "/")
    for name in LIVE_CHARTS:
        expect(chart(page, name)).to_be_visible()
    # The demo's requests came in the last few minutes: the rate chart has them.
    assert_drawn(page, "requests per second")
    expect(page.locator("#in-flight")).to_have_text("0")
    # A failure now shows in the live charts without a reload (htmx polls every 2 s).
    before = errors_drawn(page)
    assert before >= 1  # the known mix has one
    demo.chat("openai/error:400", "one failing")
    wait_until(lambda: errors_drawn(page) == before + 1, 10, "the new error in the chart")
    view.screenshot("dashboard")
    assert_clean(view)


def test_a_fresh_install_says_there_is_nothing_to_draw(
    empty_server: WlmServer, watched: Callable[[], Watched]
) -> None:
    view = watched()
    page = view.page
    page.goto(empty_server.base_url + "/analytics")
    for name in (*CHARTS, "requests"):
        svg = chart(page, name)
        expect(svg).to_be_visible()
        expect(svg).to_have_attribute("data-empty", "true")
        expect(svg.locator("text.empty")).to_be_visible()
    expect(chart(page, "latency").locator("text.empty")).to_have_text("No requests in this window")
    view.screenshot("analytics-empty")
    page.goto(empty_server.base_url + "/")
    expect(chart(page, "requests per second").locator("text.empty")).to_have_text(
        "No requests in the last 5 minutes"
    )
    assert_clean(view)


def test_one_request_is_one_visible_point_inside_each_chart(
    one_request_server: WlmServer, watched: Callable[[], Watched]
) -> None:
    view = watched()
    page = view.page
    page.goto(one_request_server.base_url + "/analytics")
    for name in (*CHARTS, "requests openai"):
        assert_drawn(page, name)
    svg = chart(page, "latency").bounding_box()
    dot = chart(page, "latency").locator("circle").first.bounding_box()
    assert svg is not None and dot is not None
    assert dot["width"] >= 7  # a visible mark, not a pixel
    # Inside the plot, away from both edges (a fresh install used to show it on the edge).
    assert svg["x"] + 0.1 * svg["width"] < dot["x"] < svg["x"] + svg["width"] * 0.99 - dot["width"]
    assert svg["y"] < dot["y"] < svg["y"] + svg["height"] - dot["height"]
    expect(chart(page, "latency").locator("text.value").first).to_be_visible()
    view.screenshot("analytics-one-point")
    assert_clean(view)
