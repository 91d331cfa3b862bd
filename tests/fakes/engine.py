"""A stand-in for llama-server, for the fault tests of local engines (no model is run).

Run it as ``WLM_LLAMA_SERVER`` (through a one-line shell script that execs this file
with the test's Python): wlm starts it with llama-server's flags, of which it reads
``-m`` and ``--port``. It is standalone on purpose: an engine gets no PYTHONPATH.

- A model file whose name contains ``refuse`` makes it print an error and exit 1,
  as llama-server does with a file it cannot load.
- Otherwise it is healthy at once, and answers ``POST /v1/chat/completions`` (whole
  or streamed) once the file ``<model>.go`` next to the model exists: a test holds
  the engine's one slot busy until it creates that file. Each chat request is logged
  as one line in ``<model>.requests``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_GATE_TIMEOUT_S = 60.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-m", "--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--alias", default="model")
    args, _ = parser.parse_known_args()
    model = Path(args.model)
    if "refuse" in model.name:
        print(f"llama_model_load: error loading model: refusing {model.name}", flush=True)
        return 1
    gate = model.with_suffix(".go")
    ledger = model.with_suffix(".requests")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, "application/json", b'{"status":"ok"}')
            else:
                self._send(404, "application/json", b'{"error":"not found"}')

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            request = json.loads(self.rfile.read(length) or b"{}")
            if self.path != "/v1/chat/completions":
                self._send(404, "application/json", b'{"error":"not found"}')
                return
            with lock, ledger.open("a") as log:
                log.write(json.dumps(request.get("model")) + "\n")
            deadline = time.monotonic() + _GATE_TIMEOUT_S
            while not gate.exists() and time.monotonic() < deadline:
                time.sleep(0.02)  # the fake engine's busy slot, until the test lets it go
            message = {"role": "assistant", "content": "from the engine"}
            usage = {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
            if not request.get("stream"):
                answer = {
                    "id": "chatcmpl-engine",
                    "object": "chat.completion",
                    "model": args.alias,
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": usage,
                }
                self._send(200, "application/json", json.dumps(answer).encode())
                return
            chunks = [
                {"index": 0, "delta": message, "finish_reason": None},
                {"index": 0, "delta": {}, "finish_reason": "stop"},
            ]
            events = b"".join(
                b"data: "
                + json.dumps(
                    {
                        "id": "c",
                        "object": "chat.completion.chunk",
                        "model": args.alias,
                        "choices": [choice],
                        "usage": usage if choice["finish_reason"] else None,
                    }
                ).encode()
                + b"\n\n"
                for choice in chunks
            )
            self._send(200, "text/event-stream", events + b"data: [DONE]\n\n")

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"fake engine listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
