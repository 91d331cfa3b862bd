"""Real headless Chromium (Debian's) against a real ``wlm serve`` with fake providers.

One demo world per module: fake OpenAI, Anthropic and OpenRouter servers, a tiny local GGUF, and a
known mix of requests sent through the gateway before any page is opened. Every page a
test opens is watched: console errors, uncaught exceptions, dialogs, and every URL
the browser asked for (all must be on 127.0.0.1: the pages work with the cable pulled).
Screenshots go to tests/artifacts/screenshots/; with WLM_UPDATE_SCREENSHOTS=1 they are
also copied to docs/screenshots/.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import ROOT, WlmServer
from tests.fakes import FakeUpstream
from wlm.local.testmodel import write_tiny_gguf

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "tests" / "artifacts" / "screenshots"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
LOCAL_MODEL = "tiny-chat"
ADMIN_KEY = "admin-key-for-the-browser-tests-0123456789"
# Text a client sent that must show as text and never run.
XSS_PROMPT = '<script>window.__wlm_xss = 1</script><img src="x" onerror="window.__wlm_xss = 2">'
XSS_MODEL = "<img src=x onerror=window.__wlm_xss=3>"

# The known mix of requests (model, extra body): 4 ok + 1 error for openai, 2 ok for anthropic.
KNOWN_MIX: list[tuple[str, dict[str, Any]]] = [
    ("gpt-4o-mini", {}),
    ("gpt-4o-mini", {"stream": True}),
    ("openai/tools", {}),
    ("openai/error:400", {}),
    ("claude-haiku-4-5-20251001", {}),
    ("claude-haiku-4-5-20251001", {"stream": True}),
]
EXPECTED = {"openai": {"requests": 5, "errors": 1}, "anthropic": {"requests": 2, "errors": 0}}


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)  # polling a condition over HTTP, not synchronising on time


class Demo:
    """The running world: the wlm server, its fakes, and the ids of notable requests."""

    def __init__(self, server: WlmServer, fakes: dict[str, FakeUpstream]) -> None:
        self.server = server
        self.fakes = fakes
        self.base_url = server.base_url
        self.http = httpx.Client(base_url=server.base_url, timeout=30)
        self.xss_request_id = ""

    def chat(self, model: str, content: str = "Say hello.", **extra: Any) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
        if extra.get("stream"):
            with self.http.stream("POST", "/v1/chat/completions", json=body) as response:
                response.read()
                return response
        return self.http.post("/v1/chat/completions", json=body)

    def recorded(self) -> list[dict[str, Any]]:
        return self.http.get("/requests.json").json()["requests"]


def _start_fakes() -> dict[str, FakeUpstream]:
    openai = FakeUpstream("openai")
    openai.models = ["gpt-4o-mini", "gpt-4o", XSS_MODEL]
    return {
        "openai": openai.start(),
        "anthropic": FakeUpstream("anthropic").start(),
        "openrouter": FakeUpstream("openrouter").start(),
    }


def _env(fakes: dict[str, FakeUpstream]) -> dict[str, str]:
    return {
        "OPENAI_API_KEY": fakes["openai"].api_key or "",
        "OPENAI_BASE_URL": fakes["openai"].base_url,
        "ANTHROPIC_API_KEY": fakes["anthropic"].api_key or "",
        "ANTHROPIC_BASE_URL": fakes["anthropic"].base_url,
        "OPENROUTER_API_KEY": fakes["openrouter"].api_key or "",
        "OPENROUTER_BASE_URL": fakes["openrouter"].base_url,
        "WLM_ROUTES": "gpt-*=openai,claude-*=anthropic",
        "WLM_LOCAL_THREADS": "1",
        "WLM_LOCAL_CTX_SIZE": "512",
        "WLM_LOCAL_PARALLEL": "1",
    }


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium (Debian's /usr/bin/chromium) driven by Playwright."""
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (./dev test installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def demo(chromium: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """wlm with fake OpenAI, Anthropic and OpenRouter, a tiny local model, the known mix sent."""
    fakes = _start_fakes()
    workdir = tmp_path_factory.mktemp("wlm-demo")
    write_tiny_gguf(workdir / "models" / f"{LOCAL_MODEL}.gguf")
    server = WlmServer(_env(fakes), workdir).start()
    world = Demo(server, fakes)
    try:
        for model, extra in KNOWN_MIX:
            world.chat(model, **extra)
        reply = world.chat("gpt-4o-mini", XSS_PROMPT)
        world.xss_request_id = reply.headers["x-request-id"]
        total = len(KNOWN_MIX) + 1
        wait_until(lambda: len(world.recorded()) >= total, 15, "the requests in the telemetry")
        yield world
    finally:
        world.http.close()
        server.stop()
        for fake in fakes.values():
            fake.stop()


@pytest.fixture(scope="module")
def admin_server(chromium: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WlmServer]:
    """wlm with WLM_ADMIN_KEY set (and no provider): pages need a login."""
    workdir = tmp_path_factory.mktemp("wlm-admin")
    server = WlmServer({"WLM_ADMIN_KEY": ADMIN_KEY}, workdir).start()
    yield server
    server.stop()


class Watched:
    """A page whose console errors, dialogs and requested URLs are recorded."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.urls: list[str] = []
        self.console_errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("request", lambda request: self.urls.append(request.url))
        page.on(
            "console",
            lambda message: message.type == "error" and self.console_errors.append(message.text),
        )
        page.on("pageerror", lambda error: self.console_errors.append(f"uncaught: {error}"))

        def dialog(d: Any) -> None:
            self.dialogs.append(d.message)
            d.dismiss()

        page.on("dialog", dialog)

    def foreign_urls(self) -> list[str]:
        """Every URL the page requested that is not on 127.0.0.1 (data: URLs aside)."""
        return [
            url
            for url in self.urls
            if urlsplit(url).scheme != "data" and urlsplit(url).hostname != "127.0.0.1"
        ]

    def screenshot(self, name: str) -> Path:
        """Save a full-page screenshot as tests/artifacts/screenshots/<name>.png."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        if os.environ.get("WLM_UPDATE_SCREENSHOTS") == "1":
            DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, DOCS_SCREENSHOTS / path.name)
        return path


@pytest.fixture
def watched(chromium: Any) -> Iterator[Callable[[], Watched]]:
    """Open watched pages in a fresh browser context (no cookies shared between tests)."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})  # the screenshots
    context.set_default_timeout(15_000)

    def open_page() -> Watched:
        return Watched(context.new_page())

    yield open_page
    context.close()
