"""A minimal, featureless proxy on wlm's stack: the yardstick for ``proxy.py --yardstick``.

    python benchmarks/yardstick.py --port 9200 --upstream http://127.0.0.1:9100/v1 [--api-key KEY]

Litestar served by Granian with the server options ``wlm serve`` uses (wlm/cli.py: ASGI,
one worker, uvloop, backlog 2048, no access log, no websockets), and one shared aiohttp
session with the connector and session settings of wlm's pooled aiohttp ``Transport``
(wlm/transport/pooled.py, earlier wlm/providers/transport.py).

``POST /v1/chat/completions`` is forwarded to ``<upstream>/chat/completions``: the body is
relayed unchanged, whole for a non-stream answer and chunk by chunk (``readany``) for
``"stream": true``, the only field it looks at. No auth, routing, telemetry, metrics,
redaction or disconnect handling. ``GET /health`` answers for readiness.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.response import Stream
from yarl import URL

_UPSTREAM_ENV = "WLM_YARDSTICK_UPSTREAM"
_KEY_ENV = "WLM_YARDSTICK_API_KEY"


class _Request(msgspec.Struct):
    stream: bool = False


_decode = msgspec.json.Decoder(_Request).decode


def create_app(upstream: str, api_key: str | None = None) -> Litestar:
    """The yardstick: ``upstream`` is a base URL such as ``http://127.0.0.1:9100/v1``."""
    url = URL(upstream.rstrip("/") + "/chat/completions")
    headers = {"content-type": "application/json"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    sessions: list[aiohttp.ClientSession] = []

    def open_session() -> None:
        # As wlm's pooled Transport._get_session; timeouts are wlm's defaults.
        connector = aiohttp.TCPConnector(
            limit=256, limit_per_host=0, keepalive_timeout=30, ttl_dns_cache=300
        )
        sessions.append(
            aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=600),
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
                read_bufsize=2**16,
            )
        )

    async def close_session() -> None:
        for session in sessions:
            await session.close()

    @post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.body()
        try:
            stream = _decode(body).stream
        except msgspec.DecodeError:
            stream = False
        upstream_response = await sessions[0].post(
            url, data=body, headers=headers, allow_redirects=False
        )
        media_type = upstream_response.headers.get("content-type", "application/json")
        if not stream:
            try:
                content = await upstream_response.read()
            finally:
                upstream_response.release()
            return Response(content, status_code=upstream_response.status, media_type=media_type)

        async def relay() -> AsyncIterator[bytes]:
            try:
                while chunk := await upstream_response.content.readany():
                    yield chunk
            finally:
                upstream_response.close()

        return Stream(relay(), status_code=upstream_response.status, media_type=media_type)

    @get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar(
        route_handlers=[chat, health],
        on_startup=[open_session],
        on_shutdown=[close_session],
        openapi_config=None,
        logging_config=None,
        debug=False,
    )


def app_factory() -> Litestar:
    """Granian's factory target in the worker: settings come through the environment."""
    return create_app(os.environ[_UPSTREAM_ENV], os.environ.get(_KEY_ENV) or None)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels
    from granian.server import Server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://host:port/v1")
    parser.add_argument("--api-key", default=None, help="sent upstream as a bearer key")
    args = parser.parse_args(argv)
    os.environ[_UPSTREAM_ENV] = args.upstream
    if args.api_key:
        os.environ[_KEY_ENV] = args.api_key
    # Keep in step with wlm/cli.py's _serve: the same server, only the app differs.
    Server(
        "yardstick:app_factory",
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=1,
        loop=Loops.uvloop,
        factory=True,
        log_access=False,
        log_level=LogLevels.warning,
        backlog=2048,
        websockets=False,
        workers_kill_timeout=30,
        working_dir=Path(__file__).resolve().parent,
    ).serve()


if __name__ == "__main__":
    main()
