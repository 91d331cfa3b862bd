"""Deterministic embeddings for the fake upstream's `POST /embeddings` (shared/wire/WIRE.md 1.6)."""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Mapping
from typing import Any

DEFAULT_DIMENSIONS = 8  # small on purpose: tests compare vectors, not semantics


def _inputs(raw: Any) -> list[Any]:
    """Normalise `input` (string, strings, tokens, token lists) to one item per vector."""
    if isinstance(raw, list) and raw and all(isinstance(item, int) for item in raw):
        return [raw]
    return list(raw) if isinstance(raw, list) else [raw]


def vector_for(item: Any, dims: int = DEFAULT_DIMENSIONS) -> list[float]:
    """The vector the fake returns for one input item: derived from its hash, in [-1, 1]."""
    seed = hashlib.sha256(repr(item).encode()).digest()
    while len(seed) < dims:
        seed += hashlib.sha256(seed).digest()
    return [round(byte / 127.5 - 1.0, 6) for byte in seed[:dims]]


def _token_count(item: Any) -> int:
    return len(item) if isinstance(item, list) else max(1, len(str(item).split()))


def embeddings_body(body: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The `{object: list, data, model, usage}` answer, honouring dimensions and base64."""
    inputs = _inputs(body.get("input"))
    dims = body.get("dimensions")
    dims = dims if isinstance(dims, int) and dims > 0 else DEFAULT_DIMENSIONS
    data = []
    for index, item in enumerate(inputs):
        vector: Any = vector_for(item, dims)
        if body.get("encoding_format") == "base64":  # little-endian float32, as OpenAI sends
            vector = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(_token_count(item) for item in inputs)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
