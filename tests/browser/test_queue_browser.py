"""/instances in a real browser: each engine's running and waiting requests, live, and
the Cancel button that ends one (its client gets the error)."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import ARTIFACTS
from tests.conftest import WlmServer
from wlm.local.testmodel import write_tiny_gguf

pytestmark = pytest.mark.browser

ENV = {"WLM_LOCAL_THREADS": "1", "WLM_LOCAL_CTX_SIZE": "512", "WLM_LOCAL_PARALLEL": "1"}
BODY = {"model": "tiny-q", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def until_queued(http: httpx.Client, request_id: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while request_id not in {e["request_id"] for e in http.get("/api/queue").json()["data"]}:
        assert time.monotonic() < deadline, f"{request_id} never queued"
        time.sleep(0.01)  # polling the server's state, not synchronising the test


def test_the_instances_page_shows_the_queue_live_and_cancels_a_request(
    chromium: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    write_tiny_gguf(tmp_path / "models" / "tiny-q.gguf")
    server = WlmServer(ENV, tmp_path).start()
    http = httpx.Client(base_url=server.base_url, timeout=60)
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("dialog", lambda dialog: dialog.accept())  # "Cancel this request?"
    pid = None
    try:
        assert http.post("/api/models/tiny-q/load").status_code == 200
        pid = http.get("/api/instances").json()["data"][0]["pid"]
        page.goto(server.base_url + "/instances")
        expect(page.locator("#queue-empty")).to_be_visible()

        os.kill(pid, signal.SIGSTOP)  # the first request holds the slot; the next waits

        def send(request_id: str, priority: str) -> httpx.Response:
            headers = {"x-request-id": request_id, "x-wlm-priority": priority}
            with httpx.Client(base_url=server.base_url, timeout=60) as client:
                return client.post("/v1/chat/completions", json=BODY, headers=headers)

        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(send, "holds-the-slot", "normal")
            until_queued(http, "holds-the-slot")  # it has the slot before the next comes
            waiting = pool.submit(send, "waits-its-turn", "batch")
            # The table refreshes itself every 2 s: both requests appear without a reload.
            table = page.locator("table.queue[data-model='tiny-q']")
            expect(table.locator("caption")).to_contain_text("1 running, 1 waiting")
            row = table.locator("tr[data-state='waiting']")
            expect(row).to_have_attribute("data-priority", "batch")
            expect(row).to_contain_text("waits-its-turn")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "instances-queue.png"), full_page=True)

            row.get_by_role("button", name="Cancel").click()
            expect(table.locator("caption")).to_contain_text("1 running, 0 waiting")
            cancelled = waiting.result(timeout=30)
            assert cancelled.status_code == 503
            assert cancelled.json()["error"]["type"] == "request_cancelled"

            os.kill(pid, signal.SIGCONT)
            assert running.result(timeout=30).status_code == 200
        expect(page.locator("#queue-empty")).to_be_visible()
        assert errors == []
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        context.close()
        http.close()
        server.stop()
