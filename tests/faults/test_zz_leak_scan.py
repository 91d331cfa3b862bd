"""Last module of the suite: no key leaked anywhere, and no telemetry row was lost.

It first drives the paths where a key could slip out (an upstream echoing the key it
was sent, keys pasted into a prompt, a key typed where the model name goes, the pages
and /metrics), then stops the shared server gracefully and checks:
- rows: every POST the suite sent to a proxied endpoint of the shared server left
  exactly one ``requests`` row in the DuckDB file (read with ``read_only=True``);
- leaks: no configured key (client, admin, provider) appears in any response header or
  body the suite's clients read, any server's log, or any byte of any file a server
  wrote (the .duckdb and .wal files included).
Run alone, it still scans its own traffic; run with the suite, it scans everything.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tests.faults.conftest import World
from tests.faults.helpers import (
    KEYS,
    Ledger,
    chat,
    error_of,
    new_request_id,
    telemetry_rows,
    wait_for,
)

pytestmark = pytest.mark.e2e

PAGES = ["/", "/models", "/analytics", "/requests", "/instances", "/settings", "/metrics"]
KEY_NAMES = {
    KEYS.alice: "alice's client key",
    KEYS.bob: "bob's client key",
    KEYS.admin: "the admin key",
    KEYS.openai: "the OpenAI key",
    KEYS.openrouter: "the OpenRouter key",
    KEYS.anthropic: "the Anthropic key",
}


def stored_request_json(world: World, request_id: str) -> list[list[str]]:
    """The stored request of the call the client tagged ``request_id``, once written."""
    sql = (
        "SELECT c.request_json FROM conversations AS c JOIN requests AS r "
        f"ON c.request_id = r.id WHERE r.request_id = '{request_id}'"
    )
    return wait_for(
        lambda: world.admin.post("/api/sql", json={"sql": sql}).json()["rows"],
        5,
        "the conversation row",
    )


@pytest.mark.parametrize("prefix", ["openai", "anthropic"])
def test_an_upstream_echoing_its_key_is_redacted(world: World, prefix: str) -> None:
    response = world.http.post("/v1/chat/completions", json=chat(f"{prefix}/error:401-echo"))

    assert response.status_code == 401
    message = error_of(response)["message"]
    assert "[redacted]" in message
    assert not [k for k in KEYS.all() if k in response.text]


def test_keys_pasted_into_a_prompt_are_redacted_in_telemetry(world: World) -> None:
    request_id = new_request_id()
    pasted = f"my keys: {KEYS.alice} {KEYS.openai} {KEYS.admin} {KEYS.anthropic}"

    response = world.http.post(
        "/v1/chat/completions",
        json=chat("openai/gpt-4o-mini", marker=pasted),
        headers={"x-request-id": request_id},
    )

    assert response.status_code == 200
    stored = stored_request_json(world, request_id)
    assert "[redacted]" in stored[0][0]
    assert not [k for k in KEYS.all() if k in stored[0][0]]
    page = world.admin.get(f"/requests/{request_id}")
    assert page.status_code == 200
    assert not [k for k in KEYS.all() if k in page.text]


def test_a_hashed_client_key_pasted_by_its_owner_is_not_stored(world: World) -> None:
    """bob's key is configured only as a SHA-256; pasted into his own prompt, the stored
    request must not hold it (the redactor only learns it when bob presents it)."""
    request_id = new_request_id()

    response = world.client(KEYS.bob).post(
        "/v1/chat/completions",
        json=chat("openai/gpt-4o-mini", marker=f"my key is {KEYS.bob}"),
        headers={"x-request-id": request_id},
    )

    assert response.status_code == 200
    stored = stored_request_json(world, request_id)
    assert "my key is [redacted]" in stored[0][0]
    assert KEYS.bob not in stored[0][0]


def test_a_key_typed_as_the_model_name_is_not_stored(world: World) -> None:
    """A client passing its key where the model goes (arguments swapped) gets a 404 whose
    message is redacted; the key must not be kept in telemetry or metrics either."""
    request_id = new_request_id()

    response = world.http.post(
        "/v1/chat/completions", json=chat(KEYS.alice), headers={"x-request-id": request_id}
    )

    assert response.status_code == 404
    assert KEYS.alice not in response.text
    row = wait_for(
        lambda: telemetry_rows(world.admin, f"request_id = '{request_id}'"), 5, "the row"
    )[0]
    assert KEYS.alice not in str(row), f"stored in telemetry: model={row['model']!r}"
    assert KEYS.alice not in world.admin.get("/metrics").text, "exposed as a /metrics label"


@pytest.mark.parametrize("path", PAGES)
def test_pages_render_for_the_admin(world: World, path: str) -> None:
    """Read with the admin key; the HTML joins the leak scan below."""
    response = world.admin.get(path)

    assert response.status_code == 200, response.text[:300]


def test_every_proxied_request_left_exactly_one_row(world: World) -> None:
    """Graceful stop, then the file itself: rows == POSTs to proxied endpoints sent."""
    sent = world.ledger.proxied[world.server.port]
    assert world.server.stop() == 0
    database = Path(world.server.env["WLM_DATA_DIR"]) / "telemetry.duckdb"

    with duckdb.connect(str(database), read_only=True) as con:
        (stored,) = con.execute("SELECT count(*) FROM requests").fetchone()

    world.ledger.figures["shared_server_rows"] = {"sent": sent, "stored": stored}
    assert stored == sent, f"{sent} proxied requests sent, {stored} rows stored"


def find(key: str, data: bytes) -> list[str]:
    """Up to three snippets around each occurrence of ``key`` in ``data``."""
    needle = key.encode()
    found, start = [], 0
    while len(found) < 3 and (at := data.find(needle, start)) >= 0:
        found.append(data[max(0, at - 60) : at + len(needle) + 20].decode("latin-1"))
        start = at + 1
    return found


def scan(ledger: Ledger) -> tuple[list[str], dict[str, int]]:
    """Every leak (where, which key, context) and how much was scanned."""
    leaks: list[str] = []
    counts = {"responses": 0, "internal_errors": 0, "log_bytes": 0, "files": 0, "file_bytes": 0}
    for what, head, body in ledger.responses:
        counts["responses"] += 1
        counts["internal_errors"] += b'"code":"internal_error"' in body  # wlm's own 500s
        for key, name in KEY_NAMES.items():
            for snippet in find(key, head + b"\n" + bytes(body)):
                leaks.append(f"response to {what}: {name}: ...{snippet}...")
    for server in ledger.servers:
        for path in sorted(server.workdir.rglob("*")):
            if not path.is_file() or path.suffix == ".gguf":
                continue
            data = path.read_bytes()
            is_log = path == server.log_path
            counts["log_bytes" if is_log else "file_bytes"] += len(data)
            counts["files"] += not is_log
            for key, name in KEY_NAMES.items():
                for snippet in find(key, data):
                    leaks.append(f"{path}: {name}: ...{snippet!r}...")
    return leaks, counts


def test_zz_no_key_in_any_response_log_or_file(world: World) -> None:
    for server in world.ledger.servers:
        server.stop()  # idempotent; logs and files must be complete before the scan
    leaks, counts = scan(world.ledger)

    world.ledger.figures["leak_scan"] = {**counts, "leaks": len(leaks)}
    assert counts["responses"] > 0 and counts["file_bytes"] > 0
    assert not leaks, "keys leaked:\n" + "\n".join(leaks[:40])
