"""Signing in with a service-user token, and out.

The sign-in form has no session to tie a CSRF token to, so its token is a random value sent
both as a cookie and as a hidden field (a cross-site page can send neither back); a success
opens a new session whose id goes in the session cookie.
"""

from __future__ import annotations

import secrets

from aiohttp import web

from api.ui.context import SESSION, dashboard
from api.ui.guard import (
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    SignInNeeded,
    delete_cookie,
    read_form,
    same_secret,
    set_cookie,
    signed_in,
    text,
)
from api.ui.render import page


async def home(request: web.Request) -> web.Response:
    """`/ui/`: the caller's schedules, or the sign-in page."""
    try:
        _, caller = signed_in(request)
    except SignInNeeded:
        raise web.HTTPSeeOther("/ui/sign-in") from None
    raise web.HTTPSeeOther(f"/ui/orgs/{caller.org_id}/schedules")


async def sign_in_form(request: web.Request) -> web.Response:
    return sign_in_page(request, next_path=request.query.get("next"))


async def sign_in(request: web.Request) -> web.Response:
    form = await read_form(request)
    next_path = text(form, "next") or None
    if not same_secret(request.cookies.get(SIGN_IN_COOKIE, ""), form.get("csrf_token")):
        message = "The sign-in form had expired; please sign in again."
        return sign_in_page(request, status=403, next_path=next_path, error=message)
    board = dashboard(request)
    caller = board.directory.current.service_user_for_token(text(form, "token").strip())
    if caller is None:
        error = "That token is not valid (or was revoked)."
        return sign_in_page(request, status=401, next_path=next_path, error=error)
    board.sessions.close(request.cookies.get(SESSION_COOKIE, ""))
    session = board.sessions.open(caller.token_hash)
    response = web.HTTPSeeOther(_safe_next(next_path) or f"/ui/orgs/{caller.org_id}/schedules")
    set_cookie(response, request, SESSION_COOKIE, session.id)
    delete_cookie(response, SIGN_IN_COOKIE)
    raise response


async def sign_out(request: web.Request) -> web.Response:
    """Ends the session (the guard has checked it and the form's CSRF token)."""
    dashboard(request).sessions.close(request[SESSION].id)
    response = web.HTTPSeeOther("/ui/sign-in")
    delete_cookie(response, SESSION_COOKIE)
    raise response


def sign_in_page(
    request: web.Request,
    *,
    status: int = 200,
    next_path: str | None = None,
    error: str | None = None,
) -> web.Response:
    """The sign-in form, with a fresh sign-in CSRF token in a cookie and a hidden field."""
    token = secrets.token_urlsafe(32)
    context = {"sign_in_token": token, "next_path": _safe_next(next_path), "error": error}
    response = page(request, "sign_in.html", context, status=status)
    set_cookie(response, request, SIGN_IN_COOKIE, token)
    return response


def _safe_next(path: str | None) -> str | None:
    """`path` if it is a dashboard page of this server (never another site), else None."""
    if path is None or not path.startswith("/ui/") or "//" in path or "\\" in path:
        return None
    return path if path.isprintable() else None
