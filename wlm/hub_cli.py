"""``wlm pull <owner/repo>[:<quant>]`` (or ``<owner/repo>/<file>.gguf``): a model from the Hub.

Downloads into ``WLM_MODELS_DIR/<owner>/<repo>/`` with a progress bar on stderr (bytes,
speed, time left), resumes what an interrupted pull left, joins split sets, and checks
the size and sha256 the Hub reports. A running wlm lists the model within
``WLM_LOCAL_RESCAN_S`` (and at once: the command asks it to rescan when it can).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

from wlm.cli_common import add_env_file_option, admin_headers, load_cli_settings, server_address
from wlm.config import ConfigError, Settings

__all__ = ["add_pull_command"]

_TTY_EVERY_S = 0.2
_LOG_EVERY_S = 1.0


def add_pull_command(sub: Any) -> None:
    pull = sub.add_parser(
        "pull",
        help="download a GGUF model from the Hugging Face Hub into WLM_MODELS_DIR",
        description=(
            "Download a GGUF model from the Hugging Face Hub (or HF_ENDPOINT) into "
            "WLM_MODELS_DIR/<owner>/<repo>/. Name a quantization (owner/repo:Q4_K_M; "
            "without one, Q4_K_M, or the repo's only model) or a file "
            "(owner/repo/file.gguf). An interrupted pull resumes where it stopped. "
            "Gated repos need HF_TOKEN."
        ),
    )
    pull.add_argument("model", help="owner/repo, owner/repo:QUANT or owner/repo/file.gguf")
    add_env_file_option(pull)
    pull.set_defaults(func=_pull)


class _Bar:
    """Redraws one line on a terminal; elsewhere prints a line every second (and the last)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self._shown = 0.0
        self._width = 0

    def show(self, line: str, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._shown < (_TTY_EVERY_S if self.tty else _LOG_EVERY_S):
            return
        self._shown = now
        text = f"{self.label} {line}"
        if self.tty:
            pad = max(0, self._width - len(text))
            sys.stderr.write("\r" + text + " " * pad + ("\n" if final else ""))
            self._width = len(text)
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


def _pull(args: argparse.Namespace) -> int:
    # huggingface_hub loads here, not at the top: the other commands never need it.
    from wlm.hub import HubClient, HubError, Progress, RefError, format_bar, parse_ref, pull_model
    from wlm.hub.progress import format_bytes

    settings = load_cli_settings(args)
    try:
        ref = parse_ref(args.model)
    except RefError as exc:
        print(f"wlm pull: {exc}", file=sys.stderr)
        return 2
    client = HubClient(settings)
    models_dir = settings.models_path
    try:
        listing, model = client.plan(ref)
    except HubError as exc:
        print(f"wlm pull: {exc.message}", file=sys.stderr)
        return 1
    size = format_bytes(model.size) if model.size is not None else "size unknown"
    parts = f"{len(model.files)} files, " if len(model.files) > 1 else ""
    print(
        f"wlm pull: {listing.repo}:{model.label} -> {models_dir / listing.repo}/ ({parts}{size})",
        file=sys.stderr,
    )
    progress = Progress()
    bar = _Bar(model.name)
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["pulled"] = pull_model(client, listing, model, models_dir, progress)
        except BaseException as exc:
            outcome["error"] = exc

    # The download runs in a daemon thread so Ctrl-C reaches this one at once; what it
    # wrote so far stays in the hidden part file for the next pull to resume.
    worker = threading.Thread(target=work, name="wlm-pull", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
            bar.show(format_bar(progress.snapshot()))
    except KeyboardInterrupt:
        done = format_bytes(progress.snapshot().bytes_done)
        print(
            f"\nwlm pull: interrupted after {done}; run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    error = outcome.get("error")
    if error is not None:
        if isinstance(error, HubError):
            print(f"\nwlm pull: {error.message}", file=sys.stderr)
            return 1
        raise error
    snapshot = progress.snapshot()
    bar.show(format_bar(snapshot), final=True)
    pulled = outcome["pulled"]
    resumed = (
        f", {format_bytes(pulled.resumed_bytes)} of it resumed from an earlier pull"
        if pulled.resumed_bytes
        else ""
    )
    print(
        f"wlm pull: {pulled.model_id} is ready ({format_bytes(pulled.size_bytes)}{resumed}; "
        "size and sha256 verified)\n"
        f'  chat: curl http://{settings.host}:{settings.port}/v1/chat/completions -d \'{{"model": '
        f'"{pulled.model_id}", "messages": [{{"role": "user", "content": "hi"}}]}}\'',
        file=sys.stderr,
    )
    _tell_server(settings, args)
    return 0


def _tell_server(settings: Settings, args: argparse.Namespace) -> None:
    """Ask a running wlm to rescan now, so the model is routable before its next scan."""
    import httpx

    server = server_address(settings, args)
    if not server.listening():
        return
    try:
        headers = admin_headers(settings, server)
        httpx.post(f"{server.url}/api/models/rescan", headers=headers, timeout=5)
    except (httpx.HTTPError, ConfigError):
        pass  # its background rescan lists the model within WLM_LOCAL_RESCAN_S
