"""What a schedule's edit history records of a change: pure functions of two schedules.

Every store backend calls `entry_of` inside the transaction that writes the change, so an
entry exists exactly when its change does. An entry lists only the fields whose value
changed, under their wire names, as `[before, after]` JSON values; a creation lists
`[null, value]` and a deletion `[value, null]` of every field that has a value.

Recorded are the fields a client or the configuration file sets (`frequency`, `prompt`,
`enabled`...) and the two the engine sets on a pause (`enabled`, `paused_reason`), plus
`managed_by` when the configuration file adopts a schedule. The engine's bookkeeping of runs
(`next_run_at`, `last_executed_at`, `consecutive_failures`, the last error) and what moves
with every entry anyway (`updated_at`, `last_edited_by`, `version`) are not: they are not
edits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

from pydantic_core import to_jsonable_python

from storage.catalogue import CATALOGUE, Entry
from storage.domain import HistoryEntry, Schedule
from storage.enums import HistoryAction

ENGINE: Final = "engine"
"""`by` of the entries the engine writes (a pause after failures, a one_time schedule done)."""

_SET_BY_ENGINE: Final = frozenset({"enabled", "paused_reason", "from_config"})
_NEVER: Final = frozenset({"id", "org_id"})  # every entry carries them already


def _wire_name(entry: Entry) -> str:
    """The Devin façade's name for the field (as a PATCH sends it, else as it is answered),
    or the field's own name, which is also the AgentScope façade's for its own fields."""
    return (
        entry.wire_name("devin", "patch")
        or entry.wire_name("devin", "answer")
        or entry.wire_name("agentscope", "patch")
        or entry.name
    )


def _edited(entry: Entry) -> bool:
    spec = entry.spec
    settable = any(
        entry.wire_name(facade, operation)
        for facade in ("devin", "agentscope")
        for operation in ("create", "patch")
    )
    return (settable or spec.config is not None or entry.name in _SET_BY_ENGINE) and (
        entry.name not in _NEVER
    )


RECORDED: Final[Mapping[str, str]] = {
    entry.name: _wire_name(entry) for entry in CATALOGUE if _edited(entry)
}
"""{schedule field: the name its changes are listed under} of every recorded field."""

_RENDERED: Final[Mapping[str, Callable[[Any], Any]]] = {
    "from_config": lambda managed: "config" if managed else None,
}
"""Fields recorded as the Devin façade answers them rather than as stored."""


def wire_value(name: str, value: Any) -> Any:
    """Field `name`'s `value` as JSON: datetimes in ISO 8601 with their offset, enums as
    their value, `from_config` as `managed_by` answers it."""
    render = _RENDERED.get(name)
    return to_jsonable_python(render(value) if render else value)


def field_changes(before: Schedule | None, after: Schedule | None) -> dict[str, list[Any]]:
    """{wire name: [before, after]} of every recorded field whose value differs.

    None on one side stands for "no schedule": every field with a value on the other side
    is listed against null.
    """
    changes: dict[str, list[Any]] = {}
    for name, wire in RECORDED.items():
        old = None if before is None else getattr(before, name)
        new = None if after is None else getattr(after, name)
        if old != new:  # compared as stored; only a change is converted (this runs per edit)
            pair = [wire_value(name, old), wire_value(name, new)]
            if pair[0] != pair[1]:
                changes[wire] = pair
    return changes


def action_of(before: Schedule | None, after: Schedule) -> HistoryAction:
    """The action that names a change best.

    `created` and `deleted`; `paused` when the schedule is disabled with a reason (the
    engine after consecutive failures, the configuration file dropping its entry), else
    `disabled` (by a client, or the engine after a one_time schedule's fire); `enabled`
    when it is enabled again; `updated` for any other change.
    """
    if before is None:
        return HistoryAction.CREATED
    if after.deleted_at is not None and before.deleted_at is None:
        return HistoryAction.DELETED
    if before.enabled and not after.enabled:
        return HistoryAction.PAUSED if after.paused_reason else HistoryAction.DISABLED
    if after.enabled and not before.enabled:
        return HistoryAction.ENABLED
    return HistoryAction.UPDATED


def entry_of(
    before: Schedule | None, after: Schedule, *, by: str | None, at: datetime
) -> HistoryEntry | None:
    """The history entry of the change from `before` (None: a creation) to `after`, or None
    when no recorded field changed (the write touched only bookkeeping or nothing at all)."""
    deleted = after.deleted_at is not None and (before is None or before.deleted_at is None)
    changes = field_changes(before, None if deleted else after)
    if not changes:
        return None
    return HistoryEntry(
        schedule_id=after.id,
        org_id=after.org_id,
        at=at,
        by=by,
        action=action_of(before, after),
        changes=changes,
    )
