"""What the ``wlm`` commands share: settings, finding the running server, its keys, tables.

``wlm models`` and ``wlm sql`` find a running server from the same settings as
``wlm serve`` (``WLM_HOST``, ``WLM_PORT``, ``.env``), or from ``--port``/``--url``
when it listens elsewhere. They present the configured admin key (or a client key)
to it, or ``WLM_CLI_KEY`` when set: needed when the configured key is only its
``sha256:`` hash.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from attrs import frozen

from wlm.auth import hashed_digest
from wlm.config import ConfigError, Settings, load_settings

__all__ = [
    "CLI_KEY_VAR",
    "ServerAddress",
    "add_env_file_option",
    "add_server_options",
    "admin_headers",
    "client_headers",
    "load_cli_settings",
    "print_table",
    "server_address",
]

CLI_KEY_VAR = "WLM_CLI_KEY"  # the clear key `wlm sql`/`wlm models` send the server


def add_env_file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env-file", default=None, help="read settings from this file (default ./.env)"
    )


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """``--port``/``--url``: where the running server is, when not at WLM_HOST:WLM_PORT."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--port",
        type=int,
        default=None,
        help="the running server's port, on WLM_HOST (default: WLM_PORT, else 5250)",
    )
    where.add_argument(
        "--url", default=None, help="the running server's address, e.g. http://127.0.0.1:6000"
    )


def load_cli_settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Settings from the environment and ``--env-file`` (else ``./.env``), then ``overrides``."""
    env_file = Path(args.env_file) if getattr(args, "env_file", None) else None
    return load_settings(None, env_file, **overrides)


@frozen
class ServerAddress:
    """Where the CLI looks for a running wlm server: its base ``url`` and TCP endpoint."""

    url: str  # no trailing slash, no /v1
    host: str
    port: int

    def listening(self) -> bool:
        """True when something accepts TCP connections there."""
        try:
            with socket.create_connection((self.host, self.port), timeout=2):
                return True
        except OSError:
            return False


def server_address(settings: Settings, args: argparse.Namespace) -> ServerAddress:
    """``--url``, else WLM_HOST (a wildcard means this machine) with ``--port`` or WLM_PORT."""
    url = getattr(args, "url", None)
    if url:
        return _parse_url(url)
    port = getattr(args, "port", None)
    if port is not None and not 0 < port < 65536:
        raise ConfigError("--port", f"expected a port from 1 to 65535, got {port}")
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    port = settings.port if port is None else port
    shown = f"[{host}]" if ":" in host else host
    return ServerAddress(url=f"http://{shown}:{port}", host=host, port=port)


def _parse_url(url: str) -> ServerAddress:
    """``http(s)://host[:port][/prefix]``; a trailing ``/v1`` (as ``wlm serve`` prints it) is dropped."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("--url", f"expected http://host:port, got {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ConfigError("--url", f"expected http://host:port, got {url!r}") from None
    path = parts.path.rstrip("/").removesuffix("/v1").rstrip("/")
    return ServerAddress(
        url=f"{parts.scheme}://{parts.netloc}{path}", host=parts.hostname, port=port
    )


def _bearer(server: ServerAddress, configured: str, variable: str) -> dict[str, str]:
    """The ``Authorization`` header the CLI sends the running server in place of a key.

    ``WLM_CLI_KEY`` (environment only) wins. Otherwise the configured key is sent, unless
    it is stored as its ``sha256:`` hash: that is not the key, the server would answer
    401, so with a server listening this fails with one line asking for WLM_CLI_KEY.
    """
    key = os.environ.get(CLI_KEY_VAR, "").strip()
    if not key:
        if hashed_digest(configured) is None:
            key = configured
        elif not server.listening():
            return {}  # no server: the command works offline and needs no key
        else:
            raise ConfigError(
                CLI_KEY_VAR,
                f"{variable} is set as a sha256: hash, which is not the key, so the server at "
                f"{server.url} would refuse it: set {CLI_KEY_VAR} to the key "
                "in clear (the one whose hash it holds)",
            )
    return {"authorization": f"Bearer {key}"}


def admin_headers(settings: Settings, server: ServerAddress) -> dict[str, str]:
    """For the running server's admin routes (``wlm sql``); none when it has no admin key."""
    if not settings.admin_key:
        return {}
    return _bearer(server, settings.admin_key, "WLM_ADMIN_KEY")


def client_headers(settings: Settings, server: ServerAddress) -> dict[str, str]:
    """For ``GET /v1/models``: the admin key, else a client key; none when it needs none."""
    if not settings.api_keys:
        return {}
    if settings.admin_key:
        return _bearer(server, settings.admin_key, "WLM_ADMIN_KEY")
    keys = [k.key for k in settings.api_keys]
    clear = next((k for k in keys if hashed_digest(k) is None), keys[0])
    return _bearer(server, clear, "WLM_API_KEYS")


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Left-aligned columns under a header and a rule, on stdout."""
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    line = "  ".join(c.ljust(widths[i]) for i, c in enumerate(columns))
    print(line.rstrip())
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip())
