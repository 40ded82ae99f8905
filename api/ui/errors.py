"""Every failure of a dashboard page is a page: a short message with its status, never JSON,
never a traceback. A visitor who is not signed in gets the sign-in form (401)."""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError

from api.errors import ApiError, Unprocessable, precondition_failed, validation_items
from api.ui.guard import SignInNeeded
from api.ui.render import HEADERS, page
from api.ui.signin import sign_in_page
from storage.errors import StoreUnavailable, VersionMismatch
from storage.store import NotFound

log = structlog.get_logger("agentcron.ui")

_TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    412: "Changed meanwhile",
    413: "Too large",
    422: "Not valid",
    503: "Unavailable",
}


@web.middleware
async def html_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:  # a redirect
            raise
        return error_page(request, exc.status, exc.reason)
    except Exception as exc:
        return _failure_page(request, exc)
    if request.match_info.route.name != "static":
        response.headers.update({k: v for k, v in HEADERS.items() if k not in response.headers})
    return response


def _failure_page(request: web.Request, exc: Exception) -> web.Response:
    match exc:
        case SignInNeeded():
            return sign_in_page(request, status=401, next_path=_back_here(request))
        case ApiError(status=status, detail=detail):
            return error_page(request, status, detail)
        case NotFound():
            return error_page(request, 404, str(exc))
        case VersionMismatch():
            return error_page(request, 412, precondition_failed(exc))
        case Unprocessable(items=items):
            return error_page(request, 422, _problems(items))
        case ValidationError():
            return error_page(request, 422, _problems(validation_items(exc)))
        case StoreUnavailable():
            log.error("store_unavailable", error=str(exc), path=request.path)
            return error_page(request, 503, f"storage unavailable: {exc}")
    log.error("request_failed", method=request.method, path=request.path, exc_info=exc)
    return error_page(request, 500, "Something went wrong on our side; it has been logged.")


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    title = _TITLES.get(status, "Error")
    return page(request, "error.html", {"title": title, "message": message}, status=status)


def _back_here(request: web.Request) -> str | None:
    """Where to go after signing in: the page asked for, if it was one to look at."""
    return request.path_qs if request.method == "GET" else None


def _problems(items: list[dict[str, Any]]) -> str:
    return "; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}" for item in items)
