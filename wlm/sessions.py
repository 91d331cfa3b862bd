"""Signed session cookies and the CSRF token derived from them.

A session is ``<sid>.<issued>.<admin>.<mac>``: a random id, when it was issued (epoch
seconds), whether the holder proved the admin key, and an HMAC-SHA256 over the rest
with a secret that lives only in this process. Nothing is stored server-side, so a
restart (a new secret) signs everyone out, which is what a key change should do too.

The CSRF token is another HMAC of the session id: a page carries it (htmx sends it as
the ``X-CSRF-Token`` header on every request), a cross-site form cannot know it, and it
needs no storage either.

The pages (wlm/web/access.py) and the proxy both read sessions: the playground's
requests to ``/v1/chat/completions`` carry the page's cookie and its CSRF token instead
of a client key (:meth:`SessionSigner.from_headers`), and both ask
:func:`playground_refusal` whether a session may send them (docs/playground.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable

from attrs import frozen

__all__ = [
    "COOKIE_NAME",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "Session",
    "SessionSigner",
    "cookie_value",
    "playground_refusal",
]

COOKIE_NAME = "wlm_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


@frozen
class Session:
    """A verified session: its id, when it was issued, and whether it holds the admin key."""

    sid: str
    issued_at: int
    admin: bool


def cookie_value(headers: Iterable[tuple[bytes, bytes]], name: str = COOKIE_NAME) -> str | None:
    """The value of cookie ``name`` in raw ASGI headers (HTTP/2 may split ``Cookie``)."""
    wanted = name.encode()
    for header, value in headers:
        if header != b"cookie":
            continue
        for pair in value.split(b";"):
            key, sep, found = pair.strip().partition(b"=")
            if sep and key == wanted:
                return found.strip().strip(b'"').decode("latin-1")
    return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SessionSigner:
    """Signs and verifies session cookies with a per-process random secret.

    ``max_age_s`` bounds how long a signed session is accepted, whatever the browser
    keeps. ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        secret: bytes | None = None,
        *,
        max_age_s: int = 7 * 24 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self._max_age_s = max_age_s
        self._clock = clock

    def _now(self) -> int:
        return int(self._clock())

    def _mac(self, purpose: str, payload: str) -> str:
        digest = hmac.new(self._secret, f"{purpose}|{payload}".encode(), hashlib.sha256)
        return _b64(digest.digest())

    def new(self, *, admin: bool) -> Session:
        """A fresh session with a random id."""
        return Session(sid=_b64(secrets.token_bytes(18)), issued_at=self._now(), admin=admin)

    def encode(self, session: Session) -> str:
        """The cookie value for ``session``."""
        payload = f"{session.sid}.{session.issued_at}.{int(session.admin)}"
        return f"{payload}.{self._mac('session', payload)}"

    def decode(self, value: str | None) -> Session | None:
        """The session in a cookie value, or None when it is missing, forged or expired."""
        if not value or not value.isascii():  # compare_digest refuses non-ASCII str
            return None
        payload, _, mac = value.rpartition(".")
        if not payload or not hmac.compare_digest(mac, self._mac("session", payload)):
            return None
        sid, _, rest = payload.partition(".")
        issued, _, admin = rest.partition(".")
        if not sid or not issued.isdigit() or admin not in ("0", "1"):
            return None
        issued_at = int(issued)
        if not 0 <= self._now() - issued_at <= self._max_age_s:
            return None
        return Session(sid=sid, issued_at=issued_at, admin=admin == "1")

    def csrf_token(self, session: Session) -> str:
        """The CSRF token pages of ``session`` carry."""
        return self._mac("csrf", session.sid)

    def check_csrf(self, session: Session, presented: str | None) -> bool:
        """True when ``presented`` is ``session``'s CSRF token (constant-time compare)."""
        if not presented or not str(presented).isascii():  # compare_digest refuses non-ASCII
            return False
        return hmac.compare_digest(str(presented), self.csrf_token(session))

    def from_headers(self, headers: Iterable[tuple[bytes, bytes]]) -> Session | None:
        """The session of a script on one of wlm's own pages, from raw ASGI headers.

        Both must hold: a valid session cookie, and that session's CSRF token in the
        ``X-CSRF-Token`` header. A cross-site page can make a browser send neither (the
        cookie is SameSite=Strict; the token is in no place another site can read).
        """
        headers = tuple(headers)
        session = self.decode(cookie_value(headers))
        if session is None:
            return None
        wanted = CSRF_HEADER.encode()
        token = next((v.decode("latin-1") for k, v in headers if k == wanted), None)
        return session if self.check_csrf(session, token) else None


def playground_refusal(
    session: Session | None, *, admin_keys: bool, client_keys: bool
) -> str | None:
    """Why the playground may not send requests on ``session``'s behalf; None when it may.

    The one rule the page (which then says why and disables Send) and the proxy (which
    answers 401 with it) both follow. ``session`` is the page session that came with its
    CSRF token (None: none did, see :meth:`SessionSigner.from_headers`); it must be an
    admin's whenever wlm has keys: with ``WLM_ADMIN_KEY`` whoever logged in, and with
    client keys alone nobody can log in, so no session may stand in for a client key.
    Without keys any session the pages gave out will do.
    """
    if session is None:
        return "no valid page session and CSRF token came with it: reload /playground"
    if session.admin or not (admin_keys or client_keys):
        return None
    if admin_keys:
        return "its session is not logged in: log in at /login"
    return (
        "WLM_API_KEYS is set without WLM_ADMIN_KEY, so nobody can log in and no page "
        "session may stand in for a client key: set WLM_ADMIN_KEY and log in"
    )
