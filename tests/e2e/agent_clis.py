"""Running the real agent CLIs (Claude Code, Codex) against a wlm server, offline.

`./dev test` installs them, pinned, into `.venv/agents` (see `ensure_agents` in `dev`);
set WLM_TEST_AGENTS_BIN to use binaries from elsewhere. How they were run and what they
send is written up in shared/wire/agents/README.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from attrs import frozen

from tests.conftest import ROOT, WlmServer
from tests.e2e.telemetry_helpers import Rows, sql_api

CLAUDE_VERSION = "2.1.197"
CODEX_VERSION = "0.171.0"
AGENTS_BIN = Path(
    os.environ.get("WLM_TEST_AGENTS_BIN") or ROOT / ".venv" / "agents" / "node_modules" / ".bin"
)
# Each CLI run completes in about a second against the fakes; this only bounds a hang.
CLI_TIMEOUT_S = 60


def agent_binary(name: str) -> Path:
    """The installed CLI `name`, or a skip saying how to install it."""
    path = AGENTS_BIN / name
    if not os.access(path, os.X_OK):
        pytest.skip(
            f"{name} is not installed at {path}: `./dev test` installs "
            f"@anthropic-ai/claude-code@{CLAUDE_VERSION} and @openai/codex@{CODEX_VERSION} there"
        )
    return path


@frozen
class Run:
    """One finished CLI run."""

    returncode: int
    stdout: str
    stderr: str

    def explain(self, server: WlmServer) -> str:
        """What to read when an assertion about this run fails."""
        return (
            f"exit {self.returncode}\n--- stdout\n{self.stdout[-4000:]}\n"
            f"--- stderr\n{self.stderr[-4000:]}\n--- wlm log\n{server.log()[-3000:]}"
        )


def _base_env(home: Path) -> dict[str, str]:
    """A minimal environment with an isolated HOME (the CLIs keep state there)."""
    home.mkdir(parents=True, exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}


def _run(command: list[str], env: dict[str, str], cwd: Path) -> Run:
    done = subprocess.run(
        command,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,  # both wait for stdin otherwise
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def run_claude(
    binary: Path, server: WlmServer, key: str, model: str, prompt: str, home: Path
) -> tuple[Run, list[dict[str, Any]]]:
    """`claude -p` against `server`; the run and its stream-json events."""
    env = {
        **_base_env(home),
        "ANTHROPIC_BASE_URL": server.base_url,  # the origin: Claude Code appends /v1/messages
        "ANTHROPIC_API_KEY": key,
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    command = [str(binary), "-p", prompt, "--model", model]
    run = _run([*command, "--output-format", "stream-json", "--verbose"], env, home)
    events = []
    for line in run.stdout.splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return run, events


def claude_result(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The final `result` event of a stream-json run (fails when there is none)."""
    results = [e for e in events if e.get("type") == "result"]
    assert len(results) == 1, events
    return results[0]


def run_codex(
    binary: Path, server: WlmServer, key: str, model: str, prompt: str, home: Path
) -> Run:
    """`codex exec` against `server` as a custom Responses provider; stdout is its answer."""
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(
        f'model = "{model}"\n'
        'model_provider = "wlm"\n'
        "[model_providers.wlm]\n"
        'name = "wlm"\n'
        f'base_url = "{server.base_url}/v1"\n'
        'env_key = "WLM_KEY"\n'  # sent as Authorization: Bearer
        'wire_api = "responses"\n'  # Codex 0.171 refuses "chat"
    )
    env = {**_base_env(home), "CODEX_HOME": str(codex_home), "WLM_KEY": key}
    return _run([str(binary), "exec", "--skip-git-repo-check", prompt], env, home)


def wait_for_telemetry(server: WlmServer, sql: str, n: int, timeout: float = 10.0) -> Rows:
    """The rows of `sql` once there are at least `n` (the writer flushes every 250 ms)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        while True:
            rows = sql_api(http, sql)
            if len(rows) >= n or time.monotonic() >= deadline:
                return rows
            time.sleep(0.05)  # polling the server's state, not synchronising the test
