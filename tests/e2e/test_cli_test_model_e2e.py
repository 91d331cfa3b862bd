"""`wlm make-test-model`: a tiny model a new user can serve before downloading a real one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wlm.local.discovery import scan_models
from wlm.local.testmodel import write_tiny_gguf

pytestmark = pytest.mark.e2e


def make_test_model(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wlm.cli", "make-test-model", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line(run: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr
    return lines[0]


def test_writes_a_model_that_discovery_lists_as_a_usable_chat_model(tmp_path: Path) -> None:
    run = make_test_model(tmp_path, "models/sub/tiny.gguf")

    assert run.returncode == 0, run.stderr
    assert one_line(run).startswith("wrote models/sub/tiny.gguf (")
    [(model_id, model)] = scan_models(tmp_path / "models").items()
    assert model_id == "sub/tiny"
    assert model.usable, model.broken_reason
    assert model.architecture == "llama" and model.has_chat_template
    assert model.context_length == 2048


def test_split_writes_a_set_discovery_lists_as_one_model(tmp_path: Path) -> None:
    run = make_test_model(tmp_path, "tiny.gguf", "--split", "8", "--seed", "3")

    assert run.returncode == 0, run.stderr
    assert "wrote tiny-00001-of-00003.gguf and 2 more part(s)" in one_line(run)
    [model] = scan_models(tmp_path).values()
    assert model.id == "tiny" and model.usable, model.broken_reason
    assert [f.name for f in model.files] == [f"tiny-0000{i}-of-00003.gguf" for i in (1, 2, 3)]


def test_the_same_seed_writes_the_same_model_and_another_seed_another(tmp_path: Path) -> None:
    for name, seed in [("a", "7"), ("b", "7"), ("c", "8")]:
        assert make_test_model(tmp_path, f"{name}.gguf", "--seed", seed).returncode == 0

    a, b, c = (tmp_path / f"{name}.gguf" for name in "abc")
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def test_an_existing_file_is_kept_unless_force(tmp_path: Path) -> None:
    (tmp_path / "tiny.gguf").write_bytes(b"mine")

    kept = make_test_model(tmp_path, "tiny.gguf")
    forced = make_test_model(tmp_path, "tiny.gguf", "--force")

    assert kept.returncode == 1
    assert one_line(kept) == "wlm make-test-model: tiny.gguf exists; pass --force to overwrite it"
    assert forced.returncode == 0, forced.stderr
    assert scan_models(tmp_path)["tiny"].usable


def test_a_path_discovery_would_not_list_is_refused(tmp_path: Path) -> None:
    run = make_test_model(tmp_path, "tiny.bin")

    assert run.returncode == 1
    assert one_line(run) == (
        "wlm make-test-model: tiny.bin does not end in .gguf, so wlm would not list it"
    )
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_a_whole_split_set(tmp_path: Path) -> None:
    assert make_test_model(tmp_path, "tiny.gguf", "--split", "8").returncode == 0

    run = make_test_model(tmp_path, "tiny.gguf", "--split", "12", "--force")

    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "tiny-00001-of-00002.gguf",
        "tiny-00002-of-00002.gguf",
    ]
    assert scan_models(tmp_path)["tiny"].usable


def test_tool_call_writes_the_model_that_calls_it(tmp_path: Path) -> None:
    run = make_test_model(tmp_path, "bash.gguf", "--tool-call", "Bash", '{"command": "ls"}')

    assert run.returncode == 0, run.stderr
    assert one_line(run).endswith(
        "whose replies are gibberish and end after 8 tokens, or call Bash while a request "
        "offers tools and has no tool result; wlm lists it when it is under WLM_MODELS_DIR"
    )
    written = write_tiny_gguf(tmp_path / "same.gguf", tool_call=("Bash", {"command": "ls"}))
    assert (tmp_path / "bash.gguf").read_bytes() == written.read_bytes()
    assert scan_models(tmp_path)["bash"].usable


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ('{"command"', "--tool-call's arguments are not JSON (Expecting ':' delimiter"),
        ('["ls"]', "--tool-call takes a tool name and its arguments as a JSON object"),
    ],
)
def test_tool_call_arguments_must_be_a_json_object(
    tmp_path: Path, arguments: str, problem: str
) -> None:
    run = make_test_model(tmp_path, "bash.gguf", "--tool-call", "Bash", arguments)

    assert run.returncode == 1
    assert one_line(run).startswith(f"wlm make-test-model: {problem}")
    assert list(tmp_path.iterdir()) == []


def test_reranker_writes_the_model_for_rerank(tmp_path: Path) -> None:
    run = make_test_model(tmp_path, "ranker.gguf", "--reranker")

    assert run.returncode == 0, run.stderr
    assert one_line(run).endswith(
        "for /v1/rerank (set reranking = true for it in WLM_LOCAL_OPTIONS); "
        "wlm lists it when it is under WLM_MODELS_DIR"
    )
    written = write_tiny_gguf(tmp_path / "same.gguf", reranker=True)
    assert (tmp_path / "ranker.gguf").read_bytes() == written.read_bytes()
    ranker = scan_models(tmp_path)["ranker"]
    assert ranker.usable and ranker.architecture == "qwen3"
    refused = make_test_model(tmp_path, "other.gguf", "--reranker", "--stop-after", "4")
    assert refused.returncode == 1
    assert "--reranker does not generate" in one_line(refused)
