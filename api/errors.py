"""One JSON error shape for every failure, and the middleware that enforces it.

Every error is `{"detail": "<message>"}` (a 412 for a stale `If-Match` too), except
validation errors (422), which list `{"loc": [...], "msg": "...", "type": "..."}` items as
FastAPI does. No traceback ever
reaches a client: an unexpected exception is logged and answered with a bare 500.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from aiohttp import web
from pydantic import ValidationError

from storage.errors import NotFound, StoreUnavailable, VersionMismatch

log = structlog.get_logger("agentcron.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error answered as `{"detail": detail}` with `status`."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Unprocessable(Exception):
    """A 422 with the list form of `detail`."""

    def __init__(self, items: Sequence[dict[str, Any]]) -> None:
        super().__init__(items)
        self.items = list(items)


def unprocessable(loc: Sequence[str | int], msg: str, type_: str = "value_error") -> Unprocessable:
    """A single-item 422, for semantic refusals (a cron that never fires, a refused user...)."""
    return Unprocessable([{"loc": list(loc), "msg": msg, "type": type_}])


def validation_items(exc: ValidationError, prefix: str = "body") -> list[dict[str, Any]]:
    """pydantic errors as FastAPI's list items, locations prefixed with `body`/`query`."""
    items = []
    for error in exc.errors(include_url=False, include_input=False):
        item: dict[str, Any] = {
            "loc": [prefix, *error["loc"]],
            "msg": error["msg"],
            "type": error["type"],
        }
        ctx = error.get("ctx")
        if ctx:
            item["ctx"] = {k: str(v) for k, v in ctx.items()}
        items.append(item)
    return items


def precondition_failed(exc: VersionMismatch) -> str:
    """The 412 detail of a conditional write refused (see `api.conditional`)."""
    return (
        f'If-Match does not match: the schedule\'s ETag is now "{exc.current}" (it changed '
        "since it was read); read it again, then resend the change"
    )


def json_detail(status: int, detail: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"detail": detail}, status=status, headers=headers)


def _from_http_exception(exc: web.HTTPException) -> web.Response:
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    detail = {
        404: "Not Found",
        405: "Method Not Allowed",
        413: "Request body too large",
    }.get(exc.status, exc.reason)
    return json_detail(exc.status, detail, headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return json_detail(exc.status, exc.detail)
    except Unprocessable as exc:
        return json_detail(422, exc.items)
    except ValidationError as exc:
        return json_detail(422, validation_items(exc))
    except NotFound as exc:
        return json_detail(404, str(exc))
    except VersionMismatch as exc:
        return json_detail(412, precondition_failed(exc))
    except StoreUnavailable as exc:
        log.error("store_unavailable", error=str(exc), path=request.path)
        return json_detail(503, f"storage unavailable: {exc}")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http_exception(exc)
    except Exception:
        log.exception("request_failed", method=request.method, path=request.path)
        return json_detail(500, "Internal Server Error")
