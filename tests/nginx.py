"""A throwaway nginx for tests: Debian's binary running docs/nginx.conf, the shipped
config, with the test's addresses in place of its placeholders.

Everything it writes (pid, logs, temp files) is in its own temp dir; it runs in the
foreground (``daemon off``) as a child in its own process group, as an unprivileged user
when the tests run as root, listening on a free 127.0.0.1 port, compressing event streams
(so that a stream arrives event by event only if wlm's ``X-Accel-Buffering: no`` works). Its access log names, for
each request, the ``x-request-id`` the client sent and the replica(s) nginx tried.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.pg import unprivileged_user

SHIPPED = Path(__file__).resolve().parents[1] / "docs" / "nginx.conf"
REPLICA_PLACEHOLDERS = ("wlm-1.internal:5250", "wlm-2.internal:5250")
LISTEN_PLACEHOLDER = "listen 80 default_server;"

_MAIN = """\
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format replicas '$http_x_request_id $upstream_addr $status $request_uri';
    access_log {root}/access.log replicas;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    # Compressing streams too, as a front may: gzip holds output until a buffer fills,
    # unless the upstream's X-Accel-Buffering: no makes nginx flush every read. So each
    # event arrives on time only because wlm sends that header (without it, all arrive
    # at the end: tried with proxy_ignore_headers).
    gzip on;
    gzip_types text/event-stream application/json;
    include {root}/wlm.conf;
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )


def site_config(replicas: tuple[str, str], port: int) -> str:
    """docs/nginx.conf with ``replicas`` (``host:port`` each) and ``127.0.0.1:port``."""
    text = SHIPPED.read_text()
    for placeholder, address in zip(REPLICA_PLACEHOLDERS, replicas, strict=True):
        # Each replica is named in both upstream blocks.
        assert text.count(placeholder) == 2, f"docs/nginx.conf changed: {placeholder}"
        text = text.replace(placeholder, address)
    assert text.count(LISTEN_PLACEHOLDER) == 1, "docs/nginx.conf changed: listen"
    return text.replace(LISTEN_PLACEHOLDER, f"listen 127.0.0.1:{port} default_server;")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Nginx:
    """nginx serving :func:`site_config` for two replicas; :meth:`start`, :meth:`stop`."""

    def __init__(self, replicas: tuple[str, str]) -> None:
        binary = nginx_binary()
        if binary is None:
            raise LookupError("nginx not found (Debian: apt-get install nginx; ./dev test does)")
        self.binary = binary
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.root = Path(tempfile.mkdtemp(prefix="wlm-nginx-"))
        (self.root / "wlm.conf").write_text(site_config(replicas, self.port))
        (self.root / "nginx.conf").write_text(_MAIN.format(root=self.root))
        self._kwargs: dict[str, Any] = {}
        if os.geteuid() == 0:
            user = unprivileged_user()
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> Nginx:
        command = [self.binary, "-p", str(self.root), "-e", str(self.root / "error.log")]
        self.process = subprocess.Popen(
            [*command, "-c", str(self.root / "nginx.conf")],
            cwd=self.root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            **self._kwargs,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited early:\n{self.error_log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)  # polling for readiness with a deadline
        raise RuntimeError(f"nginx did not listen:\n{self.error_log()}")

    def stop(self) -> None:
        """Stop nginx and its worker (the whole process group), then remove the temp dir."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)

    def error_log(self) -> str:
        path = self.root / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def access_log(self) -> list[tuple[str, str, str, str]]:
        """(x-request-id, upstream address(es) tried, status, uri) per request served."""
        path = self.root / "access.log"
        lines = path.read_text().splitlines() if path.exists() else []
        entries = []
        for line in lines:
            request_id, rest = line.split(" ", 1)
            upstreams, status, uri = rest.rsplit(" ", 2)
            entries.append((request_id, upstreams, status, uri))
        return entries
