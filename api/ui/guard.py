"""Who may see a dashboard page: the session cookie, the CSRF token of each form, the org.

Every request passes the `guard` middleware, except the few open routes (`OPEN_ROUTES`):
- no live session (or its token was revoked) -> `SignInNeeded` (the sign-in page, 401);
- a POST whose `csrf_token` field is not its session's -> 403, before the handler runs;
- a page of an org (`/ui/orgs/{org_id}/...`) needs the caller to be of that org with
  ManageOrgSchedules, as the API's schedule routes do -> 403 otherwise.

Cookies are HttpOnly, SameSite=Strict, Path=/ui, and Secure when the request came over
https (the connection's own TLS; no forwarded header is believed).
"""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from multidict import MultiDictProxy

from api.auth import check_access
from api.errors import ApiError
from api.ui.context import CALLER, SESSION, dashboard
from api.ui.sessions import Session
from storage.enums import Permission
from storage.identities import ServiceUser

SESSION_COOKIE = "agentcron_session"
SIGN_IN_COOKIE = "agentcron_sign_in"
"""The sign-in form's own CSRF token, sent back as a cookie too (there is no session yet)."""
COOKIE_PATH = "/ui"
OPEN_ROUTES = frozenset({"root", "home", "sign_in", "static"})
"""Route names served without a session; the sign-in POST checks its own token."""


class SignInNeeded(Exception):
    """No live session: answered with the sign-in page."""


Form = MultiDictProxy[str | bytes | bytearray | web.FileField]


def set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str) -> None:
    response.set_cookie(
        name, value, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=request.secure
    )


def delete_cookie(response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path=COOKIE_PATH)


def same_secret(expected: str, offered: object) -> bool:
    """Whether `offered` (a form field, a cookie) is the secret `expected`, in constant time."""
    return isinstance(offered, str) and hmac.compare_digest(expected.encode(), offered.encode())


async def read_form(request: web.Request) -> Form:
    """The posted form; 400 when its body cannot be read as one."""
    try:
        return await request.post()
    except (ValueError, HttpProcessingError):  # undecodable text, a broken multipart body
        raise ApiError(400, "The form could not be read") from None


def text(form: Form, key: str) -> str:
    """A text field of `form`; "" when absent (or a file)."""
    value = form.get(key)
    return value if isinstance(value, str) else ""


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.route.name in OPEN_ROUTES:
        return await handler(request)
    session, caller = signed_in(request)
    request[SESSION] = session
    request[CALLER] = caller
    if request.method == "POST":
        form = await read_form(request)
        if not same_secret(session.csrf_token, form.get("csrf_token")):
            raise ApiError(403, "This form is out of date or did not come from this dashboard")
    org_id = request.match_info.get("org_id")
    if org_id is not None:
        check_access(caller, org_id, Permission.MANAGE_ORG_SCHEDULES)
    return await handler(request)


def signed_in(request: web.Request) -> tuple[Session, ServiceUser]:
    """The request's live session and the service user its token belongs to now."""
    board = dashboard(request)
    session = board.sessions.find(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise SignInNeeded
    caller = board.directory.current.service_users_by_hash.get(session.token_hash)
    if caller is None:  # the token was revoked by a reload
        board.sessions.close(session.id)
        raise SignInNeeded
    return session, caller
