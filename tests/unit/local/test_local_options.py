"""Per-model engine options: Settings defaults, then [defaults], then the model's table."""

from __future__ import annotations

from pathlib import Path

import pytest

from wlm.config import Settings
from wlm.local.options import EngineOptions, OptionsError, load_options, parse_options

BASE = EngineOptions.from_settings(Settings(local_threads=2, local_ctx_size=4096, local_parallel=4))

FILE = """
[defaults]
threads = 3

[models."qwen/qwen2.5-7b"]
ctx_size = 32768
parallel = 2
extra_args = ["--flash-attn", "on"]

[models."embed/*"]
embeddings = true
pooling = "mean"

[models."embed/special"]
ctx_size = 512
"""


def test_settings_give_the_global_defaults() -> None:
    assert EngineOptions(ctx_size=4096, threads=2, parallel=4) == BASE


def test_exact_table_overrides_defaults_and_settings() -> None:
    options = parse_options(FILE).resolve("qwen/qwen2.5-7b", BASE)

    assert options == EngineOptions(
        ctx_size=32768, threads=3, parallel=2, extra_args=("--flash-attn", "on")
    )


def test_glob_table_applies_and_exact_id_wins_over_it() -> None:
    table = parse_options(FILE)

    assert table.resolve("embed/nomic", BASE).embeddings is True
    assert table.resolve("embed/nomic", BASE).pooling == "mean"
    special = table.resolve("embed/special", BASE)
    assert special.ctx_size == 512
    assert special.embeddings is False  # the exact table replaces the glob, it does not merge


def test_unlisted_model_gets_only_the_defaults() -> None:
    assert parse_options(FILE).resolve("other", BASE) == EngineOptions(
        ctx_size=4096, threads=3, parallel=4
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[models."a"]\nctx = 5', "unknown option 'ctx'"),
        ('[models."a"]\nparallel = 0', "parallel must be a whole number of at least 1"),
        ('[models."a"]\nthreads = "4"', "threads must be a whole number"),
        ('[models."a"]\nembeddings = "yes"', "embeddings must be true or false"),
        ('[models."a"]\npooling = "max"', "pooling must be one of"),
        ('[models."a"]\nextra_args = "--foo"', "extra_args must be a list"),
        ("[model.a]\nctx_size = 1", "unknown table"),
        ("ctx_size = ", "not valid TOML"),
    ],
)
def test_bad_file_names_the_problem(text: str, message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        parse_options(text, "opts.toml")


def test_error_names_the_model_table() -> None:
    with pytest.raises(OptionsError, match=r'\[models\."a/b"\]'):
        parse_options('[models."a/b"]\nctx_size = -1')


def test_missing_file_is_an_error_and_no_file_means_no_overrides(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="cannot read"):
        load_options(tmp_path / "nope.toml")
    assert load_options(None).resolve("x", BASE) == BASE


def test_reranking_is_a_boolean_option() -> None:
    table = parse_options('[models."rerank/*"]\nreranking = true\n')

    assert table.resolve("rerank/bge", BASE).reranking is True
    assert table.resolve("chat/qwen", BASE).reranking is False
    with pytest.raises(OptionsError, match="reranking must be true or false"):
        parse_options('[models."a"]\nreranking = 1')
