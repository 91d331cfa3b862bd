"""Engine command lines: llama-server and the embedded launcher get the same flags."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wlm.local.engines import (
    EngineNotFound,
    EngineSpec,
    embedded_command,
    engine_command,
    find_llama_server,
    llama_server_args,
)
from wlm.local.launcher import _parser
from wlm.local.options import EngineOptions

SPEC = EngineSpec(
    model_id="sub/qwen",
    model_path=Path("/models/sub/qwen.gguf"),
    options=EngineOptions(ctx_size=8192, threads=2, parallel=3, extra_args=("--top-k", "5")),
)


def test_llama_server_flags() -> None:
    args = llama_server_args(SPEC, 4321)

    assert args == [
        "-m", "/models/sub/qwen.gguf", "--host", "127.0.0.1", "--port", "4321",
        "-c", "8192", "-t", "2", "-np", "3", "--jinja", "--metrics",
        "--alias", "sub/qwen", "--top-k", "5",
    ]  # fmt: skip


def test_no_threads_setting_leaves_the_engine_default() -> None:
    spec = EngineSpec("m", Path("/m.gguf"), EngineOptions(threads=None))
    assert "-t" not in llama_server_args(spec, 1)


def test_embeddings_and_projector_flags() -> None:
    options = EngineOptions(embeddings=True, pooling="cls")
    spec = EngineSpec("m", Path("/m.gguf"), options, projector=Path("/mmproj.gguf"))

    args = llama_server_args(spec, 1)

    assert args[-5:] == ["--embeddings", "--pooling", "cls", "--mmproj", "/mmproj.gguf"]


def test_projector_can_be_switched_off() -> None:
    spec = EngineSpec("m", Path("/m.gguf"), EngineOptions(projector=False), Path("/p.gguf"))
    assert "--mmproj" not in llama_server_args(spec, 1)


def test_embedded_command_runs_the_launcher_on_port_zero() -> None:
    command = embedded_command(SPEC, python="/usr/bin/python3")

    assert command.kind == "embedded"
    assert command.argv[:3] == ("/usr/bin/python3", "-m", "wlm.local.launcher")
    assert command.port == 0
    pythonpath = dict(command.env)["PYTHONPATH"].split(os.pathsep)
    assert (Path(pythonpath[0]) / "wlm" / "local" / "launcher.py").is_file()


def test_launcher_understands_every_flag_wlm_passes() -> None:
    options = EngineOptions(embeddings=True, pooling="mean", threads=1)
    spec = EngineSpec("m", Path("/m.gguf"), options, projector=Path("/p.gguf"))

    args, unknown = _parser().parse_known_args(llama_server_args(spec, 0))

    assert unknown == []
    assert (args.model, args.port, args.threads, args.mmproj) == ("/m.gguf", 0, 1, "/p.gguf")


def test_configured_llama_server_must_exist(tmp_path: Path) -> None:
    with pytest.raises(EngineNotFound, match="WLM_LLAMA_SERVER"):
        find_llama_server(str(tmp_path / "llama-server"))


def test_configured_llama_server_gets_a_free_port(tmp_path: Path) -> None:
    binary = tmp_path / "llama-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)

    command = engine_command(str(binary), SPEC)

    assert command.kind == "llama-server"
    assert command.argv[0] == str(binary)
    assert command.port > 0
    assert command.argv[command.argv.index("--port") + 1] == str(command.port)


def test_reranking_starts_a_reranker_whatever_the_embeddings_options() -> None:
    options = EngineOptions(reranking=True, embeddings=True, pooling="mean", threads=1)
    args = llama_server_args(EngineSpec("m", Path("/m.gguf"), options), 0)

    # llama-server's --reranking is embeddings with pooling rank; a --pooling would undo it.
    assert "--reranking" in args
    assert "--embeddings" not in args
    assert "--pooling" not in args
    parsed, unknown = _parser().parse_known_args(args)
    assert unknown == []
    assert parsed.reranking is True
