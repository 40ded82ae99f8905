"""Optimistic concurrency on schedules: the `ETag` of an answer and the `If-Match` of an edit.

A schedule's ETag is its `version`, strong and quoted (`"3"`). The version moves with every
change the edit history records (an edit on either façade or the dashboard, the
configuration file, the engine pausing or disabling it) and with every write of an edit
even when no value changed; the engine's bookkeeping of runs (`next_run_at`,
`last_executed_at`, `consecutive_failures`, the last error) leaves it alone, so a schedule
that fires every minute can still be read, edited and sent back.

A PATCH or DELETE with `If-Match` is made only if the schedule is still at one of the listed
versions; the store compares and writes in one transaction (`Store.update_schedule`'s
`if_version`), so of two edits sent with the same ETag exactly one is made and the other is
answered 412 with nothing changed. `If-Match: *` matches any existing schedule. Weak tags
never match: the comparison is strong.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

from aiohttp import web

from api.errors import ApiError
from storage.domain import Schedule
from storage.errors import VersionMismatch

ETAG_HEADER: Final = {
    "ETag": 'The schedule\'s version as a strong entity tag ("3"): send it back as If-Match.'
}
"""How the OpenAPI document describes the ETag of a schedule answer."""
IF_MATCH_HEADER: Final = {
    "If-Match": 'Make the change only if the schedule\'s ETag is one of these ("3", or "*" '
    "for any); otherwise 412 and nothing changes."
}
"""How the OpenAPI document describes the If-Match an edit or delete honours."""


def etag(schedule: Schedule) -> dict[str, str]:
    """The `ETag` header of an answer carrying `schedule`."""
    return {"ETag": f'"{schedule.version}"'}


def if_match(request: web.Request) -> frozenset[int] | None:
    """The versions the request's `If-Match` accepts; None when it sets no condition
    (no header, or `*`). 400 for an empty header."""
    header = request.headers.get("If-Match")
    if header is None:
        return None
    tags = [tag.strip() for tag in header.split(",") if tag.strip()]
    if not tags:
        raise ApiError(400, 'If-Match is empty: send the schedule\'s ETag (such as "3") or *')
    if "*" in tags:
        return None
    return frozenset(version for tag in tags if (version := _version_of(tag)) is not None)


def _version_of(tag: str) -> int | None:
    """The version a strong entity tag names; None for a weak one or one never issued. The
    quotes may be left out (`3`), as some clients send a version."""
    if tag.startswith("W/"):
        return None
    digits = tag[1:-1] if len(tag) >= 2 and tag[0] == tag[-1] == '"' else tag
    if not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        return None
    return int(digits)


def require_match(schedule: Schedule, versions: Collection[int] | None) -> None:
    """For a request that writes nothing (an empty PATCH): VersionMismatch unless
    `schedule` is at one of `versions` (None accepts any)."""
    if versions is not None and schedule.version not in versions:
        raise VersionMismatch(schedule.id, versions, schedule.version)
