"""The tiny test model follows the documented recipe and is deterministic."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from wlm.local.testmodel import write_tiny_gguf


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path: Path) -> None:
    a = write_tiny_gguf(tmp_path / "a.gguf", seed=7).read_bytes()
    b = write_tiny_gguf(tmp_path / "b.gguf", seed=7).read_bytes()
    c = write_tiny_gguf(tmp_path / "c.gguf", seed=8).read_bytes()

    assert a == b
    assert len(a) == len(c)
    assert a != c


def test_recipe(tmp_path: Path) -> None:
    reader = gguf.GGUFReader(write_tiny_gguf(tmp_path / "tiny.gguf"))

    def field(key: str) -> object:
        return reader.fields[key].contents()

    assert field("general.architecture") == "llama"
    assert field("llama.block_count") == 2
    assert field("llama.embedding_length") == 64
    assert field("llama.attention.head_count") == 4
    assert field("llama.attention.head_count_kv") == 2
    assert field("llama.feed_forward_length") == 128
    assert field("llama.context_length") == 2048
    assert field("tokenizer.ggml.model") == "llama"
    tokens = field("tokenizer.ggml.tokens")
    assert isinstance(tokens, list)
    assert tokens[:5] == ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    assert tokens[5:261] == [f"<0x{b:02X}>" for b in range(256)]
    assert 300 <= len(tokens) - 261 <= 800
    assert "<|im_start|>" in str(field("tokenizer.chat_template"))
    assert {t.tensor_type for t in reader.tensors} == {gguf.GGMLQuantizationType.F32}


def test_default_options_keep_the_default_model(tmp_path: Path) -> None:
    default = write_tiny_gguf(tmp_path / "a.gguf").read_bytes()
    explicit = write_tiny_gguf(tmp_path / "b.gguf", context_length=2048, stop_after=None)

    assert explicit.read_bytes() == default


def test_context_length_is_the_trained_context(tmp_path: Path) -> None:
    reader = gguf.GGUFReader(write_tiny_gguf(tmp_path / "long.gguf", context_length=65536))

    assert reader.fields["llama.context_length"].contents() == 65536


def test_stop_after_changes_only_the_embeddings_and_output_head(tmp_path: Path) -> None:
    plain = gguf.GGUFReader(write_tiny_gguf(tmp_path / "plain.gguf"))
    stops = gguf.GGUFReader(write_tiny_gguf(tmp_path / "stops.gguf", stop_after=8))

    changed = {
        a.name
        for a, b in zip(plain.tensors, stops.tensors, strict=True)
        if (a.data != b.data).any()
    }
    assert changed == {"token_embd.weight", "output.weight"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"stop_after": 0}, "stop_after must be 1 to 32"),
        ({"stop_after": 33}, "stop_after must be 1 to 32"),
        ({"context_length": 0}, "context_length must be at least 1"),
    ],
)
def test_out_of_range_options_are_refused(
    tmp_path: Path, options: dict[str, int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        write_tiny_gguf(tmp_path / "x.gguf", **options)
    assert not (tmp_path / "x.gguf").exists()
