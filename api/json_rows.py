"""List answers encoded straight from stored rows to JSON bytes, off the event loop.

An answer whose size grows with the data (AgentScope's unpaged schedule list above all:
thousands of schedules, megabytes of JSON) is read and encoded on a database thread
(`Store.encode_schedules`, `Store.encode_runs`), so it never holds the loop that serves
every other request and fires every schedule. Each encoder here turns the rows of one list
(tuples of the fields named next to it) into the bytes its wire model would answer: the
same keys in the same order, the same values. Building one pydantic model per item costs
about five times the CPU (10,000 schedules: 257 ms against 46 ms);
`tests/integration/test_json_rows.py` compares the two byte for byte. The Devin answer of
one schedule (`devin_schedule`, and AgentScope's `agentscope_schedule`) is encoded the same
way from the domain value, on the loop: 7 µs against 21 µs through the model, for every
GET, create, edit and delete.

The keys come from the wire models (`DevinSchedule`, `RunJson`, `SessionItem`), and through
them from the schedule catalogue, so a field added to those answers is read and encoded here
without a second edit. AgentScope's record is its own shape, written out in
`ScheduleRecord.of` and mirrored in `_agentscope_record`.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import orjson
import pydantic_core

from api.devin_models import DevinSchedule
from api.wire import RunJson
from storage.catalogue import wire_names
from storage.store import PLAYBOOK_TITLE, RowsEncoder

if TYPE_CHECKING:
    from storage.domain import Schedule

Row = tuple[Any, ...]


def dumps(value: Any) -> bytes:
    """`value` as pydantic writes JSON: compact, UTF-8, datetimes in RFC 3339 with `Z`."""
    try:
        return orjson.dumps(value, option=orjson.OPT_UTC_Z)
    except orjson.JSONEncodeError:
        # orjson refuses integers beyond 64 bits (a chat model config may hold one);
        # pydantic's own serializer writes the same bytes for everything else, slower.
        return pydantic_core.to_json(value)


ITEMS_PER_CALL = 256
"""Items encoded by one `dumps` call: well under a millisecond of holding the GIL."""


def _array(items: list[Any]) -> bytes:
    """A JSON array, encoded `ITEMS_PER_CALL` items at a time.

    `dumps` holds the GIL for as long as it runs, and with it the event loop's thread: over
    a whole list of thousands, tens of milliseconds. One call per item would cost twice as
    much as one per few hundred.
    """
    parts = (
        dumps(items[start : start + ITEMS_PER_CALL])[1:-1]
        for start in range(0, len(items), ITEMS_PER_CALL)
    )
    return b"[" + b",".join(parts) + b"]"


def _object(members: dict[str, bytes]) -> bytes:
    """A JSON object of members already encoded, in their order."""
    return b"{" + b",".join(dumps(key) + b":" + value for key, value in members.items()) + b"}"


# -- AgentScope: the caller's schedules, all of them, and a schedule's sessions --------------

AGENTSCOPE_SCHEDULE_FIELDS: Final = (
    *("id", "owner_user_id", "agent", "name", "prompt", "cron", "timezone", "enabled"),
    *("stateful", "permission_mode", "start_at", "end_at", "chat_model_config", "source"),
    *("source_session_id", "created_at", "updated_at"),
)


def _agentscope_record(row: Row) -> dict[str, Any]:
    """As `ScheduleRecord.of` renders a schedule."""
    (schedule_id, owner, agent, name, prompt, cron, timezone, enabled) = row[:8]
    (stateful, mode, start_at, end_at, chat_model, source, source_session) = row[8:15]
    created_at, updated_at = row[15:]
    data = {
        "name": name,
        "description": prompt,
        "cron_expression": cron or "",
        "timezone": timezone,
        "enabled": enabled,
        "stateful": stateful,
        "permission_mode": mode,
        "started_at": start_at or created_at,
        "ended_at": end_at,
        "chat_model_config": None if chat_model is None else {"model_class": ""} | chat_model,
        "source": source,
        "source_session_id": source_session or "",
    }
    return {
        "id": schedule_id,
        "user_id": owner or "",
        "agent_id": agent,
        "data": data,
        "created_at": created_at,
        "updated_at": updated_at,
    }


_READ_AGENTSCOPE = operator.attrgetter(*AGENTSCOPE_SCHEDULE_FIELDS)


def agentscope_schedule(schedule: Schedule) -> bytes:
    """`ScheduleRecord.of(schedule)` as the bytes it dumps, without building the models (every
    answer to an AgentScope GET or PATCH of one schedule)."""
    return dumps(_agentscope_record(_READ_AGENTSCOPE(schedule)))


def agentscope_schedule_list(rows: list[Row], total: int) -> bytes:
    """`ScheduleList` of the rows of `AGENTSCOPE_SCHEDULE_FIELDS`."""
    records = _array([_agentscope_record(row) for row in rows])
    return _object({"schedules": records, "total": dumps(total)})


@functools.cache
def _session_keys() -> tuple[str, ...]:
    # The façade's models are imported only where it is served (they cost start-up ~9 ms).
    from api.agentscope_models import SessionItem

    return tuple(SessionItem.model_fields)


@functools.cache
def session_fields() -> tuple[str, ...]:
    """The run fields of an AgentScope session, in `SessionItem`'s order."""
    return tuple("id" if key == "run_id" else key for key in _session_keys())


def agentscope_session_list(rows: list[Row], total: int) -> bytes:
    """`SessionList` of the rows of `session_fields()`."""
    keys = _session_keys()
    sessions = _array([dict(zip(keys, row, strict=True)) for row in rows])
    return _object({"sessions": sessions, "total": dumps(total)})


# -- Devin: pages of an org's schedules and of a schedule's runs --------------------------


def _offset_page(items: list[dict[str, Any]], offset: int, total: int) -> bytes:
    """As `OffsetPage.of` envelopes a page."""
    following = offset + len(items)
    more = following < total
    return _object(
        {
            "items": _array(items),
            "end_cursor": dumps(str(following) if more else None),
            "has_next_page": dumps(more),
            "total": dumps(total),
        }
    )


_DEVIN_KEYS: Final = tuple(DevinSchedule.model_fields)
_FIELD_OF: Final = {wire: name for name, wire in wire_names("devin", "answer").items()}
_RENDER_FIELDS: Final = ("enabled", "deleted_at", PLAYBOOK_TITLE)
DEVIN_SCHEDULE_FIELDS: Final = (*(_FIELD_OF[key] for key in _DEVIN_KEYS), *_RENDER_FIELDS)
"""Every answered field in the answer's order, then what the three rendered ones need."""


def _devin_schedule(row: Row) -> dict[str, Any]:
    """As `DevinSchedule.of` renders a schedule (its `playbook`, `next_run_at`, `managed_by`)."""
    values = dict(zip(_DEVIN_KEYS, row[: -len(_RENDER_FIELDS)], strict=True))
    enabled, deleted_at, title = row[-len(_RENDER_FIELDS) :]
    playbook_id = values["playbook"]
    if playbook_id is not None and title is not None:
        values["playbook"] = {"playbook_id": playbook_id, "title": title}
    else:
        values["playbook"] = None
    if not enabled or deleted_at is not None:
        values["next_run_at"] = None
    values["managed_by"] = "config" if values["managed_by"] else None
    return values


_READ_ANSWERED = operator.attrgetter(*DEVIN_SCHEDULE_FIELDS[: -len(_RENDER_FIELDS)])


def devin_schedule(schedule: Schedule, playbook_titles: Mapping[str, str]) -> bytes:
    """`DevinSchedule.of(schedule, playbook_titles)` as the bytes it dumps, without building
    the model (every answer to a Devin GET, create, edit or delete of one schedule)."""
    title = playbook_titles.get(schedule.playbook_id) if schedule.playbook_id else None
    row = (*_READ_ANSWERED(schedule), schedule.enabled, schedule.deleted_at, title)
    return dumps(_devin_schedule(row))


def devin_schedule_page(offset: int) -> RowsEncoder[bytes]:
    """`DevinScheduleList` of the rows of `DEVIN_SCHEDULE_FIELDS` found at `offset`."""

    def encode(rows: list[Row], total: int) -> bytes:
        return _offset_page([_devin_schedule(row) for row in rows], offset, total)

    return encode


RUN_FIELDS: Final = tuple(RunJson.model_fields)


def run_page(offset: int) -> RowsEncoder[bytes]:
    """`RunList` of the rows of `RUN_FIELDS` found at `offset`."""

    def encode(rows: list[Row], total: int) -> bytes:
        runs = [dict(zip(RUN_FIELDS, row, strict=True)) for row in rows]
        return _offset_page(runs, offset, total)

    return encode
