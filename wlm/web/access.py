"""Who may see the pages, and which POSTs are genuine.

Every page request passes :func:`before_request`: it finds (or starts) the browser's
signed session, sends a visitor without the admin key to ``/login`` when
``WLM_ADMIN_KEY`` is set, and refuses a POST whose CSRF token is missing or wrong.
:func:`page_middleware` sets the session cookie (HttpOnly, SameSite=Strict) and the
headers every page carries. A request that presents the admin key itself
(``Authorization: Bearer``, as for ``/api``) needs no session and no CSRF token: a
browser never adds that header on its own, so it cannot be forged cross-site.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, cast
from urllib.parse import quote

from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.response import Redirect
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from wlm.auth import presented_key
from wlm.errors import AuthenticationFailed
from wlm.gateway import Gateway
from wlm.sessions import COOKIE_NAME, CSRF_FIELD, CSRF_HEADER, Session, SessionSigner

__all__ = ["WebState", "before_request", "page_middleware", "safe_next"]

log = logging.getLogger("wlm.web")

# Pages may only load what wlm serves: no CDN, no inline script, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class WebState:
    """What the pages share for the life of one app.

    The session signer (the gateway's: the proxy checks the playground's requests
    against the same secret), the named analytics queries (``{name: sql}``, read once),
    and the background tasks a page started.
    """

    def __init__(self, queries: Mapping[str, str], signer: SessionSigner) -> None:
        self.queries = queries
        self.signer = signer
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` in the background, keeping a reference until it ends (errors logged)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            self._tasks.discard(finished)
            if not finished.cancelled() and finished.exception() is not None:
                # The page shows the outcome and the local manager logs it already.
                first_line = str(finished.exception()).split("\n", 1)[0]
                log.debug("%s failed: %s", name, first_line)

        task.add_done_callback(done)
        return task


# Litestar's State is an untyped bag of attributes, hence the casts: create_app puts
# the Gateway on app.state, and before_request (below) the WebState and the Session
# on every page request's state before any handler runs.


def gateway_of(request: Request[Any, Any, Any]) -> Gateway:
    return cast(Gateway, request.app.state.gateway)


def web_of(request: Request[Any, Any, Any]) -> WebState:
    return cast(WebState, request.state.web)


def session_of(request: Request[Any, Any, Any]) -> Session:
    return cast(Session, request.state.web_session)


def csrf_of(request: Request[Any, Any, Any]) -> str:
    return web_of(request).signer.csrf_token(session_of(request))


def admin_required(request: Request[Any, Any, Any]) -> bool:
    return bool(gateway_of(request).admin_keys)


def start_session(request: Request[Any, Any, Any], session: Session) -> None:
    """Make ``session`` the request's session and have the response set its cookie."""
    request.state.web_session = session
    request.state.web_cookie = web_of(request).signer.encode(session)


def end_session(request: Request[Any, Any, Any]) -> None:
    """Have the response clear the session cookie."""
    request.state.web_cookie = ""


def safe_next(target: str | None) -> str:
    """A same-site path to go back to after login; anything else becomes ``/``."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    # Browsers drop tabs and newlines from URLs and treat a backslash as a slash, so
    # "/<tab>/evil.example" or "/<backslash>evil.example" would leave the site.
    if "\\" in target or any(ord(ch) < 0x20 or ch == "\x7f" for ch in target):
        return "/"
    return target


def _is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


def _to_login(request: Request[Any, Any, Any]) -> Response[Any]:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = f"/login?next={quote(target, safe='/')}"
    if _is_htmx(request):
        # htmx follows HX-Redirect with a full page load instead of swapping a login form in.
        return Response(content=b"", status_code=401, headers={"hx-redirect": location})
    if request.url.path.endswith(".json") or request.query_params.get("format") == "json":
        return Response(
            content=AuthenticationFailed(
                "Log in at /login or send the admin key as a bearer."
            ).to_body(),
            status_code=401,
            media_type="application/json",
        )
    return Redirect(location, status_code=303)


async def _csrf_ok(request: Request[Any, Any, Any], session: Session) -> bool:
    signer = web_of(request).signer
    presented = request.headers.get(CSRF_HEADER)
    if presented is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        presented = (await request.form()).get(CSRF_FIELD)
    return signer.check_csrf(session, presented)


def before_request(
    state: WebState,
) -> Callable[[Request[Any, Any, Any]], Awaitable[Response[Any] | None]]:
    """The pages' ``before_request`` hook, bound to one app's :class:`WebState`."""

    async def hook(request: Request[Any, Any, Any]) -> Response[Any] | None:
        request.state.web = state
        request.state.web_cookie = None
        key = presented_key(request.scope["headers"])
        by_key = key is not None and gateway_of(request).admin_keys.identify(key) is not None
        session = state.signer.decode(request.cookies.get(COOKIE_NAME))
        if session is None and not by_key:
            session = state.signer.new(admin=False)
            start_session(request, session)
        elif session is None:  # a script with the key: a session for this request only
            session = state.signer.new(admin=True)
        request.state.web_session = session
        public = bool(request.route_handler.opt.get("public"))
        if admin_required(request) and not public and not (session.admin or by_key):
            return _to_login(request)
        unsafe = request.method not in _SAFE_METHODS
        if unsafe and not by_key and not await _csrf_ok(request, session):
            return Response(
                content="This form has expired (CSRF check failed): reload the page.",
                status_code=403,
                media_type="text/plain",
            )
        return None

    return hook


def page_middleware(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: security headers and the session cookie on every page response.

    The cookie is whatever :func:`before_request` or a handler decided (new, replaced on
    login, cleared on logout), read from the connection state when the response starts.
    """

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [
                    (name.encode(), value.encode())
                    for name, value in _PAGE_HEADERS.items()
                    if name.encode() not in present
                ]
                cookie = scope.get("state", {}).get("web_cookie")
                if cookie is not None:
                    headers.append(_cookie(cookie))
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware


def _cookie(value: str) -> tuple[bytes, bytes]:
    cookie = Cookie(
        key=COOKIE_NAME,
        value=value,
        path="/",
        httponly=True,
        samesite="strict",
        max_age=None if value else 0,
    )
    return cookie.to_encoded_header()
