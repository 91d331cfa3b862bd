"""A provider base URL that points at the wrong thing: a redirect (http:// for an https://
server) or a web page answering 200. The client gets a 502 that says what to check,
in OpenAI's error shape, whether it streams or not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import WlmServer
from tests.e2e.canned_upstream import canned_upstream

pytestmark = pytest.mark.e2e

KEY = "sk-misconfigured-key-0123456789"


def _wrong(body: dict) -> tuple[int, dict[str, str], bytes]:
    headers = {"content-type": "text/html"}
    if body["model"] == "redirect":
        headers["location"] = f"https://example.invalid/v1?key={KEY}"
        return 301, headers, b"<html>Moved Permanently</html>"
    return 200, headers, b"<html><body>Welcome to nginx!</body></html>"


@pytest.fixture
def wrong_server() -> Iterator[str]:
    with canned_upstream(_wrong) as base_url:
        yield base_url


@pytest.fixture
def wlm(wrong_server: str, wlm_factory: Callable[..., WlmServer], tmp_path: Path) -> WlmServer:
    return wlm_factory(
        {"WLM_PROVIDERS": "lan", "LAN_BASE_URL": wrong_server, "LAN_API_KEY": KEY}, tmp_path
    )


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_redirect_is_a_502_naming_the_base_url_variable(wlm: WlmServer, stream: bool) -> None:
    body = {"model": "lan/redirect", "messages": [{"role": "user", "content": "hi"}]}

    response = httpx.post(
        f"{wlm.base_url}/v1/chat/completions", json={**body, "stream": stream}, timeout=20
    )

    assert response.status_code == 502
    error = response.json()["error"]
    assert "301" in error["message"] and "LAN_BASE_URL" in error["message"]
    assert error["code"] == "upstream_broken"
    assert KEY not in response.text


def test_a_web_page_instead_of_json_is_a_502_for_the_sdk(wlm: WlmServer) -> None:
    client = openai.OpenAI(base_url=f"{wlm.base_url}/v1", api_key="unused", max_retries=0)

    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(
            model="lan/page", messages=[{"role": "user", "content": "hi"}]
        )

    assert raised.value.status_code == 502
    assert "not a JSON object" in str(raised.value)
