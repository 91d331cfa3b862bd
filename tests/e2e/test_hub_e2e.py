"""Models from the Hugging Face Hub, end to end, against a fake Hub on 127.0.0.1.

``wlm pull`` runs as a subprocess and ``wlm serve`` as a real server, both with
``HF_ENDPOINT`` pointing at :class:`tests.fakes.hub.FakeHub`, which serves tiny GGUFs
written by ``wlm.local.testmodel``: one file (``Q4_K_M``) and a split set of three parts
(``Q8_0``, in a folder, as big repos publish them).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import WlmServer, free_port
from tests.fakes.hub import FakeHub
from wlm.local.discovery import scan_models
from wlm.local.testmodel import write_tiny_gguf

pytestmark = pytest.mark.e2e

REPO = "wlm-test/Tiny-GGUF"
GATED = "wlm-test/Gated-GGUF"
CLOSED = "wlm-test/Closed-GGUF"
HF_TOKEN = "hf_wlmTestToken0123456789abcdefXYZ"
Q4 = "Tiny-Q4_K_M.gguf"
LIGHT = {"WLM_LOCAL_THREADS": "1", "WLM_LOCAL_CTX_SIZE": "512", "WLM_LOCAL_PARALLEL": "1"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The repo's files: a single-file model and a three-part split set."""
    root = tmp_path_factory.mktemp("hub-src")
    files = {Q4: write_tiny_gguf(root / Q4, seed=7)}
    write_tiny_gguf(root / "split" / "Tiny-Q8_0.gguf", seed=8, max_tensors_per_file=8)
    for part in sorted((root / "split").glob("*.gguf")):
        files[f"Q8_0/{part.name}"] = part
    return files


@pytest.fixture
def hub(sources: dict[str, Path]) -> Iterator[FakeHub]:
    fake = FakeHub().start()
    files: dict[str, bytes | Path] = {**sources, "README.md": b"# Tiny\n"}
    fake.add_repo(REPO, files, downloads=1200, likes=3)
    fake.add_repo("wlm-test/Popular-GGUF", {Q4: sources[Q4]}, downloads=90_000)
    fake.add_repo("wlm-test/Not-A-GGUF", {"model.safetensors": b"x"}, tags=("safetensors",))
    fake.add_repo(GATED, {Q4: sources[Q4]}, gated=True, tokens=frozenset({HF_TOKEN}))
    fake.add_repo(CLOSED, {Q4: sources[Q4]}, gated=True, tokens=frozenset({"hf_someone_else"}))
    yield fake
    fake.stop()


def cli_env(hub: FakeHub, home: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "HF_ENDPOINT": hub.base_url,
        "WLM_MODELS_DIR": str(home / "models"),
        "WLM_PORT": str(free_port()),  # no server there: the pull asks none to rescan
        **extra,
    }


def pull(env: dict[str, str], ref: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wlm.cli", "pull", ref],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_wlm_pull_shows_the_bar_and_verifies_the_file(
    hub: FakeHub, sources: dict[str, Path], tmp_path: Path
) -> None:
    hub.throttle_bps = 400_000  # about 1.6 s: the bar is drawn on the way, not only at the end

    done = pull(cli_env(hub, tmp_path), f"{REPO}:Q4_K_M", tmp_path)

    assert done.returncode == 0, done.stderr
    pulled = tmp_path / "models" / REPO / Q4
    assert sha256(pulled) == sha256(sources[Q4])
    lines = [line for line in done.stderr.splitlines() if line.startswith("Tiny-Q4_K_M [")]
    assert len(lines) >= 2, done.stderr  # progress on the way, then the last line
    on_the_way = [line for line in lines if "100%" not in line and " 0%" not in line]
    assert any("KB/s" in line and "ETA 00:0" in line for line in on_the_way), done.stderr
    assert "100%  655.6 KB / 655.6 KB" in lines[-1]
    assert "size and sha256 verified" in done.stderr
    assert f"{REPO}/Tiny-Q4_K_M is ready" in done.stderr
    # Nothing hidden is left behind, and wlm lists the model under the repo's name.
    assert sorted(p.name for p in pulled.parent.iterdir()) == [Q4]
    models = scan_models(tmp_path / "models")
    assert list(models) == [f"{REPO}/Tiny-Q4_K_M"] and models[f"{REPO}/Tiny-Q4_K_M"].usable
    # The metadata came from the Hub's API, the bytes through /resolve's redirect.
    paths = [(r.method, r.path) for r in hub.requests]
    assert ("GET", f"/api/models/{REPO}") in paths
    assert any(m == "HEAD" and p.startswith(f"/{REPO}/resolve/") for m, p in paths)


def test_a_split_gguf_is_pulled_as_one_model(
    hub: FakeHub, sources: dict[str, Path], tmp_path: Path
) -> None:
    done = pull(cli_env(hub, tmp_path), f"{REPO}:q8_0", tmp_path)

    assert done.returncode == 0, done.stderr
    assert "(3 files," in done.stderr and "(file 3/3)" in done.stderr
    folder = tmp_path / "models" / REPO
    parts = sorted(folder.iterdir())
    assert [p.name for p in parts] == [f"Tiny-Q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    for part in parts:
        assert sha256(part) == sha256(sources[f"Q8_0/{part.name}"])
    models = scan_models(tmp_path / "models")
    assert list(models) == [f"{REPO}/Tiny-Q8_0"]
    assert models[f"{REPO}/Tiny-Q8_0"].usable and len(models[f"{REPO}/Tiny-Q8_0"].files) == 3


def test_an_interrupted_pull_resumes_where_it_stopped(
    hub: FakeHub, sources: dict[str, Path], tmp_path: Path
) -> None:
    hub.stall_after[Q4] = 300_000  # the Hub stops sending mid-file
    env = cli_env(hub, tmp_path)
    first = subprocess.Popen(
        [sys.executable, "-m", "wlm.cli", "pull", f"{REPO}:Q4_K_M"],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    folder = tmp_path / "models" / REPO

    def partial_size() -> int:
        parts = list(folder.glob(f".{Q4}.*.part")) if folder.is_dir() else []
        return parts[0].stat().st_size if parts else 0

    deadline = time.monotonic() + 30
    while partial_size() < 200_000:  # whole 64 KiB chunks written, the rest held back
        assert time.monotonic() < deadline, "the pull wrote nothing"
        time.sleep(0.05)  # polling the partial file with a deadline
    first.send_signal(signal.SIGINT)  # Ctrl-C
    _, stderr = first.communicate(timeout=30)
    assert first.returncode == 130, stderr
    assert "run the same command again to resume" in stderr
    kept = partial_size()
    assert 0 < kept < sources[Q4].stat().st_size
    assert not (folder / Q4).exists()  # a partial file is never listed as a model

    hub.stall_after.clear()
    again = pull(env, f"{REPO}:Q4_K_M", tmp_path)

    assert again.returncode == 0, again.stderr
    assert hub.ranges(Q4) == [None, f"bytes={kept}-"]  # the second run fetched only the rest
    assert "resumed from an earlier pull" in again.stderr
    assert sha256(folder / Q4) == sha256(sources[Q4])
    assert sorted(p.name for p in folder.iterdir()) == [Q4]


def test_a_dropped_connection_is_resumed_within_the_same_pull(
    hub: FakeHub, sources: dict[str, Path], tmp_path: Path
) -> None:
    hub.drop_after[Q4] = 200_000  # once: the Hub closes the connection mid-file

    done = pull(cli_env(hub, tmp_path), f"{REPO}/{Q4}", tmp_path)

    assert done.returncode == 0, done.stderr
    ranges = hub.ranges(Q4)
    assert ranges[0] is None and len(ranges) == 2 and ranges[1].startswith("bytes=")
    assert sha256(tmp_path / "models" / REPO / Q4) == sha256(sources[Q4])


def test_bytes_that_do_not_match_the_hubs_sha256_are_refused(hub: FakeHub, tmp_path: Path) -> None:
    hub.tamper.add(Q4)  # the right size, one byte changed

    done = pull(cli_env(hub, tmp_path), f"{REPO}:Q4_K_M", tmp_path)

    assert done.returncode == 1
    assert "sha256" in done.stderr and "the download was deleted, pull again" in done.stderr
    folder = tmp_path / "models" / REPO
    assert list(folder.iterdir()) == []  # neither the model nor its partial file


@pytest.mark.parametrize(
    ("ref", "token", "expected"),
    [
        (GATED, None, f"{GATED} is gated: accept its conditions at "),
        (GATED, "hf_not_the_right_one_123456", "HF_TOKEN's account has no access to it yet"),
        ("wlm-test/Nope-GGUF", None, "There is no model repo wlm-test/Nope-GGUF on "),
        (f"{REPO}:Q2_K", None, f"{REPO} has no Q2_K quantization; it has: Q4_K_M, Q8_0"),
        ("wlm-test/Not-A-GGUF", None, "wlm-test/Not-A-GGUF has no GGUF model files"),
    ],
)
def test_gated_missing_and_unknown_quants_say_what_to_do(
    hub: FakeHub, tmp_path: Path, ref: str, token: str | None, expected: str
) -> None:
    env = cli_env(hub, tmp_path, **({"HF_TOKEN": token} if token else {}))

    done = pull(env, ref, tmp_path)

    assert done.returncode == 1
    assert expected in done.stderr, done.stderr
    if ref == GATED and token is None:
        assert "set HF_TOKEN to an access token" in done.stderr
    if token:
        assert token not in done.stderr
    assert not any((tmp_path / "models").rglob("*.gguf"))


def test_a_gated_repo_pulls_with_hf_token(hub: FakeHub, tmp_path: Path) -> None:
    done = pull(cli_env(hub, tmp_path, HF_TOKEN=HF_TOKEN), GATED, tmp_path)

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "models" / GATED / Q4).is_file()
    resolves = [r for r in hub.requests if r.path.startswith(f"/{GATED}/resolve/")]
    assert resolves and all(r.headers["authorization"] == f"Bearer {HF_TOKEN}" for r in resolves)
    assert HF_TOKEN not in done.stderr


# ---- through the running server ------------------------------------------------------


@pytest.fixture
def server(hub: FakeHub, tmp_path: Path) -> Iterator[WlmServer]:
    env = {"HF_ENDPOINT": hub.base_url, "HF_TOKEN": HF_TOKEN, "WLM_LOCAL_RESCAN_S": "0", **LIGHT}
    running = WlmServer(env, tmp_path).start()
    yield running
    running.stop()


def wait_for(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)  # polling the API with a deadline
    return value


@pytest.mark.local
def test_the_api_searches_lists_pulls_cancels_and_the_model_answers(
    hub: FakeHub, server: WlmServer, tmp_path: Path
) -> None:
    http = httpx.Client(base_url=server.base_url, timeout=30)
    seen: list[str] = []

    def get(path: str, **params: Any) -> Any:
        response = http.get(path, params=params)
        seen.append(response.text)
        assert response.status_code == 200, response.text
        return response.json()

    # Search: GGUF repos only, most downloaded first.
    found = get("/api/hub/search", q="wlm-test")
    assert [r["id"] for r in found["data"]] == ["wlm-test/Popular-GGUF", REPO, GATED, CLOSED]
    assert {r["id"]: r["gated"] for r in found["data"]}[GATED] is True
    search = next(r for r in hub.requests if r.path == "/api/models")
    assert "filter=gguf" in search.query and "sort=downloads" in search.query

    # The repo's files, grouped by quantization, with sizes and the memory hint.
    files = get(f"/api/hub/repos/{REPO}/files")
    by_quant = {m["quant"]: m for m in files["models"]}
    assert set(by_quant) == {"Q4_K_M", "Q8_0"}
    assert by_quant["Q8_0"]["parts"] == 3 and len(by_quant["Q8_0"]["files"]) == 3
    assert by_quant["Q8_0"]["size_bytes"] == sum(f["size_bytes"] for f in by_quant["Q8_0"]["files"])
    assert by_quant["Q4_K_M"]["fit"] == "fits" and by_quant["Q4_K_M"]["on_disk"] is False
    assert files["memory"]["total_bytes"] > 0

    # A slow pull, cancelled part way: it stops and leaves nothing behind.
    hub.throttle_bps = 150_000
    started = http.post("/api/models/pull", json={"repo": REPO, "quant": "Q8_0"})
    assert started.status_code == 202, started.text
    pull_id = started.json()["id"]
    moving = wait_for(lambda: (v := get(f"/api/models/pulls/{pull_id}"))["bytes_done"] > 0 and v)
    assert moving["state"] == "downloading" and moving["bytes_total"] > moving["bytes_done"]
    again = http.post("/api/models/pull", json={"model": f"{REPO}:Q8_0"})
    assert again.status_code == 200 and again.json()["id"] == pull_id  # the same pull
    cancelled = http.delete(f"/api/models/pulls/{pull_id}")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    folder = tmp_path / "models" / REPO
    assert list(folder.glob(".*")) == [] and list(folder.glob("*.gguf")) == []

    # A whole pull: its progress is readable while it runs, then the model is listed
    # and answers a chat, without a restart (and with no background rescan).
    hub.throttle_bps = 400_000
    started = http.post("/api/models/pull", json={"model": f"{REPO}:Q4_K_M"})
    assert started.status_code == 202, started.text
    pull_id = started.json()["id"]
    views = []

    def finished() -> bool:
        view = get(f"/api/models/pulls/{pull_id}")
        views.append(view)
        return view["state"] not in ("queued", "downloading")

    wait_for(finished)
    assert views[-1]["state"] == "done", views[-1]
    assert any(0 < (v["percent"] or 0) < 100 and v["speed_bps"] > 0 for v in views), views
    listed = get("/api/models/pulls")["data"]
    assert [p["state"] for p in listed] == ["done", "cancelled"]
    model = f"{REPO}/Tiny-Q4_K_M"
    assert model in {m["id"] for m in get("/v1/models")["data"]}
    reply = http.post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["completion_tokens"] == 3

    # Errors the API answers at once.
    missing = http.post("/api/models/pull", json={"model": "wlm-test/Nope-GGUF"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "repo_not_found"
    no_quant = http.post("/api/models/pull", json={"model": f"{REPO}:Q2_K"})
    assert no_quant.status_code == 404
    assert "it has: Q4_K_M, Q8_0" in no_quant.json()["error"]["message"]
    bad = http.post("/api/models/pull", json={"model": "not a repo"})
    assert bad.status_code == 400
    assert http.delete("/api/models/pulls/pull_nope").status_code == 404

    # A gated repo with HF_TOKEN pulls; one whose conditions this account has not been
    # granted fails with what to do. The token is sent to the Hub and nowhere else.
    hub.throttle_bps = None
    gated = http.post("/api/models/pull", json={"model": GATED}).json()
    closed = http.post("/api/models/pull", json={"model": CLOSED}).json()
    views = [
        wait_for(
            lambda i=i: (v := get(f"/api/models/pulls/{i}"))["state"] in ("done", "failed") and v
        )
        for i in (gated["id"], closed["id"])
    ]
    assert views[0]["state"] == "done"
    assert views[1]["state"] == "failed" and views[1]["error_code"] == "gated_repo"
    assert "has no access to it yet: request access at" in views[1]["error"]
    resolves = [r for r in hub.requests if "/resolve/" in r.path]
    assert any(r.headers.get("authorization") == f"Bearer {HF_TOKEN}" for r in resolves)

    pages = [http.get(p).text for p in ("/models", "/settings", "/settings.json", "/models.json")]
    pages.append(http.get("/models/hub/pulls").text)
    pages.append(http.get("/models/hub/files", params={"repo": GATED}).text)
    http.close()
    log = server.log()
    for text in [*seen, *pages, log]:
        assert HF_TOKEN not in text
    assert "pulled wlm-test/Tiny-GGUF:Q4_K_M" in log


@pytest.mark.local
def test_stopping_the_server_interrupts_a_pull_and_the_next_one_resumes(
    hub: FakeHub, sources: dict[str, Path], tmp_path: Path
) -> None:
    env = {"HF_ENDPOINT": hub.base_url, "WLM_LOCAL_RESCAN_S": "0", **LIGHT}
    hub.stall_after[Q4] = 300_000
    first = WlmServer(env, tmp_path).start()
    folder = tmp_path / "models" / REPO
    try:
        http = httpx.Client(base_url=first.base_url, timeout=30)
        assert http.post("/api/models/pull", json={"model": REPO}).status_code == 202
        wait_for(lambda: [p for p in folder.glob(".*.part") if p.stat().st_size > 0])
    finally:
        started = time.monotonic()
        assert first.stop() is not None
    assert time.monotonic() - started < 15  # the stalled download did not hold the server
    kept = [p.stat().st_size for p in folder.glob(f".{Q4}.*.part")]
    assert len(kept) == 1 and 0 < kept[0] < sources[Q4].stat().st_size
    assert "pull wlm-test/Tiny-GGUF failed" not in first.log()

    hub.stall_after.clear()
    second = WlmServer(env, tmp_path).start()
    try:
        http = httpx.Client(base_url=second.base_url, timeout=30)
        pull_id = http.post("/api/models/pull", json={"model": REPO}).json()["id"]
        view = wait_for(
            lambda: (v := http.get(f"/api/models/pulls/{pull_id}").json())["state"] == "done" and v
        )
    finally:
        second.stop()
    assert view["resumed_bytes"] == kept[0]
    assert hub.ranges(Q4)[-1] == f"bytes={kept[0]}-"
    assert sha256(folder / Q4) == sha256(sources[Q4])
