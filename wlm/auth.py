"""Client and admin keys, compared in constant time.

A key is given in clear (``name:key``) or as its SHA-256 (``name:sha256:<hex>``) so
``.env`` need not hold it. Every presented key is hashed and compared against
every stored digest with ``hmac.compare_digest``, without stopping at the first
match, so the time taken does not depend on how much of a key matches.
"""

from __future__ import annotations

import hashlib
import hmac
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


def _digest(key: str) -> bytes:
    return hashed_digest(key) or hashlib.sha256(key.encode()).digest()


class KeyRing:
    """Named keys; :meth:`identify` returns the name of the key presented, or None."""

    __slots__ = ("_entries",)

    def __init__(self, keys: Iterable[ClientKey]) -> None:
        self._entries = tuple((key.name, _digest(key.key)) for key in keys)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def identify(self, presented: str | None) -> str | None:
        digest = hashlib.sha256((presented or "").encode()).digest()
        found = None
        for name, stored in self._entries:
            if hmac.compare_digest(digest, stored) and presented:
                found = name
        return found


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
