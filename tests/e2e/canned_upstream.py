"""A tiny upstream on 127.0.0.1 that answers every POST with whatever a test decides.

For cases the protocol-faithful fakes (tests/fakes) deliberately do not model: a
misconfigured base URL, an upstream that echoes its key everywhere.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (request body) -> (status, headers, payload)
Answer = Callable[[dict[str, Any]], tuple[int, dict[str, str], bytes]]


@contextlib.contextmanager
def canned_upstream(answer: Answer) -> Iterator[str]:
    """Serve ``answer`` on a free loopback port; yields the base URL (ending in /v1)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            status, headers, payload = answer(body)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
