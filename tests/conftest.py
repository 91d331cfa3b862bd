"""Shared fixtures: a real wlm server (Granian in a subprocess) and helpers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


def all_gone(pids: set[int], timeout: float = 10.0) -> set[int]:
    """Wait until none of ``pids`` runs (a zombie counts as gone); returns those still alive.

    ``timeout=0`` checks once.
    """
    import psutil

    deadline = time.monotonic() + timeout
    alive = set(pids)
    while True:
        for pid in list(alive):
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    alive.discard(pid)
            except psutil.NoSuchProcess:
                alive.discard(pid)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)  # polling the process table with a deadline


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WlmServer:
    """``wlm serve`` in a subprocess with a given environment; stderr kept for leak scans."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.log_path = workdir / f"wlm-{self.port}.log"
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(workdir),
            "WLM_DATA_DIR": str(workdir / "data"),
            "WLM_MODELS_DIR": str(workdir / "models"),
            "WLM_PORT": str(self.port),
            **env,
        }
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> WlmServer:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "wlm.cli", "serve"],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"wlm exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # polling for readiness, not synchronising a test
        raise RuntimeError(f"wlm did not become healthy:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def wlm_factory(tmp_path: Path) -> Iterator[object]:
    """Start wlm servers with a given env; all are stopped at the end of the test."""
    servers: list[WlmServer] = []

    def start(env: dict[str, str], workdir: Path | None = None) -> WlmServer:
        server = WlmServer(env, workdir or tmp_path).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[object]:
    """A throwaway PostgreSQL cluster (tests/pg.py) for the session; skipped without
    Debian's postgresql binaries."""
    from tests.pg import start_cluster

    try:
        cluster = start_cluster()
    except LookupError as exc:
        pytest.skip(str(exc))
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_url(pg_cluster: object) -> str:
    """A fresh database on the session's cluster: ``postgresql://wlm:<pw>@127.0.0.1:<port>/wlm_N``."""
    from tests.pg import PgCluster

    assert isinstance(pg_cluster, PgCluster)
    return pg_cluster.create_database()
