"""The embedded engine's child process: ``python -m wlm.local.launcher <llama-server flags>``.

xllamacpp embeds llama.cpp's own HTTP server but has no command line, so wlm runs
it here, in a separate process, so a crash or a stop never touches the gateway. The
launcher accepts llama-server's flags (the subset below), loads the model, prints one
JSON line ``{"address": "http://127.0.0.1:PORT", "pid": N}`` on stdout once the server
listens, and stops on SIGTERM or SIGINT. A start failure exits with status 1; the
engine's reason is on stderr (llama.cpp logs there).

Only the standard library and xllamacpp are imported, to keep the start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

_LOG_DRAIN_S = 0.2  # see main(): llama.cpp's log thread, on a failed start
_FLASH_ATTN = {"on": "ENABLED", "off": "DISABLED", "auto": "AUTO"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wlm.local.launcher",
        description="Serve one GGUF model with the embedded llama.cpp server (xllamacpp).",
        add_help=True,
        allow_abbrev=False,
    )
    parser.add_argument("-m", "--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("-c", "--ctx-size", type=int, default=4096)
    parser.add_argument("-t", "--threads", type=int)
    parser.add_argument("-tb", "--threads-batch", type=int)
    parser.add_argument("-np", "--parallel", type=int, default=1)
    parser.add_argument("-b", "--batch-size", type=int)
    parser.add_argument("-ub", "--ubatch-size", type=int)
    parser.add_argument("-fa", "--flash-attn", choices=sorted(_FLASH_ATTN))
    parser.add_argument("-ctk", "--cache-type-k")
    parser.add_argument("-ctv", "--cache-type-v")
    parser.add_argument("-a", "--alias")
    parser.add_argument("--mmproj")
    parser.add_argument("--embeddings", "--embedding", action="store_true")
    parser.add_argument("--pooling", choices=["none", "mean", "cls", "last", "rank"])
    parser.add_argument("--reranking", "--rerank", action="store_true")
    parser.add_argument("--jinja", action="store_true")
    parser.add_argument("--metrics", action="store_true")
    parser.add_argument("-sps", "--slot-prompt-similarity", type=float)
    parser.add_argument("-cram", "--cache-ram", type=int)
    return parser


def _params(args: argparse.Namespace) -> Any:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.ctx_size
    params.n_parallel = args.parallel
    if args.threads is not None:
        params.cpuparams.n_threads = args.threads
        params.cpuparams_batch.n_threads = args.threads
    if args.threads_batch is not None:
        params.cpuparams_batch.n_threads = args.threads_batch
    if args.batch_size is not None:
        params.n_batch = args.batch_size
    if args.ubatch_size is not None:
        params.n_ubatch = args.ubatch_size
    if args.flash_attn is not None:
        params.flash_attn_type = getattr(
            xllamacpp.llama_flash_attn_type, f"LLAMA_FLASH_ATTN_TYPE_{_FLASH_ATTN[args.flash_attn]}"
        )
    for name, value in (("cache_type_k", args.cache_type_k), ("cache_type_v", args.cache_type_v)):
        if value is not None:
            ggml_type = getattr(xllamacpp.ggml_type, f"GGML_TYPE_{value.upper()}", None)
            if ggml_type is None:
                raise ValueError(f"unknown cache type {value!r}")
            setattr(params, name, ggml_type)
    if args.alias:
        params.model_alias = {args.alias}
    if args.mmproj:
        params.mmproj.path = args.mmproj
    if args.slot_prompt_similarity is not None:
        params.slot_prompt_similarity = args.slot_prompt_similarity
    if args.cache_ram is not None:  # MiB of host memory for prompts evicted from slots
        params.cache_ram_mib = args.cache_ram
    params.use_jinja = True
    params.endpoint_metrics = args.metrics
    if args.reranking:  # as llama-server: an embedding model pooled by its rank head
        params.embedding = True
        params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_RANK
    elif args.embeddings:
        params.embedding = True
        pooling = (args.pooling or "mean").upper()
        params.pooling_type = getattr(xllamacpp.llama_pooling_type, f"LLAMA_POOLING_TYPE_{pooling}")
    return params


def main(argv: list[str] | None = None) -> int:
    """Parse llama-server flags, serve until SIGTERM/SIGINT; 0 on a clean stop, 1 on failure."""
    args, unknown = _parser().parse_known_args(argv)
    if unknown:
        print(
            "wlm launcher: the embedded engine does not support "
            f"{' '.join(unknown)}; set WLM_LLAMA_SERVER to run llama-server instead",
            file=sys.stderr,
        )
        return 2
    # Block the stop signals before the server's threads exist, so they inherit the
    # mask and the main thread alone receives them through sigwait.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        import xllamacpp

        server = xllamacpp.Server(_params(args))
    except Exception as exc:
        # llama.cpp logs from its own thread; give it a moment to write the specific
        # reason (e.g. "error loading model: ...") before this process exits, or that
        # line is sometimes lost and the user sees only the generic message below.
        # xllamacpp exposes no log flush to wait on instead.
        time.sleep(_LOG_DRAIN_S)
        print(f"wlm launcher: engine failed to start: {exc}", file=sys.stderr, flush=True)
        return 1
    print(json.dumps({"address": server.listening_address, "pid": os.getpid()}), flush=True)
    signal.sigwait(stop_signals)
    del server  # the destructor stops the HTTP server and waits for its loop
    return 0


if __name__ == "__main__":
    sys.exit(main())
