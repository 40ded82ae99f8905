"""Rendering pages: the Jinja2 environment, its filters, and the headers every page carries.

Jinja2 is imported, and the environment built, when the first page is rendered: a daemon
whose dashboard nobody opens never pays for it at start-up.
"""

from __future__ import annotations

import functools
import json
import zoneinfo
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from api.ui.context import CALLER, SESSION
from api.ui.describe import cron_in_words

if TYPE_CHECKING:
    import jinja2

HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
"""No caching of pages that show an org's data; only our own scripts, styles and forms."""


@functools.cache
def environment() -> jinja2.Environment:
    """The pages' environment, built once: it holds no state of any one app or request."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("api.ui", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        utc=utc_text,
        iso=iso_utc,
        duration=duration_text,
        words=cron_in_words,
        change_value=change_value_text,
    )
    env.globals["timezones"] = timezone_names
    return env


@functools.cache
def timezone_names() -> list[str]:
    """The IANA zones the forms suggest (read from disk once)."""
    return sorted(zoneinfo.available_timezones())


def page(
    request: web.Request, template: str, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    """`template` rendered for the signed-in caller (if any) with `context`."""
    session, caller = request.get(SESSION), request.get(CALLER)
    common = {
        "caller": caller,
        "org_id": caller.org_id if caller else None,
        "csrf_token": session.csrf_token if session else "",
        "flash": session.take_flash() if session else None,
        "path": request.path,
    }
    text = environment().get_template(template).render(common | dict(context))
    response = web.Response(text=text, status=status, content_type="text/html", charset="utf-8")
    response.headers.update(HEADERS)
    return response


def utc_text(moment: datetime) -> str:
    """What a page shows without JavaScript: `2030-01-02 09:00:05 UTC`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso_utc(moment: datetime) -> str:
    """The `datetime` attribute of a `<time>` element, which the page's script localises."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def change_value_text(value: Any) -> str:
    """A value of an edit history entry: `—` for null, text as it is, anything else as JSON."""
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value)


def duration_text(seconds: float) -> str:
    """`0.42 s`, `12 s`, `3 min 5 s`, `2 h 5 min`."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"
