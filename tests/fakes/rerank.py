"""A fake rerank provider (Jina's API shape): a real HTTP server on 127.0.0.1.

``POST /v1/rerank`` with ``Authorization: Bearer <key>`` and ``{"model", "query",
"documents": [str, ...], "top_n"?, "return_documents"?}`` answers Jina's way:
``{"model", "usage": {"total_tokens"}, "results": [{"index", "relevance_score",
"document"?}]}``, most relevant first, ``top_n`` of them. Each score is derived from a
hash of (query, document), so a test knows it in advance (:func:`score_for`). A wrong key
is a 401, a body Jina would refuse a 422, any other path a 404.

    with FakeReranker() as fake:
        ... JINA_BASE_URL=fake.base_url, JINA_API_KEY=fake.api_key ...
        assert fake.requests[-1]["documents"] == [...]
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeReranker", "score_for"]

DEFAULT_KEY = "jina_fake0rerank0key0123456789abcdef"


def score_for(query: str, document: str) -> float:
    """The relevance score the fake gives ``document`` for ``query``: in [0, 1)."""
    digest = hashlib.sha256(f"{query}\0{document}".encode()).digest()
    return round(int.from_bytes(digest[:4], "big") / 2**32, 6)


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


def rerank_body(body: dict[str, Any]) -> dict[str, Any] | str:
    """Jina's answer to a rerank body, or why Jina would refuse it (a 422's detail)."""
    query, documents, top_n = body.get("query"), body.get("documents"), body.get("top_n")
    if not isinstance(query, str) or not isinstance(documents, list) or not documents:
        return "query must be a string and documents a non-empty list"
    if not all(isinstance(d, str) for d in documents):
        return "documents must be strings"
    scored = sorted(
        ({"index": i, "relevance_score": score_for(query, d)} for i, d in enumerate(documents)),
        key=lambda result: -float(result["relevance_score"]),
    )
    if isinstance(top_n, int):
        scored = scored[:top_n]
    if body.get("return_documents"):
        for result in scored:
            result["document"] = {"text": documents[int(result["index"])]}
    tokens = sum(_tokens(query) + _tokens(d) for d in documents)
    return {"model": body.get("model"), "usage": {"total_tokens": tokens}, "results": scored}


class FakeReranker:
    """Jina's rerank endpoint on a free port of 127.0.0.1, in a thread of its own."""

    def __init__(self, api_key: str = DEFAULT_KEY) -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []  # the JSON bodies, in order
        self.headers: list[dict[str, str]] = []  # their headers, names lowercase
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """What a user sets as the provider's base URL (with ``/v1``)."""
        assert self._server is not None, "start the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeReranker:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                if self.path != "/v1/rerank":
                    self._answer(404, {"detail": "Not Found"})
                    return
                if headers.get("authorization") != f"Bearer {fake.api_key}":
                    self._answer(401, {"detail": "Invalid API key"})
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with fake._lock:
                    fake.requests.append(body)
                    fake.headers.append(headers)
                answer = rerank_body(body) if isinstance(body, dict) else "not a JSON object"
                if isinstance(answer, str):
                    self._answer(422, {"detail": answer})
                else:
                    self._answer(200, answer)

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-reranker", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> FakeReranker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
