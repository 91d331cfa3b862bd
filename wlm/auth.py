"""Client and admin keys, found by their SHA-256.

A key is given in clear (``name:key``) or as its SHA-256 (``name:sha256:<hex>``) so
``.env`` need not hold it. Every presented key is hashed and its digest looked up
among the stored digests: the time a lookup takes may depend on the digests, never
on how much of a key matches, so it tells an attacker nothing about a key (finding
a key from its digest is what SHA-256 makes infeasible). One hash and one dictionary
lookup a request, however many keys there are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from wlm.config import ClientKey

__all__ = ["KeyRing", "hashed_digest", "presented_key"]

_SHA256_PREFIX = "sha256:"


def hashed_digest(key: str) -> bytes | None:
    """The digest a configured ``sha256:<64 hex>`` key holds; None for a key in clear."""
    if key.startswith(_SHA256_PREFIX) and len(key) == len(_SHA256_PREFIX) + 64:
        try:
            return bytes.fromhex(key[len(_SHA256_PREFIX) :])
        except ValueError:
            pass
    return None


class KeyRing:
    """Named keys; :meth:`identify` returns the name of the key presented, or None."""

    __slots__ = ("_names", "hashed")

    def __init__(self, keys: Iterable[ClientKey]) -> None:
        self._names: dict[bytes, str] = {}
        # Names whose key is configured only as its hash: the redactor learns such a key
        # when a client presents it (the others it knows from the start).
        hashed: set[str] = set()
        for key in keys:
            digest = hashed_digest(key.key)
            if digest is not None:
                hashed.add(key.name)
            # The last entry wins, should two names share a key (as when each was compared).
            self._names[digest or hashlib.sha256(key.key.encode()).digest()] = key.name
        self.hashed = frozenset(hashed)

    def __bool__(self) -> bool:
        return bool(self._names)

    def identify(self, presented: str | None) -> str | None:
        if not presented:
            return None
        return self._names.get(hashlib.sha256(presented.encode()).digest())


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``x-api-key: <key>``."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value:
            return value.decode("latin-1").strip()
    return None
