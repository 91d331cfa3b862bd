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

from collections.abc import Iterable, Mapping, Sequence
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


def _bounded(names: list[str], what: str) -> tuple[str, ...]:
    if len(names) > MAX_REQUEST_CHAIN:
        raise BadRequest(
            f"{what} names {len(names)} models; at most {MAX_REQUEST_CHAIN} are tried.",
            param="models",
        )
    return tuple(names)


class FallbackChains:
    """``WLM_FALLBACKS`` as a lookup: ``(name or glob, alternatives)`` pairs."""

    __slots__ = ("_table",)

    def __init__(self, rules: Iterable[tuple[str, Sequence[str]]]) -> None:
        self._table: PatternTable[tuple[str, ...]] = PatternTable(
            (pattern, tuple(alternatives)) for pattern, alternatives in rules
        )

    def alternatives(self, model: str, aliased: str | None = None) -> tuple[str, ...]:
        """The configured alternatives for ``model`` (else for its alias target ``aliased``)."""
        found = self._table.get(model)
        if found is None and aliased is not None and aliased != model:
            found = self._table.get(aliased)
        return found or ()

    def chain(
        self,
        model: str,
        requested: Sequence[str] | None = None,
        aliased: str | None = None,
    ) -> tuple[str, ...]:
        """Every name to try, in order, each once: ``model`` first.

        ``requested`` is :func:`request_chain`'s answer (None: use ``WLM_FALLBACKS``);
        ``aliased`` is ``model`` after ``WLM_ALIASES`` (``Router.alias``).
        """
        rest = requested if requested is not None else self.alternatives(model, aliased)
        return tuple(dict.fromkeys((model, *rest)))

    def __bool__(self) -> bool:
        return bool(self._table)
