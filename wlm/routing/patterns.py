"""Names matched exactly first, then by shell glob in the order written.

The one matching rule behind ``WLM_ALIASES`` and ``WLM_FALLBACKS`` (and any other
``name-or-glob=value`` setting): a client's own model names, such as
``claude-haiku-*``, can be sent anywhere, and an exact entry always beats a glob.

>>> table = PatternTable([("claude-*", "glob"), ("claude-x", "exact")])
>>> table.get("claude-x"), table.get("claude-y"), table.get("gpt-4o")
('exact', 'glob', None)
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Generic, TypeVar

__all__ = ["PatternTable", "is_glob"]

T = TypeVar("T")
_SEEN_MAX = 4096


def is_glob(name: str) -> bool:
    """Whether ``name`` is a shell glob (``*``, ``?`` or ``[...]``) rather than a name."""
    return any(c in name for c in "*?[")


class PatternTable(Generic[T]):
    """``(name or glob, value)`` pairs; :meth:`get` finds a name's value.

    An exact name wins (the last one written, should it repeat); otherwise the first
    glob that matches, in the order written. Matching is case-sensitive.
    """

    __slots__ = ("_exact", "_globs", "_seen")

    def __init__(self, pairs: Iterable[tuple[str, T]]) -> None:
        pairs = tuple(pairs)
        self._exact: dict[str, T] = {name: value for name, value in pairs if not is_glob(name)}
        self._globs = tuple((name, value) for name, value in pairs if is_glob(name))
        # Names already matched against the globs (a request path asks for the same few
        # names over and over); bounded, since clients may send any name.
        self._seen: dict[str, T | None] = {}

    def get(self, name: str) -> T | None:
        """The value for ``name``, or None when nothing matches."""
        exact = self._exact.get(name)
        if exact is not None or not self._globs:
            return exact
        seen = self._seen
        if name in seen:
            return seen[name]
        found = next((value for pattern, value in self._globs if fnmatchcase(name, pattern)), None)
        if len(seen) >= _SEEN_MAX:
            seen.clear()
        seen[name] = found
        return found

    def __bool__(self) -> bool:
        return bool(self._exact or self._globs)
