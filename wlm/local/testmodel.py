"""A tiny random-weight GGUF model that llama.cpp loads in well under a second.

For trying wlm out (``wlm make-test-model PATH``, docs/local-models.md), tests and
demos: the replies are gibberish, but every engine serves it through the same HTTP
API as a real model (usage, timings, streaming, chat template).

The recipe: architecture ``llama``, 2 layers, embedding 64,
4 heads / 2 KV heads, feed forward 128, F32, context 2048, an SPM tokenizer with
``<unk> <s> </s> <|im_start|> <|im_end|>``, 256 byte-fallback tokens and a few hundred
word pieces, and a ChatML chat template (which names the request's tools). Byte and
control tokens are pushed far down in the output head so every reply is valid UTF-8
and runs to ``max_tokens``.

Two options change the recipe: ``context_length`` (the trained context llama.cpp caps
``-c`` to; agents send prompts of 10k tokens and more) and ``stop_after`` (replies of
exactly that many tokens that end with ``</s>``, finish reason ``stop``). For the
latter, a few embedding dimensions mark each token's *level*: word pieces get levels
1..N, every other token (the prompt's last, ``\n``) is the start. A word piece at level
``k`` points its output row at level ``k + 1`` (level N at the start) and ``</s>`` at
level 1, so each step moves one level down and ``</s>`` follows level 1, with a margin
no sampler setting overturns; the random weights still choose among a level's pieces.

A third option, ``tool_call=(name, arguments)`` (with ``stop_after``, 8 unless given),
makes a model that calls one tool, once. Four more tokens are chained like the levels,
each one's mark pulling the next one's output row: ``<|wlm_tool_turn|>`` ->
``<tool_call>`` -> the whole call as one token (``{"name": ..., "arguments": ...}``
between two newlines) -> ``</tool_call>`` -> ``</s>``. Its chat template
(``TOOL_CALL_TEMPLATE``) renders calls in the Hermes 2 Pro format llama.cpp parses,
and ends the generation prompt with ``<|wlm_tool_turn|>`` while the request offers
tools and holds no tool result; otherwise the prompt ends as usual and the reply is
``stop_after`` word pieces.

``reranker=True`` writes a reranker instead, for llama.cpp's ``--reranking`` (pooling
rank) and ``/v1/rerank``: the same weights as architecture ``qwen3`` (whose loader reads
a classifier head, ``cls.output``, and whose rank pooling takes the last token's
hidden state through it and a softmax), with the per-head Q/K norms that architecture
needs, two output labels (``yes``, ``no``) and pooling type rank in the metadata. Each
document's score is the softmax's ``yes``: a number in (0, 1), random but fixed for a
seed and a (query, document) pair, whatever the other documents or their order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gguf
import numpy as np

__all__ = [
    "CHATML_TEMPLATE",
    "DEFAULT_CONTEXT_LENGTH",
    "MAX_STOP_AFTER",
    "TOOL_CALL_STOP_AFTER",
    "TOOL_CALL_TEMPLATE",
    "tool_call_text",
    "write_tiny_gguf",
]

# ChatML; a request's tools are named in a system turn of their own (names only, and no
# tool-call syntax, so llama.cpp parses replies as plain text), which lets a test see
# that tool definitions reached the engine: the prompt grows by them.
CHATML_TEMPLATE = (
    "{% if tools %}{{ '<|im_start|>system\\nTools:' }}"
    "{% for tool in tools %}{{ ' ' + tool.function.name }}{% endfor %}"
    "{{ '<|im_end|>\\n' }}{% endif %}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# The tool-calling model's template: ChatML with Hermes 2 Pro tool calls. The tools are
# named, not described (agents' tool schemas would take tens of thousands of this
# tokenizer's tokens); an assistant turn's calls are rendered as
# `<tool_call>\n{"name": ..., "arguments": ...}\n</tool_call>`, which is what llama.cpp's
# template analysis reads the tool-call format from (and what the model emits); tool
# results are turns of role `tool`. The generation prompt ends with `<|wlm_tool_turn|>`
# while there are tools and no tool result yet: the token the model's call follows.
TOOL_TURN = "<|wlm_tool_turn|>"
TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
TOOL_CALL_TEMPLATE = (
    "{%- set ns = namespace(answered=false) -%}"
    "{%- for message in messages -%}"
    "{%- if message.role == 'tool' -%}{%- set ns.answered = true -%}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if tools -%}{{- '<|im_start|>system\\nTools:' -}}"
    "{%- for tool in tools -%}{{- ' ' + tool.function.name -}}{%- endfor -%}"
    "{{- '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message.role == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if message.content -%}{{- message.content -}}{%- endif -%}"
    "{%- for call in message.tool_calls or [] -%}"
    "{%- set fn = call.function if call.function is defined else call -%}"
    '{{- \'<tool_call>\\n{"name": "\' + fn.name + \'", "arguments": \' -}}'
    "{%- if fn.arguments is string -%}{{- fn.arguments -}}"
    "{%- else -%}{{- fn.arguments | tojson -}}{%- endif -%}"
    "{{- '}\\n</tool_call>' -}}"
    "{%- endfor -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message.role + '\\n' -}}"
    "{%- if message.content -%}{{- message.content -}}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}"
    "{%- if tools and not ns.answered -%}{{- '<|wlm_tool_turn|>' -}}{%- endif -%}"
    "{%- endif -%}"
)

_WORDS = [
    "the",
    "model",
    "local",
    "gateway",
    "request",
    "stream",
    "token",
    "answer",
    "llama",
    "server",
    "engine",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "hello",
    "world",
    "python",
    "route",
    "cache",
    "slot",
    "prompt",
    "reply",
    "random",
    "weight",
    "tiny",
    "test",
    "small",
    "large",
    "metric",
    "window",
    "light",
    "water",
    "stone",
    "river",
    "garden",
    "market",
    "little",
    "silver",
    "yellow",
    "orange",
    "purple",
]

_N_EMBD = 64
_N_HEAD = 4
_N_HEAD_KV = 2
_N_FF = 128
_N_LAYER = 2
DEFAULT_CONTEXT_LENGTH = 2048
# One embedding dimension carries a large constant, so after RMS norm it is always
# strongly positive; a negative output weight on that dimension acts as a logit bias.
_BIAS_DIM = 0
_BIAS_VALUE = 8.0
_SUPPRESS = -60.0
_EOS_ID = 2
# stop_after: the level marks (dimensions 1..N+1) and the pull towards the next level.
_LEVEL_MARK = 4.0
_LEVEL_PULL = 12.0
MAX_STOP_AFTER = 32
# tool_call: the marks of the chain's four tokens, past the levels' (1..MAX_STOP_AFTER+1).
_TOOL_DIMS = 2 + MAX_STOP_AFTER
TOOL_CALL_STOP_AFTER = 8


def tool_call_text(name: str, arguments: Mapping[str, Any]) -> str:
    """The tool-calling model's call token: ``\\n{"name": ..., "arguments": ...}\\n``.

    The JSON is spaced as ``json.dumps`` spaces it, which llama.cpp's tool-call grammar
    accepts (``{"name": "Bash", "arguments": {"command": "ls"}}``).
    """
    return "\n" + json.dumps({"name": name, "arguments": dict(arguments)}) + "\n"


def _vocab() -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    types = [
        gguf.TokenType.UNKNOWN,
        gguf.TokenType.CONTROL,
        gguf.TokenType.CONTROL,
        gguf.TokenType.CONTROL,
        gguf.TokenType.CONTROL,
    ]
    scores = [0.0] * len(tokens)
    for byte in range(256):
        tokens.append(f"<0x{byte:02X}>")
        types.append(gguf.TokenType.BYTE)
        scores.append(0.0)
    pieces: set[str] = set()
    for word in _WORDS:
        for end in range(1, len(word) + 1):
            pieces.add(word[:end])
            pieces.add("\u2581" + word[:end])
    # SPM merges the highest score first: longer pieces win.
    for piece in sorted(pieces, key=lambda p: (len(p), p)):
        tokens.append(piece)
        types.append(gguf.TokenType.NORMAL)
        scores.append(float(len(piece)))
    return tokens, scores, [int(t) for t in types]


def _stop_after(embeddings: np.ndarray, output: np.ndarray, types: list[int], n: int) -> None:
    """Rewrite the level dimensions so every reply is ``n`` word pieces, then ``</s>``."""
    start = 1  # dimension 1 marks the start; dimension 1 + k marks level k
    embeddings[:, start : start + n + 1] = 0.0
    output[:, start : start + n + 1] = 0.0
    words = [i for i, t in enumerate(types) if t == gguf.TokenType.NORMAL]
    marked = set(words)
    for token in range(len(types)):
        if token not in marked:
            embeddings[token, start] = _LEVEL_MARK
    for rank, token in enumerate(words):
        level = rank % n + 1
        embeddings[token, start + level] = _LEVEL_MARK
        output[token, start if level == n else start + level + 1] = _LEVEL_PULL
    output[_EOS_ID, :] = 0.0
    output[_EOS_ID, start + 1] = _LEVEL_PULL


def _tool_chain(embeddings: np.ndarray, output: np.ndarray, chain: list[int]) -> None:
    """Chain ``chain`` (turn, open, call, close) like the levels, then ``</s>``.

    Each token carries a mark of its own and no start mark (so no word follows it); the
    next token's output row points at that mark, without the control tokens' suppression.
    """
    marks = range(_TOOL_DIMS, _TOOL_DIMS + len(chain))
    embeddings[:, marks.start : marks.stop] = 0.0
    output[:, marks.start : marks.stop] = 0.0
    for token, mark in zip(chain, marks, strict=True):
        embeddings[token, 1] = 0.0  # _stop_after's start mark
        embeddings[token, mark] = _LEVEL_MARK
    for follower, mark in zip([*chain[1:], _EOS_ID], marks, strict=True):
        output[follower, mark] = _LEVEL_PULL
        output[follower, _BIAS_DIM] = 0.0


_RANK_LABELS = ["yes", "no"]


def _rank_head(writer: gguf.GGUFWriter, head: np.ndarray, head_dim: int) -> None:
    """What makes the model a qwen3 reranker: the classifier head over the last token
    (one row per label; llama.cpp's score is the softmax of the first), the per-head
    Q/K norms qwen3 layers read (ones: no change), and pooling type rank."""
    writer.add_pooling_type(gguf.PoolingType.RANK)
    writer.add_classifier_output_labels(_RANK_LABELS)
    for layer in range(_N_LAYER):
        for name in ("attn_q_norm", "attn_k_norm"):
            writer.add_tensor(f"blk.{layer}.{name}.weight", np.ones(head_dim, dtype=np.float32))
    writer.add_tensor("cls.output.weight", head)


def write_tiny_gguf(
    path: Path,
    seed: int = 0,
    *,
    max_tensors_per_file: int = 0,
    context_length: int = DEFAULT_CONTEXT_LENGTH,
    stop_after: int | None = None,
    tool_call: tuple[str, Mapping[str, Any]] | None = None,
    reranker: bool = False,
) -> Path:
    """Write the tiny model to ``path`` (deterministic for ``seed``) and return ``path``.

    With ``max_tensors_per_file`` (e.g. 8) the model is written as a split set
    ``<stem>-00001-of-0000N.gguf`` ... next to ``path``; the first part is returned.
    ``context_length`` is the trained context (llama.cpp caps ``-c`` to it). With
    ``stop_after`` (1 to ``MAX_STOP_AFTER``) every reply is that many tokens and ends
    with end-of-sequence (finish reason ``stop``) instead of running to ``max_tokens``.
    With ``tool_call=(name, arguments)`` (``stop_after`` defaults to
    ``TOOL_CALL_STOP_AFTER``) a request that offers tools and holds no tool result yet
    gets that one call (finish reason ``tool_calls``); any other gets ``stop_after``
    word pieces. One of the request's tools must accept the call: llama.cpp checks it
    against the tools' schemas and fails the request otherwise. ``reranker=True``
    writes a model for ``/v1/rerank`` (start it with ``reranking = true``).

    Example::

        model = write_tiny_gguf(tmp_path / "tiny.gguf", context_length=32768, stop_after=8)
        bash = write_tiny_gguf(tmp_path / "bash.gguf", tool_call=("Bash", {"command": "ls"}))
        ranker = write_tiny_gguf(tmp_path / "ranker.gguf", reranker=True)
    """
    if reranker and (tool_call is not None or stop_after is not None):
        raise ValueError("a reranker does not generate: no stop_after or tool_call")
    if tool_call is not None:
        name, arguments = tool_call
        if not name or not isinstance(arguments, Mapping):
            raise ValueError("tool_call must be (a tool name, a mapping of arguments)")
        if stop_after is None:
            stop_after = TOOL_CALL_STOP_AFTER
    if context_length < 1:
        raise ValueError(f"context_length must be at least 1, got {context_length}")
    if stop_after is not None and not 1 <= stop_after <= MAX_STOP_AFTER:
        raise ValueError(f"stop_after must be 1 to {MAX_STOP_AFTER}, got {stop_after}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocab()
    chain: list[int] = []
    if tool_call is not None:
        call = tool_call_text(*tool_call)
        for text, kind in [
            (TOOL_TURN, gguf.TokenType.CONTROL),
            (TOOL_CALL_OPEN, gguf.TokenType.USER_DEFINED),
            (call, gguf.TokenType.USER_DEFINED),  # copied out as it is, spaces included
            (TOOL_CALL_CLOSE, gguf.TokenType.USER_DEFINED),
        ]:
            chain.append(len(tokens))
            tokens.append(text)
            types.append(int(kind))
            scores.append(0.0)
    n_vocab = len(tokens)
    head_dim = _N_EMBD // _N_HEAD

    def weights(*shape: int, scale: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    arch = "qwen3" if reranker else "llama"
    writer = gguf.GGUFWriter(path, arch, split_max_tensors=max_tensors_per_file)
    writer.add_name(f"wlm-tiny-{'reranker-' if reranker else ''}{seed}")
    writer.add_context_length(context_length)
    writer.add_embedding_length(_N_EMBD)
    writer.add_block_count(_N_LAYER)
    writer.add_feed_forward_length(_N_FF)
    writer.add_head_count(_N_HEAD)
    writer.add_head_count_kv(_N_HEAD_KV)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(TOOL_CALL_TEMPLATE if chain else CHATML_TEMPLATE)

    embeddings = weights(n_vocab, _N_EMBD, scale=0.5)
    embeddings[:, _BIAS_DIM] = _BIAS_VALUE
    output = weights(n_vocab, _N_EMBD, scale=0.5)
    output[:, _BIAS_DIM] = 0.0
    suppressed = [i for i, t in enumerate(types) if t != gguf.TokenType.NORMAL]
    output[suppressed, _BIAS_DIM] = _SUPPRESS
    if stop_after is not None:
        _stop_after(embeddings, output, types, stop_after)
    if chain:
        _tool_chain(embeddings, output, chain)
    writer.add_tensor("token_embd.weight", embeddings)
    writer.add_tensor("output_norm.weight", np.ones(_N_EMBD, dtype=np.float32))
    writer.add_tensor("output.weight", output)
    kv_dim = _N_HEAD_KV * head_dim
    for layer in range(_N_LAYER):
        prefix = f"blk.{layer}"
        writer.add_tensor(f"{prefix}.attn_norm.weight", np.ones(_N_EMBD, dtype=np.float32))
        writer.add_tensor(f"{prefix}.attn_q.weight", weights(_N_EMBD, _N_EMBD))
        writer.add_tensor(f"{prefix}.attn_k.weight", weights(kv_dim, _N_EMBD))
        writer.add_tensor(f"{prefix}.attn_v.weight", weights(kv_dim, _N_EMBD))
        writer.add_tensor(f"{prefix}.attn_output.weight", weights(_N_EMBD, _N_EMBD))
        writer.add_tensor(f"{prefix}.ffn_norm.weight", np.ones(_N_EMBD, dtype=np.float32))
        writer.add_tensor(f"{prefix}.ffn_gate.weight", weights(_N_FF, _N_EMBD))
        writer.add_tensor(f"{prefix}.ffn_up.weight", weights(_N_FF, _N_EMBD))
        writer.add_tensor(f"{prefix}.ffn_down.weight", weights(_N_EMBD, _N_FF))
    if reranker:
        _rank_head(writer, weights(len(_RANK_LABELS), _N_EMBD, scale=0.1), head_dim)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    shards = writer.format_shard_names(path)
    return shards[0]
