"""The ordered model names a request may try: its own model, then the alternatives.

Alternatives come from the request itself when it names them, else from
``WLM_FALLBACKS``:

- the body's ``"models": [...]`` (OpenRouter's field): the names to try after
  ``model``;
- else the ``x-wlm-fallbacks`` header: a comma-separated list of names, tried in
  order (``x-wlm-fallbacks: openrouter/openai/gpt-4o, qwen2.5-7b``);
- else ``WLM_FALLBACKS`` (``gpt-4o=openrouter/openai/gpt-4o|qwen2.5-7b,claude-*=...``):
  the entry for the model as the client wrote it, else for its ``WLM_ALIASES``
  target; an exact name beats a glob, globs match in the order written.

An empty list (``"models": []``, an empty header, or ``none``) asks for no
alternatives at all, whatever ``WLM_FALLBACKS`` says. Each name in the chain is
resolved later by the usual routing order, so local and cloud models mix freely.
The chain is not followed further: an alternative's own ``WLM_FALLBACKS`` entry
is not added.

>>> chains = FallbackChains([("gpt-4o", ("openrouter/openai/gpt-4o", "qwen2.5-7b"))])
>>> chains.chain("gpt-4o")
('gpt-4o', 'openrouter/openai/gpt-4o', 'qwen2.5-7b')
>>> chains.chain("gpt-4o", request_chain("qwen2.5-7b", {}))
('gpt-4o', 'qwen2.5-7b')
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from wlm.errors import BadRequest
from wlm.routing.patterns import PatternTable

__all__ = [
    "FALLBACKS_HEADER",
    "MAX_REQUEST_CHAIN",
    "FallbackChains",
    "request_chain",
]

FALLBACKS_HEADER = "x-wlm-fallbacks"
# A request's own list is bounded: every name may cost WLM_RETRIES + 1 upstream tries.
MAX_REQUEST_CHAIN = 8
_NONE = "none"


def request_chain(header: str | None, body: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The alternatives a request names itself, or None when it names none.

    ``body["models"]`` wins over the ``x-wlm-fallbacks`` header. Raises
    :class:`~wlm.errors.BadRequest` for a ``models`` that is not a list of names, or
    a list longer than :data:`MAX_REQUEST_CHAIN`.
    """
    if "models" in body:
        models = body["models"]
        if not isinstance(models, list) or not all(
            isinstance(m, str) and m.strip() for m in models
        ):
            raise BadRequest("'models' must be a list of model names.", param="models")
        return _bounded([m.strip() for m in models], "'models'")
    if header is None:
        return None
    names = [name.strip() for name in header.split(",")]
    names = [name for name in names if name]
    if names == [_NONE]:
        return ()
    return _bounded(names, f"The {FALLBACKS_HEADER} header")


_CHAINS_KEPT = 4096


def _unique(model: str, rest: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((model, *rest))) if rest else (model,)


def _bounded(names: list[str], what: str) -> tuple[str, ...]:
    if len(names) > MAX_REQUEST_CHAIN:
        raise BadRequest(
            f"{what} names {len(names)} models; at most {MAX_REQUEST_CHAIN} are tried.",
            param="models",
        )
    return tuple(names)


class FallbackChains:
    """``WLM_FALLBACKS`` as a lookup: ``(name or glob, alternatives)`` pairs."""

    __slots__ = ("_chains", "_table")

    def __init__(self, rules: Iterable[tuple[str, Sequence[str]]]) -> None:
        self._table: PatternTable[tuple[str, ...]] = PatternTable(
            (pattern, tuple(alternatives)) for pattern, alternatives in rules
        )
        # Each model's chain from WLM_FALLBACKS, once worked out: every request asks.
        # Bounded, since clients may send any name; the alias passed must not change.
        self._chains: dict[str, tuple[str, ...]] = {}

    def alternatives(
        self, model: str, alias: Callable[[str], str | None] | None = None
    ) -> tuple[str, ...]:
        """The configured alternatives for ``model``, else for what ``alias`` (how
        ``WLM_ALIASES`` rewrites a name: ``Router.alias``) makes of it, asked only then."""
        found = self._table.get(model)
        if found is None and alias is not None:
            aliased = alias(model)
            if aliased is not None and aliased != model:
                found = self._table.get(aliased)
        return found or ()

    def chain(
        self,
        model: str,
        requested: Sequence[str] | None = None,
        alias: Callable[[str], str | None] | None = None,
    ) -> tuple[str, ...]:
        """Every name to try, in order, each once: ``model`` first.

        ``requested`` is :func:`request_chain`'s answer (None: use ``WLM_FALLBACKS``,
        for ``model`` or else for its ``alias``).
        """
        if requested is None:
            chain = self._chains.get(model)
            if chain is None:
                if len(self._chains) >= _CHAINS_KEPT:
                    self._chains.clear()
                chain = self._chains[model] = _unique(model, self.alternatives(model, alias))
            return chain
        return _unique(model, requested)

    def __bool__(self) -> bool:
        return bool(self._table)
