"""Cache-aware slots: which of an engine's slots a request should go to.

Pure: no I/O, no clock. A llama.cpp engine started with several slots keeps, in each
slot, the prompt it last processed; a request whose prompt begins with that one is
served from the cache and only its new tokens are computed. wlm remembers, per slot,
a :class:`Prefix` of the prompt it last sent there (a chain of hashes, one per
message, built from the already-parsed body) and :func:`pick` chooses among the
free slots (docs/local-models.md, "Cache-aware slots"):

1. the slot whose remembered prompt shares the longest prefix with the request
   (measured in characters, and more than a tenth of it), pinned with llama.cpp's
   ``id_slot``;
2. with no such slot, none is pinned: llama.cpp picks (its least recently used
   slot, an empty one first, and its host-memory prompt cache saves what that
   slot held and restores a prompt it saved earlier). :func:`pick` names the slot
   llama.cpp picks, so the memory stays right.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from attrs import frozen

__all__ = ["Choice", "Prefix", "pick", "prefix_of", "shared"]

_WORTH = 0.1  # the share of a request a slot must hold to be pinned

# Where each endpoint keeps what the chat template renders, in the order it renders it.
_HEAD_FIELDS: Mapping[str, tuple[str, ...]] = {
    "chat/completions": ("tools",),
    "messages": ("tools", "system"),
    "responses": ("tools", "instructions"),
}
_TURNS_FIELD: Mapping[str, str] = {
    "chat/completions": "messages",
    "messages": "messages",
    "responses": "input",
}


@frozen
class Prefix:
    """A prompt as a chain of hashes: ``hashes[i]`` covers items ``0..i`` (the tools and
    system text first, then one per message), ``sizes[i]`` their characters."""

    hashes: tuple[int, ...]
    sizes: tuple[int, ...]

    @property
    def size(self) -> int:
        return self.sizes[-1] if self.sizes else 0


@frozen
class Choice:
    """The slot a request takes; ``pin``: send llama.cpp ``id_slot`` (else it picks)."""

    slot: int
    pin: bool


def _digest(value: Any) -> tuple[int, int]:
    """A hash of a JSON value and its characters (strings cache their own hash)."""
    if isinstance(value, str):
        return hash(value), len(value)
    if isinstance(value, dict):
        size = 0
        parts: list[object] = []
        for key, item in value.items():
            h, n = _digest(item)
            parts += (key, h)
            size += n
        return hash(tuple(parts)), size
    if isinstance(value, list):
        size = 0
        items: list[int] = []
        for item in value:
            h, n = _digest(item)
            items.append(h)
            size += n
        return hash((list, tuple(items))), size
    return hash((type(value).__name__, value)), 1


def prefix_of(endpoint: str, body: Mapping[str, Any]) -> Prefix | None:
    """The :class:`Prefix` of a request to ``endpoint`` (None: nothing to match)."""
    turns_field = _TURNS_FIELD.get(endpoint)
    if turns_field is None:
        return None
    turns = body.get(turns_field)
    if isinstance(turns, str) and endpoint == "responses":  # an input given as one text
        turns = [turns]
    if not isinstance(turns, list) or not turns:
        return None
    head, head_size = _digest([body.get(field) for field in _HEAD_FIELDS[endpoint]])
    chain, total = head, head_size
    hashes: list[int] = []
    sizes: list[int] = []
    for turn in turns:
        h, n = _digest(turn)
        chain = hash((chain, h))
        total += n
        hashes.append(chain)
        sizes.append(total)
    return Prefix(tuple(hashes), tuple(sizes))


def shared(a: Prefix, b: Prefix) -> int:
    """Characters of the longest common prefix of ``a`` and ``b`` (whole items)."""
    # Chained hashes: equal at i means equal at every j < i, so bisect.
    low, high = 0, min(len(a.hashes), len(b.hashes))
    while low < high:
        middle = (low + high + 1) // 2
        if a.hashes[middle - 1] == b.hashes[middle - 1]:
            low = middle
        else:
            high = middle - 1
    return a.sizes[low - 1] if low else 0


def pick(
    request: Prefix | None,
    held: Sequence[Prefix | None],
    last_used: Sequence[int],
    free: Iterable[int],
) -> Choice:
    """The free slot for ``request``.

    ``held[i]``: what slot ``i`` was last sent (None: nothing known); ``last_used[i]``:
    when it was last released, on any increasing clock (-1: never). ``free`` must name
    at least one slot.
    """
    candidates = sorted(free)
    if not candidates:
        raise ValueError("no free slot to pick from")
    if request is not None:
        best, best_shared = -1, 0
        for slot in candidates:
            prompt = held[slot]
            common = shared(request, prompt) if prompt is not None else 0
            if common > best_shared:
                best, best_shared = slot, common
        # A small share (a common system prompt) is not worth cutting what the slot
        # holds short of llama.cpp's host-memory cache, which only saves a slot it
        # picked itself or one kept below half; its own threshold is the same tenth.
        if best >= 0 and best_shared > request.size * _WORTH:
            return Choice(best, pin=True)
    # llama.cpp's least recently used slot: the oldest release, the last id on a tie
    # (its scan keeps a later slot when the times are equal).
    oldest = min(last_used[slot] for slot in candidates)
    return Choice(max(s for s in candidates if last_used[s] == oldest), pin=False)
