"""``/login`` and ``/logout``: trade the admin key for a signed session cookie."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Redirect, Template

from wlm.web.access import (
    admin_required,
    csrf_of,
    end_session,
    gateway_of,
    safe_next,
    start_session,
    web_of,
)

__all__ = ["LOGIN_ROUTES"]


def _form(request: Request[Any, Any, Any], *, error: str | None, status: int) -> Response[Any]:
    context = {
        "csrf_token": csrf_of(request),
        "next": safe_next(request.query_params.get("next")),
        "error": error,
    }
    return Template(template_name="login.html", context=context, status_code=status)


@get("/login", opt={"public": True})
async def login_form(request: Request[Any, Any, Any]) -> Response[Any]:
    """The login form; with no admin key configured there is nothing to log into."""
    if not admin_required(request):
        return Redirect("/", status_code=303)
    return _form(request, error=None, status=200)


@post("/login", opt={"public": True}, status_code=303)
async def login(request: Request[Any, Any, Any]) -> Response[Any]:
    """Check the posted key; on success start an admin session and go where the user was."""
    if not admin_required(request):
        return Redirect("/", status_code=303)
    form = await request.form()
    key = str(form.get("key") or "")
    if gateway_of(request).admin_keys.identify(key) is None:
        return _form(request, error="That is not the admin key.", status=401)
    # A new session id on login, so a token seen before login is worth nothing after.
    start_session(request, web_of(request).signer.new(admin=True))
    target = safe_next(str(form.get("next") or request.query_params.get("next") or "/"))
    return Redirect(target, status_code=303)


@post("/logout", opt={"public": True}, status_code=303)
async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
    """Forget the session (the cookie is cleared) and show the login form again."""
    end_session(request)
    return Redirect("/login" if admin_required(request) else "/", status_code=303)


LOGIN_ROUTES = [login_form, login, logout]
