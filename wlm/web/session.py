"""The pages' sessions: the signer lives in :mod:`wlm.sessions`, one layer down, because
the proxy reads a session too (the playground's requests, docs/playground.md)."""

from wlm.sessions import COOKIE_NAME, CSRF_FIELD, CSRF_HEADER, Session, SessionSigner

__all__ = ["COOKIE_NAME", "CSRF_FIELD", "CSRF_HEADER", "Session", "SessionSigner"]
