"""The Models page downloads a model from the Hub, in real Chromium, against a fake Hub.

Search, pick a quantization (with its size and the memory hint), Download, watch the
progress bar run to done, see the model appear in the local list and load it: no reload,
no restart. The Hub is :class:`tests.fakes.hub.FakeHub` on 127.0.0.1 (``HF_ENDPOINT``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Watched
from tests.conftest import WlmServer
from tests.fakes.hub import FakeHub
from wlm.local.testmodel import write_tiny_gguf

pytestmark = [pytest.mark.browser, pytest.mark.local]

REPO = "wlm-test/Tiny-GGUF"
MODEL = f"{REPO}/Tiny-Q4_K_M"
HF_TOKEN = "hf_browserTestToken0123456789abcdef"


@pytest.fixture
def world(chromium: Any, tmp_path: Path) -> Iterator[tuple[WlmServer, FakeHub]]:
    source = tmp_path / "src"
    hub = FakeHub().start()
    hub.add_repo(
        REPO,
        {
            "Tiny-Q4_K_M.gguf": write_tiny_gguf(source / "Tiny-Q4_K_M.gguf", seed=3),
            "Tiny-Q8_0.gguf": write_tiny_gguf(source / "Tiny-Q8_0.gguf", seed=4),
        },
        downloads=4200,
        likes=12,
    )
    hub.add_repo(
        "wlm-test/Tiny-Chat-GGUF",
        {"tiny-chat-f16.gguf": source / "Tiny-Q4_K_M.gguf"},
        downloads=310,
    )
    write_tiny_gguf(tmp_path / "models" / "tiny-chat.gguf")
    env = {
        "HF_ENDPOINT": hub.base_url,
        "HF_TOKEN": HF_TOKEN,
        "WLM_LOCAL_RESCAN_S": "0",  # only the pull's own rescan can list the new model
        "WLM_LOCAL_THREADS": "1",
        "WLM_LOCAL_CTX_SIZE": "512",
        "WLM_LOCAL_PARALLEL": "1",
    }
    server = WlmServer(env, tmp_path).start()
    try:
        yield server, hub
    finally:
        server.stop()
        hub.stop()


def test_search_pick_a_quant_download_and_load_it(
    chromium: Any, world: tuple[WlmServer, FakeHub]
) -> None:
    from playwright.sync_api import expect

    server, hub = world
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(20_000)
    view = Watched(context.new_page())
    page = view.page
    try:
        page.goto(server.base_url + "/models")
        page.fill("#hub-q", "tiny")
        page.press("#hub-q", "Enter")
        repo = page.locator(f'#hub-results tr.hub-repo[data-repo="{REPO}"]')
        expect(repo).to_be_visible()
        hits = page.locator("#hub-results tr.hub-repo")
        expect(hits).to_have_count(2)
        expect(hits.first).to_have_attribute("data-repo", REPO)  # most downloaded first

        repo.locator("button.quants").click()
        quant = page.locator('#hub-files tr.hub-quant[data-quant="Q4_K_M"]')
        expect(quant).to_contain_text("640.2 KiB")
        expect(quant.locator(".fit")).to_have_text("fits in free memory")
        expect(page.locator("#hub-files tr.hub-quant")).to_have_count(2)

        hub.throttle_bps = 250_000  # about 2.6 s: long enough to watch the bar move
        quant.locator("button.download").click()
        pull = page.locator("#hub-pulls tr.pull").first
        expect(pull).to_have_attribute("data-state", "downloading")
        bar = pull.locator("progress")
        page.wait_for_function(
            "() => { const p = document.querySelector('#hub-pulls tr.pull progress');"
            " return p && p.value > 0 && p.value < 100; }"
        )
        expect(pull.locator(".pull-figures")).to_contain_text("/s")
        expect(pull.locator("button.cancel")).to_be_visible()

        expect(pull).to_have_attribute("data-state", "done", timeout=30_000)
        expect(bar).to_have_attribute("value", "100.0")
        row = page.locator(f'#models-table tr.model-row[data-model="{MODEL}"]')
        expect(row).to_be_visible()  # the table reloaded itself when the download finished
        expect(row).to_have_attribute("data-state", "stopped")
        row.locator("button.load").click()
        expect(page.locator(f'#models-table tr.model-row[data-model="{MODEL}"]')).to_have_attribute(
            "data-state", "ready", timeout=30_000
        )
        view.screenshot("models-hub")

        assert HF_TOKEN not in page.content()
        assert view.console_errors == []
        assert view.dialogs == []
        assert view.foreign_urls() == []
    finally:
        context.close()
    assert HF_TOKEN not in server.log()
