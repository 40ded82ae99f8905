"""Domain values as the Devin v3 façade answers them, and the JSON response that carries them.

Every datetime goes out timezone-aware (UTC, written with a `Z`); playbook times are integer
Unix seconds, as Devin's playbook API has them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Final

from aiohttp import web
from pydantic import BaseModel

from api import json_rows
from api.conditional import etag
from api.devin_models import DevinPlaybook
from storage.domain import Playbook, Schedule
from storage.store import Store

CONFIG_WARNING: Final = (
    '299 - "managed by the configuration file: the next reload reverts this change"'
)
"""The `Warning` header of an answer to an edit or delete of a schedule the file manages."""
EDIT_HEADERS: Final = {
    "Warning": f"Only on a schedule the configuration file manages: `{CONFIG_WARNING}`."
}
"""The headers an edit or delete may answer with, as the OpenAPI document describes them."""


def edit_headers(schedule: Schedule) -> dict[str, str]:
    """The headers of an answer to an edit or delete of `schedule`: a `Warning` when the
    configuration file manages it, since the next reload (or restart) undoes the change."""
    return {"Warning": CONFIG_WARNING} if schedule.from_config else {}


def answer_headers(schedule: Schedule) -> dict[str, str]:
    """The headers of an answer to an edit or delete: its ETag, and `edit_headers`."""
    return etag(schedule) | edit_headers(schedule)


async def schedule_answer(
    store: Store, schedule: Schedule, headers: Mapping[str, str] | None = None
) -> web.Response:
    """`schedule` as the Devin façade answers one (`DevinSchedule`), encoded straight from
    the value (`api.json_rows.devin_schedule`: the same bytes, without the model)."""
    titles = await store.playbook_titles([schedule.playbook_id] if schedule.playbook_id else [])
    return encoded_answer(json_rows.devin_schedule(schedule, titles), headers)


def encoded_answer(body: bytes, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON answer already encoded (`api.json_rows`)."""
    return web.Response(
        body=body, headers=headers, content_type="application/json", charset="utf-8"
    )


def playbook_json(playbook: Playbook) -> DevinPlaybook:
    return DevinPlaybook(
        playbook_id=playbook.id,
        title=playbook.title,
        body=playbook.body,
        macro=playbook.macro,
        access_type="org",
        org_id=playbook.org_id,
        created_by=playbook.created_by,
        updated_by=playbook.updated_by,
        created_at=_epoch_seconds(playbook.created_at),
        updated_at=_epoch_seconds(playbook.updated_at),
    )


def _epoch_seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def respond(
    answer: BaseModel, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """`answer` as a JSON response, encoded by pydantic in one step (no intermediate dict)."""
    return web.Response(
        body=answer.model_dump_json().encode(),
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )


WHOLE_BYTES: Final = 256 * 1024
"""An encoded answer up to this long is handed to the socket at once (a fraction of a
millisecond of copying); a longer one goes out in slices."""
SLICE_BYTES: Final = 64 * 1024
"""The most of a long answer one step of the event loop hands to the socket."""


async def send_encoded(request: web.Request, body: bytes) -> web.StreamResponse:
    """`body`, a JSON answer already encoded (`api.json_rows`), sent as it is.

    A long one (over `WHOLE_BYTES`: AgentScope's unpaged list may be megabytes) goes out a
    slice at a time, each in its own step of the loop. A socket on a fast link takes
    megabytes without making the writer wait, so without the explicit step a whole answer
    would be one callback, and ten clients reading a long list at once would hold the loop
    for tens of milliseconds per turn, timers included (a fire then starts that late). A
    slice is tens of microseconds of copying.
    """
    if len(body) <= WHOLE_BYTES:
        return encoded_answer(body)
    response = web.StreamResponse()
    response.content_type, response.charset = "application/json", "utf-8"
    response.content_length = len(body)
    view = memoryview(body)
    try:
        await response.prepare(request)
        for start in range(0, len(body), SLICE_BYTES):
            await response.write(view[start : start + SLICE_BYTES])
            await asyncio.sleep(0)  # the next slice in the next step: timers run between
        await response.write_eof()
    except ConnectionError:  # reset, or lost while waiting for the socket to drain
        pass  # the client went away (a long list takes a while): no one is left to answer
    return response
