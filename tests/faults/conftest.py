"""Fixtures of the fault suite: one shared wlm in front of three fakes, and a session ledger.

The shared server has client keys, an admin key and every provider key configured, so
every case runs the way a careful user would deploy wlm. Cases that must break the
server itself (local engines, telemetry, start-up checks) start their own servers
through ``start_wlm``, with the same secrets, so the leak scan covers them too.

Set ``WLM_FAULTS_REPORT=<file>`` to get the suite's figures as JSON (for
docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import WlmServer
from tests.fakes import FakeUpstream
from tests.faults.helpers import KEYS, Ledger, RecordingTransport

StartWlm = Callable[..., WlmServer]

# The slow provider's read timeout: an upstream that accepts and never answers costs 1 s.
SLOW_TIMEOUT_S = 1
# Per-client concurrency limit of the shared server (only the limit test gets near it).
CONCURRENCY_LIMIT = 3


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def ledger() -> Iterator[Ledger]:
    """Everything the suite's clients saw and every server it started."""
    ledger = Ledger()
    yield ledger
    report = os.environ.get("WLM_FAULTS_REPORT")
    if report:
        Path(report).write_text(
            json.dumps(
                {
                    "responses": len(ledger.responses),
                    "statuses": dict(sorted(ledger.statuses.items())),
                    "servers_started": len(ledger.servers),
                    "figures": ledger.figures,
                },
                indent=2,
            )
        )


@pytest.fixture(scope="session")
def fakes() -> Iterator[dict[str, FakeUpstream]]:
    started = {
        "openai": FakeUpstream("openai", KEYS.openai).start(),
        "openrouter": FakeUpstream("openrouter", KEYS.openrouter).start(),
        "anthropic": FakeUpstream("anthropic", KEYS.anthropic).start(),
    }
    yield started
    for fake in started.values():
        fake.stop()


def secret_env(fakes: dict[str, FakeUpstream]) -> dict[str, str]:
    """Every key the suite configures: client, admin and provider keys."""
    return {
        "WLM_API_KEYS": KEYS.api_keys_env,
        "WLM_ADMIN_KEY": KEYS.admin,
        "OPENAI_API_KEY": KEYS.openai,
        "OPENAI_BASE_URL": fakes["openai"].base_url,
        "OPENROUTER_API_KEY": KEYS.openrouter,
        "OPENROUTER_BASE_URL": fakes["openrouter"].base_url,
        "ANTHROPIC_API_KEY": KEYS.anthropic,
        "ANTHROPIC_BASE_URL": fakes["anthropic"].base_url,
        "WLM_MODELS_CACHE_S": "3600",
    }


@pytest.fixture(scope="session")
def start_wlm(
    ledger: Ledger, fakes: dict[str, FakeUpstream], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartWlm]:
    """``start_wlm(env, name)``: a registered wlm with the suite's secrets plus ``env``."""
    started: list[WlmServer] = []

    def start(env: dict[str, str], name: str, *, wait: bool = True) -> WlmServer:
        workdir = tmp_path_factory.mktemp(name)
        (workdir / "models").mkdir(exist_ok=True)
        server = WlmServer({**secret_env(fakes), **env}, workdir)
        ledger.register(server)
        started.append(server)
        return server.start() if wait else server

    yield start
    for server in started:
        server.stop()


class World:
    """The shared server, its fakes, and clients whose traffic lands in the ledger."""

    def __init__(self, server: WlmServer, fakes: dict[str, FakeUpstream], ledger: Ledger):
        self.server = server
        self.fakes = fakes
        self.ledger = ledger
        self._clients: list[httpx.Client] = []
        self.http = self.client()
        self.admin = self.client(KEYS.admin)

    def client(
        self, key: str | None = KEYS.alice, *, timeout: float = 20, header: str = "authorization"
    ) -> httpx.Client:
        """A client of the shared server presenting ``key`` (None: no key at all)."""
        headers = {}
        if key is not None:
            headers[header] = f"Bearer {key}" if header == "authorization" else key
        client = httpx.Client(
            base_url=self.server.base_url,
            headers=headers,
            timeout=timeout,
            transport=RecordingTransport(self.ledger),
        )
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()


@pytest.fixture(scope="session")
def world(start_wlm: StartWlm, fakes: dict[str, FakeUpstream], ledger: Ledger) -> Iterator[World]:
    env = {
        "WLM_PROVIDERS": "slow,dead",
        "SLOW_BASE_URL": fakes["openai"].base_url,
        "SLOW_API_KEY": KEYS.openai,
        "SLOW_TIMEOUT_S": str(SLOW_TIMEOUT_S),
        "WLM_SLOW_MODELS": "",
        "DEAD_BASE_URL": f"http://127.0.0.1:{closed_port()}/v1",
        "DEAD_NO_KEY": "true",
        "WLM_DEAD_MODELS": "",
        "WLM_ROUTES": "gpt-*=openai",
        "WLM_MAX_CONCURRENCY_PER_CLIENT": str(CONCURRENCY_LIMIT),
        # These cases are about how one upstream failure reaches the client: no retry
        # first (test_resilience_faults.py covers retries, fallbacks and cooldowns).
        "WLM_RETRIES": "0",
    }
    world = World(start_wlm(env, "shared"), fakes, ledger)
    yield world
    world.close()
