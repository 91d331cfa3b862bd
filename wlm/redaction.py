"""Keeping secrets out of everything wlm writes: responses, logs, telemetry, pages."""

from __future__ import annotations

__all__ = ["Redactor"]


class Redactor:
    """Replaces every configured secret in text or bytes by ``[redacted]``."""

    __slots__ = ("_secret_bytes", "_secrets")

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self._secrets = tuple(sorted(set(secrets), key=len, reverse=True))
        self._secret_bytes = tuple(s.encode() for s in self._secrets)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, "[redacted]")
        return value

    def bytes(self, value: bytes) -> bytes:
        for secret in self._secret_bytes:
            if secret in value:
                value = value.replace(secret, b"[redacted]")
        return value

    def with_secret(self, secret: str | None) -> Redactor:
        """This redactor plus one more secret (a client's key known only as a hash)."""
        if not secret or len(secret) < 4 or secret in self._secrets:
            return self
        return Redactor((*self._secrets, secret))
