"""Command lines for the two engines that serve llama.cpp's HTTP API.

- ``llama-server`` (``WLM_LLAMA_SERVER``, else found on ``PATH``) gets a free port
  chosen here; readiness is its ``GET /health`` answering 200.
- Otherwise the embedded engine (xllamacpp) runs as ``python -m wlm.local.launcher``
  with the same flags and ``--port 0``; it prints its listening address on stdout.

Both command lines are built from the same :class:`EngineSpec`, so a model behaves
the same under either engine.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Literal

from attrs import frozen

from wlm.local.options import EngineOptions

__all__ = [
    "EngineCommand",
    "EngineNotFound",
    "EngineSpec",
    "embedded_command",
    "engine_command",
    "find_llama_server",
    "free_port",
    "llama_server_args",
    "llama_server_command",
]

HOST = "127.0.0.1"


class EngineNotFound(Exception):
    """``WLM_LLAMA_SERVER`` names a binary that does not exist or cannot be run."""


@frozen
class EngineSpec:
    """What to serve: one model file with its projector and engine options."""

    model_id: str
    model_path: Path
    options: EngineOptions
    projector: Path | None = None


@frozen
class EngineCommand:
    """A ready-to-run engine: argv, the port it will listen on (0: it reports it), extra env."""

    argv: tuple[str, ...]
    kind: Literal["llama-server", "embedded"]
    port: int
    env: tuple[tuple[str, str], ...] = ()

    @property
    def display(self) -> str:
        """The command line as one string, for logs."""
        return " ".join(self.argv)


def find_llama_server(configured: str | None) -> str | None:
    """The ``llama-server`` to run: ``configured`` (a path or a name on PATH), else PATH.

    Returns None when no binary is configured and none is on PATH (use the embedded
    engine). Raises :class:`EngineNotFound` when ``configured`` cannot be found.
    """
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise EngineNotFound(
                f"WLM_LLAMA_SERVER={configured!r} is not an executable file or a program on PATH"
            )
        return found
    return shutil.which("llama-server")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def llama_server_args(spec: EngineSpec, port: int) -> list[str]:
    """llama-server's flags for ``spec`` (the embedded launcher accepts the same ones)."""
    options = spec.options
    args = ["-m", str(spec.model_path), "--host", HOST, "--port", str(port)]
    args += ["-c", str(options.ctx_size)]
    if options.threads is not None:
        args += ["-t", str(options.threads)]
    args += ["-np", str(options.parallel), "--jinja", "--metrics", "--alias", spec.model_id]
    if options.reranking:
        args.append("--reranking")  # embeddings with pooling rank: --pooling would undo it
    elif options.embeddings:
        args.append("--embeddings")
        if options.pooling:
            args += ["--pooling", options.pooling]
    if spec.projector is not None and options.projector:
        args += ["--mmproj", str(spec.projector)]
    args += list(options.extra_args)
    return args


def llama_server_command(binary: str, spec: EngineSpec, port: int) -> EngineCommand:
    """Run ``binary`` (a llama-server) for ``spec`` on ``port``."""
    return EngineCommand(
        argv=(binary, *llama_server_args(spec, port)), kind="llama-server", port=port
    )


def embedded_command(spec: EngineSpec, python: str = sys.executable) -> EngineCommand:
    """Run the embedded engine for ``spec`` in a child Python; it picks its own port."""
    # The child must import this very wlm package even when it is not installed.
    package_root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    pythonpath = package_root if not path else f"{package_root}{os.pathsep}{path}"
    return EngineCommand(
        argv=(python, "-m", "wlm.local.launcher", *llama_server_args(spec, 0)),
        kind="embedded",
        port=0,
        env=(("PYTHONPATH", pythonpath), ("PYTHONUNBUFFERED", "1")),
    )


def engine_command(llama_server: str | None, spec: EngineSpec) -> EngineCommand:
    """The command for ``spec``: llama-server when configured or on PATH, else embedded.

    Raises :class:`EngineNotFound` when ``llama_server`` is set but missing.
    """
    binary = find_llama_server(llama_server)
    if binary is None:
        return embedded_command(spec)
    return llama_server_command(binary, spec, free_port())
