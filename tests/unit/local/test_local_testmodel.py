"""The tiny test model follows the documented recipe and is deterministic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import jinja2
import numpy as np
import pytest

from wlm.local.testmodel import (
    TOOL_CALL_STOP_AFTER,
    TOOL_CALL_TEMPLATE,
    tool_call_text,
    write_tiny_gguf,
)


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
    explicit = write_tiny_gguf(
        tmp_path / "b.gguf", context_length=2048, stop_after=None, tool_call=None
    )

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
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        write_tiny_gguf(tmp_path / "x.gguf", **options)
    assert not (tmp_path / "x.gguf").exists()


BASH_CALL = ("Bash", {"command": "cat marker.txt"})


def test_tool_call_adds_its_chain_of_tokens_and_the_hermes_template(tmp_path: Path) -> None:
    reader = gguf.GGUFReader(write_tiny_gguf(tmp_path / "bash.gguf", tool_call=BASH_CALL))

    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    assert isinstance(tokens, list) and isinstance(types, list)
    call = '\n{"name": "Bash", "arguments": {"command": "cat marker.txt"}}\n'
    assert tool_call_text(*BASH_CALL) == call
    assert tokens[-4:] == ["<|wlm_tool_turn|>", "<tool_call>", call, "</tool_call>"]
    assert types[-4:] == [
        gguf.TokenType.CONTROL,
        gguf.TokenType.USER_DEFINED,
        gguf.TokenType.USER_DEFINED,
        gguf.TokenType.USER_DEFINED,
    ]
    assert reader.fields["tokenizer.chat_template"].contents() == TOOL_CALL_TEMPLATE


def test_tool_call_is_deterministic_and_stops_after_the_default(tmp_path: Path) -> None:
    a = write_tiny_gguf(tmp_path / "a.gguf", tool_call=BASH_CALL).read_bytes()
    b = write_tiny_gguf(
        tmp_path / "b.gguf", tool_call=BASH_CALL, stop_after=TOOL_CALL_STOP_AFTER
    ).read_bytes()
    other = write_tiny_gguf(tmp_path / "c.gguf", tool_call=("Bash", {"command": "ls"}))

    assert a == b != other.read_bytes()


def test_each_token_of_the_call_is_followed_by_the_next_by_a_wide_margin(
    tmp_path: Path,
) -> None:
    """Embedding -> output head (the 2 layers only add a small residual): the turn token,
    `<tool_call>`, the call and `</tool_call>` each make the next one (then `</s>`) the
    most likely token, far ahead of the rest."""
    reader = gguf.GGUFReader(write_tiny_gguf(tmp_path / "bash.gguf", tool_call=BASH_CALL))
    tensors = {t.name: np.array(t.data) for t in reader.tensors}
    embeddings, output = tensors["token_embd.weight"], tensors["output.weight"]
    n_vocab = embeddings.shape[0]
    chain = list(range(n_vocab - 4, n_vocab))

    for token, follower in zip(chain, [*chain[1:], 2], strict=True):
        hidden = embeddings[token] / np.sqrt(np.mean(embeddings[token] ** 2) + 1e-5)
        logits = output @ hidden
        ranked = np.argsort(logits)[::-1]
        assert ranked[0] == follower
        assert logits[ranked[0]] - logits[ranked[1]] > 20


def render(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
    template = jinja2.Environment().from_string(TOOL_CALL_TEMPLATE)
    return template.render(messages=messages, tools=tools, add_generation_prompt=True)


TOOLS = [{"type": "function", "function": {"name": "Bash", "parameters": {}}}]
ASK = {"role": "user", "content": "run it"}
CALLED = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "c1",
            "type": "function",
            "function": {"name": "Bash", "arguments": '{"command": "cat marker.txt"}'},
        }
    ],
}
RESULT = {"role": "tool", "tool_call_id": "c1", "content": "marker"}


@pytest.mark.parametrize(
    ("messages", "tools", "prompt_end"),
    [
        ([ASK], TOOLS, "<|im_start|>assistant\n<|wlm_tool_turn|>"),  # the call
        ([ASK, CALLED, RESULT], TOOLS, "marker<|im_end|>\n<|im_start|>assistant\n"),  # text
        ([ASK], None, "run it<|im_end|>\n<|im_start|>assistant\n"),  # no tools: text
    ],
    ids=["tools", "after-the-result", "no-tools"],
)
def test_the_template_asks_for_the_call_only_while_tools_have_no_result(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, prompt_end: str
) -> None:
    assert render(messages, tools).endswith(prompt_end)


def test_the_template_renders_a_call_as_the_model_emits_it() -> None:
    """What llama.cpp reads the tool-call format from is what the model's tokens spell."""
    prompt = render([ASK, CALLED, RESULT], TOOLS)

    assert "<tool_call>" + tool_call_text(*BASH_CALL) + "</tool_call>" in prompt


@pytest.mark.parametrize(
    "tool_call", [("", {"command": "ls"}), ("Bash", ["ls"])], ids=["no-name", "not-a-mapping"]
)
def test_a_malformed_tool_call_is_refused(tmp_path: Path, tool_call: Any) -> None:
    with pytest.raises(ValueError, match="tool_call must be"):
        write_tiny_gguf(tmp_path / "x.gguf", tool_call=tool_call)
    assert not (tmp_path / "x.gguf").exists()


def test_reranker_is_the_same_weights_as_qwen3_with_a_rank_head(tmp_path: Path) -> None:
    plain = gguf.GGUFReader(write_tiny_gguf(tmp_path / "plain.gguf", seed=3))
    ranker = gguf.GGUFReader(write_tiny_gguf(tmp_path / "ranker.gguf", seed=3, reranker=True))

    def field(key: str) -> object:
        return ranker.fields[key].contents()

    assert field("general.architecture") == "qwen3"
    assert field("qwen3.pooling_type") == int(gguf.PoolingType.RANK)
    assert field("qwen3.classifier.output_labels") == ["yes", "no"]
    assert field("qwen3.embedding_length") == 64
    tensors = {t.name: np.array(t.data) for t in ranker.tensors}
    assert tensors["cls.output.weight"].shape == (2, 64)
    assert tensors["blk.1.attn_q_norm.weight"].shape == (16,)
    for t in plain.tensors:  # the rest is the chat model of the same seed, unchanged
        assert np.array_equal(tensors[t.name], np.array(t.data)), t.name


def test_reranker_does_not_generate() -> None:
    with pytest.raises(ValueError, match="does not generate"):
        write_tiny_gguf(Path("/nonexistent/x.gguf"), reranker=True, stop_after=4)
