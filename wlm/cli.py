"""The ``wlm`` command: serve | models | sql | telemetry export | pull | make-test-model.

``wlm models`` and ``wlm sql`` find a running server from the same settings
(``WLM_HOST``, ``WLM_PORT``, ``.env``) or from ``--port``/``--url``, and fall back to
working without one (see :mod:`wlm.cli_common`).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import ipaddress
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wlm.cli_common import (
    CLI_KEY_VAR,
    add_env_file_option,
    add_server_options,
    client_headers,
    load_cli_settings,
    print_table,
    server_address,
)
from wlm.config import ConfigError, Settings, load_settings
from wlm.hub_cli import add_pull_command
from wlm.telemetry_cli import add_telemetry_commands

if TYPE_CHECKING:
    import httpx

__all__ = ["main"]

_ENV_FILE_VAR = "WLM_ENV_FILE"
_PARENT_GONE_FLUSH_S = 1.0  # telemetry's last chance when `wlm serve` was killed


def app_factory() -> Any:
    """Granian's factory target: settings again from the environment the CLI prepared.

    Runs in the Granian worker. If ``wlm serve`` (the worker's parent) dies without
    stopping it, SIGKILL included, the worker ends at once (see :func:`_parent_gone`).
    """
    # The app (Litestar, DuckDB, the providers) loads here, in the worker, not when
    # any `wlm` command starts.
    from wlm.app import create_app, serve_app
    from wlm.lifeline import die_with_parent, watch_parent

    built: list[Any] = []
    if not watch_parent(lambda: _parent_gone(built)):
        die_with_parent()  # no pidfd (old kernel): a graceful stop on SIGTERM instead
    env_file = os.environ.get(_ENV_FILE_VAR)
    app = create_app(load_settings(None, Path(env_file) if env_file else None))
    built.append(app.state.gateway)
    app = serve_app(app)
    _tune_gc()
    _tune_gil()
    return app


def _parent_gone(built: list[Any]) -> None:
    """``wlm serve`` is gone (SIGKILL, OOM kill, crash): kill the engines and exit now.

    Not Granian's graceful stop, which waits for open streams and then drains local
    requests while nobody is left to wait for: the engines' process groups are killed
    first, telemetry gets a best-effort flush of what is queued (at most
    ``_PARENT_GONE_FLUSH_S``), then the worker exits. Runs on the watcher thread.
    """
    log = logging.getLogger("wlm")
    gateway = built[0] if built else None
    local = getattr(gateway, "local", None)
    engines = local.kill_engines_now() if local is not None else []
    log.warning(
        "the wlm main process is gone: killed %d engine process group(s), exiting",
        len(engines),
    )
    telemetry = getattr(gateway, "telemetry", None)
    if telemetry is not None:
        try:
            if not telemetry.flush(_PARENT_GONE_FLUSH_S):
                log.error("telemetry: not everything queued was written before exit")
        except Exception:
            log.exception("telemetry flush before exit failed")
    os._exit(1)


def _tune_gil() -> None:
    """The event loop waits at most 1 ms for the GIL, not CPython's 5 ms.

    The telemetry writer thread runs Python and DuckDB's appender, which hold the GIL.
    With the default interval a batch could keep the event loop waiting 5 ms at a time
    (a stream's first chunk late by as much); at 1 ms the loop's longest waits under a
    writer batch fell from 5.3 to 1.7 ms (p99), docs/performance.md.
    """
    sys.setswitchinterval(0.001)


def _tune_gc() -> None:
    """Fewer young-generation collections for a server that allocates per request.

    Every request allocates thousands of short-lived objects (decoded JSON, records);
    with CPython's default threshold (700) the collector runs several times per
    request. Freezing what start-up built and raising the threshold measured ~9% more
    requests/s at c=32 (docs/performance.md); cycles are still collected.
    """
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def _serve(args: argparse.Namespace) -> int:
    settings = load_cli_settings(args, host=args.host, port=args.port, workers=args.workers)
    if settings.workers != 1:
        raise ConfigError(
            "--workers",
            "wlm serves from one process: DuckDB allows one writer and local engines need one "
            "supervisor (a second worker gains nothing on 2 cores; see docs/performance.md)",
        )
    _check_exposure(settings)
    taken = _address_taken(settings.host, settings.port)
    if taken:
        print(f"wlm: {taken}", file=sys.stderr)
        return 1
    # Granian is imported here, not at the top: the other commands never need it.
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels
    from granian.server import Server

    # The worker process rebuilds Settings from this same environment.
    os.environ["WLM_HOST"] = settings.host
    os.environ["WLM_PORT"] = str(settings.port)
    if args.env_file:
        os.environ[_ENV_FILE_VAR] = str(Path(args.env_file).resolve())
    print(f"wlm serving on http://{settings.host}:{settings.port}/v1", file=sys.stderr, flush=True)
    server = Server(
        "wlm.cli:app_factory",
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=1,
        loop=Loops.uvloop,
        factory=True,
        log_access=False,
        log_level=LogLevels.warning,
        backlog=2048,
        websockets=False,
        workers_kill_timeout=30,
    )
    server.serve()
    return 0


def _address_taken(host: str, port: int) -> str | None:
    """Why ``wlm serve`` cannot listen on ``host:port``, or None when it can.

    Granian binds with SO_REUSEPORT, so a second server on a port in use would start
    and quietly take part of the traffic (with its own engines and no telemetry). A
    plain bind without SO_REUSEPORT fails while anything listens there. SO_REUSEADDR
    is set so the connections a just-stopped server leaves in TIME_WAIT do not count.
    The probe closes before Granian binds; nothing else is open yet.
    """
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:  # socket.gaierror included
        if exc.errno == errno.EADDRINUSE:
            return f"{shown} is already in use (another wlm serve?); choose another with --port"
        return f"cannot listen on {shown}: {exc.strerror or exc}"
    return None


def _check_exposure(settings: Settings) -> None:
    """Beyond loopback, both client keys and the admin key are needed (or WLM_ALLOW_OPEN=1).

    Without client keys anyone on the network can spend the provider keys; without
    the admin key, the management API (``/api/*``, including ``/api/sql`` over every
    stored conversation) and the pages are open to them.
    """
    host = settings.host
    loopback = host == "localhost"
    try:
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if loopback:
        return
    missing = []
    if not settings.api_keys:
        missing.append(("WLM_API_KEYS", "client keys", "use your provider keys"))
    if not settings.admin_key:
        missing.append(
            (
                "WLM_ADMIN_KEY",
                "an admin key",
                "use the management API (/api/*, including /api/sql over all stored "
                "telemetry and conversations) and the pages",
            )
        )
    if not missing:
        return
    names = " and ".join(name for name, _, _ in missing)
    what = " or ".join(what for _, what, _ in missing)
    exposed = " and ".join(exposed for _, _, exposed in missing)
    if not settings.allow_open:
        raise ConfigError(
            "WLM_HOST",
            f"refusing to listen on {host} without {what}: anyone on the network could "
            f"{exposed}; set {names}, or WLM_ALLOW_OPEN=1 to accept that",
        )
    print(
        f"WARNING: wlm listens on {host} without {names} (WLM_ALLOW_OPEN=1): "
        f"anyone who can reach this address can {exposed}.",
        file=sys.stderr,
    )


def _models(args: argparse.Namespace) -> int:
    # httpx is imported here, not at the top: `wlm serve` never needs it in this process.
    import httpx

    settings = load_cli_settings(args)
    server = server_address(settings, args)
    url = f"{server.url}/v1/models"
    data: list[dict[str, Any]] | None = None
    try:
        response = httpx.get(url, headers=client_headers(settings, server), timeout=15)
    except httpx.HTTPError:
        why = f"no server answered at {server.url}"
    else:
        if response.status_code in (401, 403):
            print(
                f"wlm models: {url} refused the key (HTTP {response.status_code}); "
                f"set {CLI_KEY_VAR} to a client key or the admin key it accepts",
                file=sys.stderr,
            )
            return 1
        data = _model_list(response)
        why = f"{url} answered HTTP {response.status_code}, not a wlm model list"
    if data is None:
        data = _models_offline(settings)
        print(
            f"wlm models: offline list, read from disk because {why} "
            "(states are not a running server's); pass --port or --url to ask one",
            file=sys.stderr,
        )
    if args.format == "json":
        print(json.dumps(data, indent=2))
        return 0
    rows = [[m["id"], m.get("provider", m.get("owned_by", "")), m.get("state", "")] for m in data]
    print_table(["id", "provider", "state"], rows)
    return 0


def _model_list(response: httpx.Response) -> list[dict[str, Any]] | None:
    """The ``data`` of a ``/v1/models`` answer, or None when it is not one."""
    if response.status_code != 200:
        return None
    try:
        data = response.json()["data"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(data, list) or not all(isinstance(m, dict) and "id" in m for m in data):
        return None
    return data


def _models_offline(settings: Settings) -> list[dict[str, Any]]:
    """No server running: build the catalog in-process (discovery only, no engines)."""
    # The gateway and its providers load only for an offline list (start-up speed).
    from wlm.gateway import Gateway
    from wlm.local.manager import LocalManager

    async def collect() -> list[dict[str, Any]]:
        local = LocalManager(settings)
        gateway = Gateway(settings, local=local, telemetry=None)
        await local.start()
        try:
            await gateway.catalog.refresh(only_stale=False)
            return await gateway.catalog.entries()
        finally:
            await gateway.close()

    return asyncio.run(collect())


def _split_parts(path: Path) -> list[Path]:
    """The files of a split set written for ``path`` (``<stem>-00001-of-0000N.gguf`` ...)."""
    return sorted(path.parent.glob(f"{path.stem}-[0-9][0-9][0-9][0-9][0-9]-of-*.gguf"))


def _tool_call_option(values: list[str] | None) -> tuple[tuple[str, dict[str, Any]] | None, str]:
    """``--tool-call NAME JSON`` as ((name, arguments), "") or (None, the problem with it)."""
    if values is None:
        return None, ""
    name, arguments = values
    try:
        parsed = json.loads(arguments)
    except ValueError as exc:
        return None, f"--tool-call's arguments are not JSON ({exc}): {arguments}"
    if not name.strip() or not isinstance(parsed, dict):
        return None, "--tool-call takes a tool name and its arguments as a JSON object"
    return (name, parsed), ""


def _make_test_model(args: argparse.Namespace) -> int:
    path = Path(args.path)
    problem = None
    tool_call, tool_call_problem = _tool_call_option(args.tool_call)
    if path.suffix.lower() != ".gguf":
        problem = f"{path} does not end in .gguf, so wlm would not list it"
    elif args.seed < 0 or args.split < 0:
        problem = "--seed and --split take a number from 0 up"
    elif args.ctx < 1:
        problem = "--ctx takes a number from 1 up"
    elif args.stop_after is not None and not 1 <= args.stop_after <= 32:
        problem = "--stop-after takes a number from 1 to 32"
    elif tool_call_problem:
        problem = tool_call_problem
    elif args.reranker and (args.stop_after is not None or tool_call is not None):
        problem = "--reranker does not generate: it takes no --stop-after or --tool-call"
    elif path.is_dir():
        problem = f"{path} is a directory; give the file to write, e.g. {path / 'tiny.gguf'}"
    else:
        existing = _split_parts(path) if args.split else [path] if path.exists() else []
        if existing and not args.force:
            problem = f"{existing[0]} exists; pass --force to overwrite it"
    if problem:
        print(f"wlm make-test-model: {problem}", file=sys.stderr)
        return 1
    for old in existing:  # --force: a new set may have fewer parts than the old one
        old.unlink()
    # numpy and gguf load here, not at the top: no other command needs them.
    from wlm.local.testmodel import TOOL_CALL_STOP_AFTER, write_tiny_gguf

    stop_after = args.stop_after
    if tool_call is not None and stop_after is None:
        stop_after = TOOL_CALL_STOP_AFTER
    try:
        first = write_tiny_gguf(
            path,
            seed=args.seed,
            max_tensors_per_file=args.split,
            context_length=args.ctx,
            stop_after=stop_after,
            tool_call=tool_call,
            reranker=args.reranker,
        )
    except OSError as exc:
        print(f"wlm make-test-model: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    files = _split_parts(path) if first != path else [path]
    size_kb = sum(f.stat().st_size for f in files) // 1024
    parts = f" and {len(files) - 1} more part(s)" if len(files) > 1 else ""
    ends = f"end after {stop_after} tokens" if stop_after is not None else "run to max_tokens"
    if tool_call is not None:
        ends += f", or call {tool_call[0]} while a request offers tools and has no tool result"
    what = f"whose replies are gibberish and {ends}"
    if args.reranker:
        what = "for /v1/rerank (set reranking = true for it in WLM_LOCAL_OPTIONS)"
    print(
        f"wrote {first}{parts} ({size_kb} KB): a random-weight test model (context "
        f"{args.ctx}) {what}; wlm lists it when it is under WLM_MODELS_DIR",
        file=sys.stderr,
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wlm", description="LLM gateway for local and cloud models."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--host", default=None, help="listen address (WLM_HOST, default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=None, help="listen port (WLM_PORT, default 5250)"
    )
    serve.add_argument("--workers", type=int, default=None, help="worker processes (only 1)")
    add_env_file_option(serve)
    serve.set_defaults(func=_serve)

    models = sub.add_parser("models", help="the merged model list (id, provider, state)")
    models.add_argument("--format", choices=["table", "json"], default="table")
    add_server_options(models)
    add_env_file_option(models)
    models.set_defaults(func=_models)

    add_telemetry_commands(sub)
    add_pull_command(sub)

    test_model = sub.add_parser(
        "make-test-model",
        help="write a tiny random-weight GGUF model for trying wlm out",
        description=(
            "Write a tiny random-weight llama model (about 0.7 MB, ChatML chat template) "
            "that llama.cpp loads in a fraction of a second. Its replies are gibberish "
            "that runs to max_tokens (or ends after --stop-after tokens), but it serves "
            "every endpoint like a real model. "
            "Put it under WLM_MODELS_DIR; for embeddings, turn them on for it in "
            "models.toml (docs/local-models.md)."
        ),
    )
    test_model.add_argument("path", help="where to write it, ending in .gguf")
    test_model.add_argument(
        "--seed", type=int, default=0, help="random seed: same seed, same bytes (default 0)"
    )
    test_model.add_argument(
        "--split",
        type=int,
        default=0,
        metavar="N",
        help="write a split set NAME-00001-of-0000K.gguf ... of at most N tensors per file",
    )
    test_model.add_argument(
        "--ctx",
        type=int,
        default=2048,
        metavar="N",
        help="trained context length in tokens; llama.cpp caps its context to it "
        "(default 2048; agents such as Claude Code and Codex need 32768 or more)",
    )
    test_model.add_argument(
        "--stop-after",
        type=int,
        metavar="N",
        help="every reply is N tokens (1 to 32) and ends by itself (finish reason stop) "
        "instead of running to max_tokens; for agents, which treat a cut-off reply "
        "as a failure",
    )
    test_model.add_argument(
        "--tool-call",
        nargs=2,
        metavar=("NAME", "JSON"),
        help="a request that offers tools and holds no tool result yet gets this one call "
        '(finish reason tool_calls), e.g. --tool-call Bash \'{"command": "ls"}\'; '
        "any other gets text (implies --stop-after 8 unless given)",
    )
    test_model.add_argument(
        "--reranker",
        action="store_true",
        help="a reranker for /v1/rerank (random scores, fixed per seed, query and document); "
        "serve it with reranking = true in WLM_LOCAL_OPTIONS",
    )
    test_model.add_argument("--force", action="store_true", help="overwrite existing files")
    test_model.set_defaults(func=_make_test_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``wlm`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"wlm: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
