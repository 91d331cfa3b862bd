"""The playground in a real browser: replies stream in chunk by chunk, a local and a
cloud model compare side by side with their figures, and a logged request replays.

Its own world: wlm with WLM_ADMIN_KEY and WLM_API_KEYS set (the page logs in and its
requests ride the admin session, no key in the page), content logging on, fake OpenAI
and Anthropic servers and the tiny local GGUF.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.browser.conftest import LOCAL_MODEL, Watched, wait_until
from tests.conftest import WlmServer
from tests.fakes import FakeUpstream
from wlm.local.testmodel import write_tiny_gguf

pytestmark = pytest.mark.browser

ADMIN_KEY = "admin-key-for-the-playground-browser-0123456789"
CLIENT_KEY = "client-key-for-the-playground-browser-0123456789"
PACED = "paced:300:6"  # the fake streams six chunks, 300 ms apart
PACED_TEXT = "".join(f"chunk{i} " for i in range(6))
CLOUD = "gpt-4o-mini"
REPLAY_ON = "claude-haiku-4-5-20251001"

expect: Any = None  # playwright's expect, imported once chromium is known to be there


@pytest.fixture(autouse=True)
def _expect(chromium: Any) -> None:
    global expect
    from playwright.sync_api import expect as playwright_expect

    expect = playwright_expect


class World:
    def __init__(self, server: WlmServer, fakes: dict[str, FakeUpstream]) -> None:
        self.server = server
        self.fakes = fakes
        self.base_url = server.base_url
        self.admin = httpx.Client(
            base_url=server.base_url, timeout=30, headers={"authorization": f"Bearer {ADMIN_KEY}"}
        )
        self.logged_id = ""

    def record(self, request_id: str) -> dict[str, Any] | None:
        response = self.admin.get(f"/requests/{request_id}.json")
        return response.json()["record"] if response.status_code == 200 else None

    def secrets(self) -> list[str]:
        return [ADMIN_KEY, CLIENT_KEY, *(f.api_key or "" for f in self.fakes.values())]


@pytest.fixture(scope="module")
def world(chromium: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    openai = FakeUpstream("openai")
    openai.models = [CLOUD, PACED]
    fakes = {"openai": openai.start(), "anthropic": FakeUpstream("anthropic").start()}
    workdir = tmp_path_factory.mktemp("wlm-playground")
    write_tiny_gguf(workdir / "models" / f"{LOCAL_MODEL}.gguf")
    env = {
        "OPENAI_API_KEY": fakes["openai"].api_key or "",
        "OPENAI_BASE_URL": fakes["openai"].base_url,
        "ANTHROPIC_API_KEY": fakes["anthropic"].api_key or "",
        "ANTHROPIC_BASE_URL": fakes["anthropic"].base_url,
        "WLM_ROUTES": "gpt-*=openai,claude-*=anthropic",
        "WLM_ADMIN_KEY": ADMIN_KEY,
        "WLM_API_KEYS": f"app:{CLIENT_KEY}",
        "WLM_LOG_CONTENT": "true",  # replay needs the logged messages
        "WLM_LOCAL_THREADS": "1",
        "WLM_LOCAL_CTX_SIZE": "512",
        "WLM_LOCAL_PARALLEL": "1",
    }
    server = WlmServer(env, workdir).start()
    state = World(server, fakes)
    try:
        # A client's request to replay later: a system prompt, two turns, its settings.
        logged = httpx.post(
            f"{server.base_url}/v1/chat/completions",
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
            json={
                "model": CLOUD,
                "temperature": 0.2,
                "max_tokens": 60,
                "messages": [
                    {"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "Name a colour."},
                    {"role": "assistant", "content": "Blue."},
                    {"role": "user", "content": "Another one?"},
                ],
            },
            timeout=30,
        )
        assert logged.status_code == 200, logged.text
        state.logged_id = logged.headers["x-request-id"]
        wait_until(lambda: state.record(state.logged_id), 15, "the logged request's row")
        yield state
    finally:
        state.admin.close()
        server.stop()
        for fake in fakes.values():
            fake.stop()


@pytest.fixture
def browser_page(chromium: Any) -> Iterator[Callable[[], Watched]]:
    """Watched pages at 1400x1000 (the screenshots' size), in a fresh context per test."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(20_000)
    yield lambda: Watched(context.new_page())
    context.close()


def log_in(view: Watched, world: World, target: str) -> None:
    page = view.page
    page.goto(f"{world.base_url}/login?next={target}")
    page.fill("#key", ADMIN_KEY)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(re.escape(target.split("?")[0])))
    expect(page.locator("#pg-form[data-ready='1'], .replay").first).to_be_visible()


def assert_clean(view: Watched, world: World) -> None:
    assert view.console_errors == []
    assert view.dialogs == []
    assert view.foreign_urls() == []
    content = view.page.content()
    assert not [s for s in world.secrets() if s and s in content]


# Records, in the page, every state a column goes through: its phase and its reply text.
WATCH_COLUMNS = """
() => {
  window.__pg = [];
  const seen = (column) => window.__pg.push({
    model: column.dataset.model || '', phase: column.dataset.phase || '',
    text: (column.querySelector('.pg-reply') || {}).textContent || '', at: performance.now(),
  });
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      const node = m.target.nodeType === 1 ? m.target : m.target.parentElement;
      const column = node && node.closest('.pg-column');
      if (column) seen(column);
    }
  }).observe(document.getElementById('pg-columns'),
             {subtree: true, childList: true, characterData: true, attributes: true,
              attributeFilter: ['data-phase']});
}
"""


def column(view: Watched, model: str) -> Any:
    return view.page.locator(f".pg-column:not(.pg-logged)[data-model='{model}']")


def figures_of(col: Any) -> dict[str, str]:
    return {
        name: col.locator(f".pg-{name}").inner_text() for name in ("ttft", "tps", "tokens", "cost")
    }


def assert_figures_match_telemetry(view: Watched, world: World, model: str) -> dict[str, Any]:
    """The column shows its telemetry row's figures (and the row is the playground's)."""
    col = column(view, model)
    expect(col).to_have_attribute("data-figures", "telemetry", timeout=30_000)
    request_id = col.get_attribute("data-request-id")
    assert request_id
    record = world.record(request_id)
    assert record is not None
    assert record["client"] == "playground"
    shown = figures_of(col)
    assert all(shown[name] not in ("", "–") for name in ("ttft", "tps", "tokens")), shown
    assert shown["tokens"] == f"{record['completion_tokens']:,}"
    if record["cost_usd"] is None:  # a model no price list knows: unknown, not 0
        assert shown["cost"] == "–" and col.get_attribute("data-cost") == ""
    else:
        assert shown["cost"] == f"${record['cost_usd']:.6f}"
        assert float(col.get_attribute("data-cost") or "nan") == pytest.approx(record["cost_usd"])
    return record


def test_a_reply_streams_into_the_page_chunk_by_chunk(
    world: World, browser_page: Callable[[], Watched]
) -> None:
    view = browser_page()
    page = view.page
    log_in(view, world, "/playground")
    expect(page.locator("h1")).to_have_text("Playground")
    page.select_option("#pg-models select", f"openai/{PACED}")
    page.fill("#pg-system", "Count for me.")
    page.fill("#pg-messages textarea", "Count in chunks, please.")
    page.evaluate(WATCH_COLUMNS)
    page.click("#pg-send")

    col = column(view, f"openai/{PACED}")
    expect(col).to_have_attribute("data-phase", "done", timeout=30_000)
    expect(col.locator(".pg-reply")).to_have_text(PACED_TEXT)
    states = page.evaluate("window.__pg")
    partial = [s for s in states if s["phase"] == "streaming" and s["text"] != PACED_TEXT]
    distinct = list(dict.fromkeys(s["text"] for s in partial if s["text"]))
    # The reply grew in the page piece by piece, over the time the fake paced them.
    assert len(distinct) >= 2, states
    assert all(PACED_TEXT.startswith(text) for text in distinct)
    first_at = next(s["at"] for s in partial if s["text"])
    done_at = next(s["at"] for s in states if s["phase"] == "done")
    assert done_at - first_at > 600  # at least a few of the 300 ms gaps, seen as they came

    record = assert_figures_match_telemetry(view, world, f"openai/{PACED}")
    assert record["status"] == "ok" and record["stream"] is True
    expect(col.locator(".pg-request-link")).to_have_attribute("href", f"/requests/{record['id']}")
    view.screenshot("playground")
    # Carry on: the reply becomes the assistant's turn and a new user message opens.
    col.get_by_role("button", name="Continue with this reply").click()
    messages = page.locator("#pg-messages .pg-message")
    expect(messages).to_have_count(3)
    expect(messages.nth(1).locator("select")).to_have_value("assistant")
    expect(messages.nth(1).locator("textarea")).to_have_value(PACED_TEXT)
    expect(messages.nth(2).locator("textarea")).to_be_focused()
    assert_clean(view, world)


def test_stop_cancels_a_stream_and_the_row_says_cancelled(
    world: World, browser_page: Callable[[], Watched]
) -> None:
    view = browser_page()
    page = view.page
    log_in(view, world, "/playground")
    page.select_option("#pg-models select", f"openai/{PACED}")
    page.fill("#pg-messages textarea", "Count slowly.")
    page.click("#pg-send")
    col = column(view, f"openai/{PACED}")
    expect(col.locator(".pg-reply")).to_contain_text("chunk0")
    page.click("#pg-stop")
    expect(col).to_have_attribute("data-phase", "stopped")
    expect(page.locator("#pg-send")).to_be_enabled()
    request_id = col.get_attribute("data-request-id")
    assert request_id
    record = wait_until(lambda: world.record(request_id), 15, "the cancelled request's row")
    assert record["status"] == "cancelled" and record["client"] == "playground"
    assert col.locator(".pg-reply").inner_text() != PACED_TEXT  # cut short
    assert_clean(view, world)


def test_a_local_and_a_cloud_model_compare_side_by_side(
    world: World, browser_page: Callable[[], Watched]
) -> None:
    view = browser_page()
    page = view.page
    log_in(view, world, "/playground")
    selects = page.locator("#pg-models select")
    selects.first.select_option(LOCAL_MODEL)
    page.click("#pg-add-model")
    expect(selects).to_have_count(2)
    selects.nth(1).select_option(CLOUD)
    page.fill("#pg-messages textarea", "Say something short.")
    page.fill("#pg-max-tokens", "24")
    page.evaluate(WATCH_COLUMNS)
    page.click("#pg-send")

    local, cloud = column(view, LOCAL_MODEL), column(view, CLOUD)
    expect(page.locator(".pg-column")).to_have_count(2)
    for col in (local, cloud):
        expect(col).to_have_attribute("data-phase", "done", timeout=90_000)
        expect(col.locator(".pg-reply")).not_to_be_empty()
    # The local engine had to start first, and its column said so while it did.
    phases = [s["phase"] for s in page.evaluate("window.__pg") if s["model"] == LOCAL_MODEL]
    assert "loading" in phases, phases
    assert phases.index("loading") < phases.index("streaming")

    local_record = assert_figures_match_telemetry(view, world, LOCAL_MODEL)
    cloud_record = assert_figures_match_telemetry(view, world, CLOUD)
    assert local_record["provider"] == "local" and local_record["cost_usd"] == 0
    assert cloud_record["provider"] == "openai" and cloud_record["cost_usd"] > 0
    expect(local.locator(".badge")).to_have_text("local")
    expect(cloud.locator(".badge")).to_have_text("openai")
    # Side by side: the two columns share a row.
    local_box, cloud_box = local.bounding_box(), cloud.bounding_box()
    assert local_box and cloud_box and abs(local_box["y"] - cloud_box["y"]) < 2
    assert cloud_box["x"] > local_box["x"] + local_box["width"] - 1
    view.screenshot("playground-compare")
    assert_clean(view, world)


def test_a_logged_request_opens_in_the_playground_and_replays_on_another_model(
    world: World, browser_page: Callable[[], Watched]
) -> None:
    view = browser_page()
    page = view.page
    log_in(view, world, f"/requests/{world.logged_id}")
    page.get_by_role("link", name="Open in playground").click()
    expect(page).to_have_url(re.compile(r"/playground\?from="))
    expect(page.locator("#pg-system")).to_have_value("You are terse.")
    messages = page.locator("#pg-messages .pg-message")
    expect(messages).to_have_count(3)
    expect(messages.nth(0).locator("textarea")).to_have_value("Name a colour.")
    expect(messages.nth(1).locator("select")).to_have_value("assistant")
    expect(messages.nth(1).locator("textarea")).to_have_value("Blue.")
    expect(messages.nth(2).locator("textarea")).to_have_value("Another one?")
    expect(page.locator("#pg-temperature")).to_have_value("0.2")
    expect(page.locator("#pg-max-tokens")).to_have_value("60")
    expect(page.locator("#pg-models select")).to_have_value(CLOUD)

    page.go_back()
    page.select_option("#replay-model", REPLAY_ON)
    page.get_by_role("button", name="Replay and compare").click()
    logged = page.locator(".pg-column.pg-logged")
    expect(logged).to_be_visible()
    expect(logged.locator(".pg-reply")).to_contain_text("fake")
    expect(logged.locator(".pg-cost")).not_to_have_text("–")
    replay = column(view, REPLAY_ON)
    expect(replay).to_have_attribute("data-phase", "done", timeout=30_000)
    expect(replay.locator(".pg-reply")).not_to_be_empty()
    record = assert_figures_match_telemetry(view, world, REPLAY_ON)
    assert record["provider"] == "anthropic"
    # The replay sent the logged conversation and settings to the other model.
    sent = world.fakes["anthropic"].requests[-1].json
    assert sent["system"] == "You are terse."
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["temperature"] == 0.2 and sent["max_tokens"] == 60
    view.screenshot("playground-replay")
    assert_clean(view, world)


def test_a_replay_link_from_another_site_loads_but_waits_for_a_click(
    world: World, browser_page: Callable[[], Watched]
) -> None:
    view = browser_page()
    page = view.page
    link = f"{world.base_url}/playground?from={world.logged_id}&replay={REPLAY_ON}"
    # Another site's page (about:blank's opaque origin) links to a replay; the admin, not
    # logged in yet, follows it, goes through /login and lands on the playground.
    page.set_content(f'<a id="elsewhere" href="{html.escape(link)}">a link</a>')
    sent = len(world.fakes["anthropic"].requests)
    page.click("#elsewhere")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.fill("#key", ADMIN_KEY)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/playground\?from="))
    expect(page.locator("#pg-form[data-ready='1']")).to_be_visible()
    # Loaded (the logged answer and its conversation) but nothing sent until a click.
    expect(page.locator("#pg-replay-confirm")).to_be_visible()
    expect(page.locator(".pg-column.pg-logged")).to_be_visible()
    expect(page.locator("#pg-messages .pg-message")).to_have_count(3)
    expect(page.locator("#pg-send")).to_have_text("Replay")
    page.wait_for_timeout(1000)
    expect(page.locator(".pg-column:not(.pg-logged)")).to_have_count(0)
    assert len(world.fakes["anthropic"].requests) == sent
    page.click("#pg-send")
    expect(column(view, REPLAY_ON)).to_have_attribute("data-phase", "done", timeout=30_000)
    assert len(world.fakes["anthropic"].requests) == sent + 1
    assert_clean(view, world)
