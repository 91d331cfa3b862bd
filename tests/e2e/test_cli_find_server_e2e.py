"""`wlm models` / `wlm sql` reach a server that is not on the port their settings name.

The README shows `./dev serve --port 6000`; the other commands then need `--port` or
`--url` to find it. Without them they say what they did instead: `wlm models` that its
list is offline, `wlm sql` that the telemetry file is held by (probably) a server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import WlmServer, free_port
from wlm.local.testmodel import write_tiny_gguf

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WlmServer]:
    workdir = tmp_path_factory.mktemp("wlm-cli-port")
    write_tiny_gguf(workdir / "models" / "tiny.gguf")
    server = WlmServer({}, workdir).start()
    yield server
    assert server.stop() == 0


@pytest.fixture
def elsewhere(server: WlmServer) -> dict[str, str]:
    """The server's settings, but naming a port where nothing listens and no models.

    So an answer naming the model ``tiny`` can only have come from the server.
    """
    empty = server.workdir / "no-models"
    empty.mkdir(exist_ok=True)
    return {**server.env, "WLM_PORT": str(free_port()), "WLM_MODELS_DIR": str(empty)}


def wlm(server: WlmServer, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wlm.cli", *args],
        cwd=server.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line(run: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr
    return lines[0]


def where(server: WlmServer, how: str) -> list[str]:
    return {
        "port": ["--port", str(server.port)],
        "url": ["--url", server.base_url],
        "printed-url": ["--url", f"{server.base_url}/v1"],  # as `wlm serve` prints it
    }[how]


@pytest.mark.parametrize("how", ["port", "url", "printed-url"])
def test_models_asks_the_server_at_port_or_url(
    server: WlmServer, elsewhere: dict[str, str], how: str
) -> None:
    run = wlm(server, elsewhere, "models", "--format", "json", *where(server, how))

    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert "tiny" in [m["id"] for m in json.loads(run.stdout)]


@pytest.mark.parametrize("how", ["port", "url"])
def test_sql_asks_the_server_at_port_or_url(
    server: WlmServer, elsewhere: dict[str, str], how: str
) -> None:
    run = wlm(
        server, elsewhere, "sql", "SELECT 41 + 1 AS answer", "--format", "json", *where(server, how)
    )

    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [{"answer": 42}]


def test_models_says_its_list_is_offline_when_no_server_answers(
    server: WlmServer, elsewhere: dict[str, str]
) -> None:
    run = wlm(server, elsewhere, "models", "--format", "json")

    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == []  # read from the (empty) models directory
    line = one_line(run)
    assert line.startswith(
        "wlm models: offline list, read from disk because no server answered at "
        f"http://127.0.0.1:{elsewhere['WLM_PORT']} "
    )
    assert "pass --port or --url" in line


def test_sql_on_the_file_a_server_holds_says_to_pass_port_or_url(
    server: WlmServer, elsewhere: dict[str, str]
) -> None:
    run = wlm(server, elsewhere, "sql", "SELECT count(*) FROM requests")

    assert run.returncode == 1 and run.stdout == ""
    line = one_line(run)
    assert line.startswith(f"wlm sql: {server.workdir / 'data' / 'telemetry.duckdb'} is locked by")
    assert (
        f"probably a wlm server that is not at http://127.0.0.1:{elsewhere['WLM_PORT']}: "
        "pass its --port or --url"
    ) in line


def test_sql_file_on_the_file_a_server_holds_says_to_drop_file(
    server: WlmServer, elsewhere: dict[str, str]
) -> None:
    run = wlm(server, elsewhere, "sql", "--file", "SELECT count(*) FROM requests")

    assert run.returncode == 1 and run.stdout == ""
    line = one_line(run)
    assert "is locked by" in line and "probably a running wlm server: drop --file" in line
