"""A provider base URL that points at the wrong thing: a redirect (http:// for an https://
server) or a web page answering 200. The client gets a 502 that says what to check,
in OpenAI's error shape, whether it streams or not.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import WlmServer

pytestmark = pytest.mark.e2e

KEY = "sk-misconfigured-key-0123456789"


class _WrongServer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if body["model"] == "redirect":
            self.send_response(301)
            self.send_header("location", f"https://example.invalid/v1?key={KEY}")
            payload = b"<html>Moved Permanently</html>"
        else:
            self.send_response(200)
            payload = b"<html><body>Welcome to nginx!</body></html>"
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def wrong_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WrongServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


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
