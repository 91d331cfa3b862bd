"""Pull references, quantization tags and split sets, as the Hub's GGUF repos name them."""

from __future__ import annotations

import pytest

from wlm.hub.fit import Memory, fit_hint
from wlm.hub.quants import (
    HubFile,
    PullRef,
    RefError,
    group_gguf_files,
    parse_ref,
    quant_of,
    select_model,
)


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("bartowski/Qwen2.5-7B-Instruct-GGUF", PullRef("bartowski/Qwen2.5-7B-Instruct-GGUF")),
        ("owner/repo:Q4_K_M", PullRef("owner/repo", quant="Q4_K_M")),
        ("hf.co/owner/repo:q8_0", PullRef("owner/repo", quant="q8_0")),
        ("https://huggingface.co/owner/repo", PullRef("owner/repo")),
        ("owner/repo/model-Q4_K_M.gguf", PullRef("owner/repo", file="model-Q4_K_M.gguf")),
        (
            "owner/repo/Q8_0/m-00001-of-00002.gguf",
            PullRef("owner/repo", file="Q8_0/m-00001-of-00002.gguf"),
        ),
    ],
)
def test_parse_ref_reads_repo_quant_and_file(text: str, ref: PullRef) -> None:
    assert parse_ref(text) == ref


@pytest.mark.parametrize(
    "text",
    ["qwen", "owner/", "/repo", "owner/repo:", "owner/repo/README.md", "a/b/../c.gguf", "a--b/c"],
)
def test_parse_ref_refuses_what_names_no_model(text: str) -> None:
    with pytest.raises(RefError):
        parse_ref(text)


@pytest.mark.parametrize(
    ("name", "quant"),
    [
        ("Qwen2.5-7B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("qwen2.5-0.5b-instruct-q4_k_m.gguf", "Q4_K_M"),
        ("llama-2-7b.Q5_K_S.gguf", "Q5_K_S"),
        ("Model-IQ2_XXS.gguf", "IQ2_XXS"),
        ("Model-Q4_0_4_4.gguf", "Q4_0_4_4"),
        ("Model-UD-Q4_K_XL-00001-of-00003.gguf", "UD-Q4_K_XL"),
        ("Model-f16.gguf", "F16"),
        ("Model-BF16.gguf", "BF16"),
        ("gpt-oss-20b-MXFP4.gguf", "MXFP4"),
        ("tiny.gguf", None),
        ("Qwen2.5-7B.gguf", None),
    ],
)
def test_quant_of_reads_the_tag_at_the_end(name: str, quant: str | None) -> None:
    assert quant_of(name) == quant


FILES = [
    HubFile("README.md", 10),
    HubFile("M-Q4_K_M.gguf", 400),
    HubFile("M-Q2_K.gguf", 200),
    HubFile("Q8_0/M-Q8_0-00002-of-00002.gguf", 350),
    HubFile("Q8_0/M-Q8_0-00001-of-00002.gguf", 450),
    HubFile("mmproj-M-f16.gguf", 90),
]


def test_a_split_set_is_one_model_and_projectors_are_apart() -> None:
    models, projectors = group_gguf_files(FILES)

    assert [(m.label, m.size, m.parts) for m in models] == [
        ("Q2_K", 200, 1),
        ("Q4_K_M", 400, 1),
        ("Q8_0", 800, 2),
    ]
    q8 = models[2]
    assert [f.path for f in q8.files] == [
        "Q8_0/M-Q8_0-00001-of-00002.gguf",
        "Q8_0/M-Q8_0-00002-of-00002.gguf",
    ]
    assert q8.complete and q8.name == "M-Q8_0"
    assert [p.path for p in projectors] == ["mmproj-M-f16.gguf"]


def test_select_by_quant_file_or_default_and_list_the_choices() -> None:
    models, _ = group_gguf_files(FILES)

    assert select_model(models, PullRef("o/r", quant="q8_0")).label == "Q8_0"
    assert select_model(models, PullRef("o/r")).label == "Q4_K_M"  # the default
    assert select_model(models, PullRef("o/r", file="M-Q2_K.gguf")).label == "Q2_K"
    with pytest.raises(RefError) as missing:
        select_model(models, PullRef("o/r", quant="Q6_K"))
    assert "no Q6_K quantization; it has: Q2_K, Q4_K_M, Q8_0" in str(missing.value)
    assert missing.value.available == ("Q2_K", "Q4_K_M", "Q8_0")


def test_an_incomplete_split_set_on_the_hub_is_not_complete() -> None:
    models, _ = group_gguf_files([HubFile("X-Q8_0-00001-of-00003.gguf", 5)])
    assert models[0].parts == 3 and not models[0].complete


def test_fit_hint_compares_the_file_with_free_and_total_memory() -> None:
    gib = 1024**3
    memory = Memory(total=16 * gib, available=8 * gib)
    assert fit_hint(4 * gib, memory)[0] == "fits"
    assert fit_hint(10 * gib, memory)[0] == "tight"
    assert fit_hint(20 * gib, memory)[0] == "too_big"
    assert fit_hint(None, memory)[0] == "unknown"
