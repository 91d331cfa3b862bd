"""Per-model engine options: global defaults from Settings, overrides from a TOML file.

The file (``WLM_LOCAL_OPTIONS``) looks like this; every key is optional::

    [defaults]                      # applies to every local model
    threads = 4

    [models."qwen2.5-7b-instruct-q4_k_m"]
    ctx_size = 32768
    parallel = 2
    extra_args = ["--flash-attn", "on"]

    [models."embed/*"]              # a shell glob over model ids
    embeddings = true
    pooling = "mean"

    [models."rerank/*"]
    reranking = true                # serve /v1/rerank (pooling rank)

An exact id wins over globs; globs are tried in file order. Unknown keys and wrong
types are errors that name the table and the key.
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from attrs import frozen

from wlm.config import Settings

__all__ = [
    "POOLING_TYPES",
    "EngineOptions",
    "OptionsError",
    "OptionsTable",
    "load_options",
    "parse_options",
]

POOLING_TYPES = ("none", "mean", "cls", "last", "rank")
_SCALAR = (bool, int, float, str)


class OptionsError(ValueError):
    """The per-model options file is missing, not TOML, or has a bad key or value."""


@frozen
class EngineOptions:
    """How one model's engine is started.

    ``ctx_size`` is llama.cpp's ``-c`` (the context shared by the parallel slots),
    ``threads`` its ``-t`` (None: the engine's own default), ``parallel`` its ``-np``.
    ``extra_args`` are appended to the engine's command line. ``projector=False``
    skips an attached mmproj file. ``reranking`` starts the engine as a reranker
    (llama-server's ``--reranking``: pooling rank), which ``embeddings`` then cannot change.
    """

    ctx_size: int = 4096
    threads: int | None = None
    parallel: int = 4
    embeddings: bool = False
    pooling: str | None = None
    reranking: bool = False
    projector: bool = True
    extra_args: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineOptions:
        """The global defaults: ``WLM_LOCAL_CTX_SIZE``, ``WLM_LOCAL_THREADS``, ``WLM_LOCAL_PARALLEL``."""
        return cls(
            ctx_size=settings.local_ctx_size,
            threads=settings.local_threads,
            parallel=settings.local_parallel,
        )


@frozen
class OptionsTable:
    """The parsed options file: default overrides and per-model (id or glob) overrides."""

    defaults: tuple[tuple[str, Any], ...] = ()
    models: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()

    def resolve(self, model_id: str, base: EngineOptions) -> EngineOptions:
        """``base`` with the file's defaults, then the best matching model table, applied."""
        options = attrs.evolve(base, **dict(self.defaults))
        overrides = dict(self.models).get(model_id)
        if overrides is None:
            overrides = next(
                (
                    values
                    for pattern, values in self.models
                    if fnmatch.fnmatchcase(model_id, pattern)
                ),
                (),
            )
        return attrs.evolve(options, **dict(overrides))


def _positive_int(where: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionsError(f"{where}: {key} must be a whole number of at least 1, got {value!r}")
    return value


def _check_table(where: str, table: Any) -> tuple[tuple[str, Any], ...]:
    """Validate one table of options; return it as sorted (key, value) pairs."""
    if not isinstance(table, Mapping):
        raise OptionsError(f"{where}: expected a table, got {table!r}")
    checked: dict[str, Any] = {}
    for key, value in table.items():
        if key in ("ctx_size", "parallel") or key == "threads":
            checked[key] = _positive_int(where, key, value)
        elif key in ("embeddings", "projector", "reranking"):
            if not isinstance(value, bool):
                raise OptionsError(f"{where}: {key} must be true or false, got {value!r}")
            checked[key] = value
        elif key == "pooling":
            if value not in POOLING_TYPES:
                choices = ", ".join(POOLING_TYPES)
                raise OptionsError(f"{where}: pooling must be one of {choices}, got {value!r}")
            checked[key] = value
        elif key == "extra_args":
            if not isinstance(value, list) or not all(isinstance(v, _SCALAR) for v in value):
                raise OptionsError(f"{where}: extra_args must be a list of strings, got {value!r}")
            checked[key] = tuple(str(v).lower() if isinstance(v, bool) else str(v) for v in value)
        else:
            known = (
                "ctx_size, threads, parallel, embeddings, pooling, reranking, projector, extra_args"
            )
            raise OptionsError(f"{where}: unknown option {key!r} (known: {known})")
    return tuple(sorted(checked.items()))


def parse_options(text: str, source: str = "options") -> OptionsTable:
    """Parse the TOML text of an options file. Raises :class:`OptionsError`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise OptionsError(f"{source}: not valid TOML: {exc}") from None
    unknown = set(data) - {"defaults", "models"}
    if unknown:
        raise OptionsError(
            f'{source}: unknown table(s) {sorted(unknown)} (use [defaults], [models."id"])'
        )
    defaults = _check_table(f"{source} [defaults]", data.get("defaults", {}))
    models_raw = data.get("models", {})
    if not isinstance(models_raw, Mapping):
        raise OptionsError(f'{source}: [models] must hold tables like [models."id"]')
    models = tuple(
        (pattern, _check_table(f'{source} [models."{pattern}"]', table))
        for pattern, table in models_raw.items()
    )
    return OptionsTable(defaults=defaults, models=models)


def load_options(path: Path | None) -> OptionsTable:
    """Read the options file at ``path``; no path means no overrides. Raises :class:`OptionsError`."""
    if path is None:
        return OptionsTable()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise OptionsError(f"{path}: cannot read the local options file: {exc.strerror}") from None
    return parse_options(text, str(path))
