"""Bootstrap: the `[[playbooks]]` and `[[schedules]]` of the configuration, applied to the store.

The file is declarative and wins over the database, at start-up and on every reload:

- A playbook is upserted by id: created if missing (or deleted), rewritten if its org, title,
  body or macro differ, left alone otherwise.
- A schedule is matched by (org, name). A new one is created with `from_config=True` and
  `created_by="config"`. An existing one (even one made through the API, which the file then
  adopts) gets every schedule field of its entry, defaults included, so the stored schedule
  is what the file says. Run state is kept: `consecutive_failures`, the `last_*` fields, the
  stateful session, the run history. Two pauses are kept too, because they are run state and
  not definition: a schedule auto-paused after repeated failures stays paused until someone
  enables it through the API, and a one_time schedule that has fired stays disabled unless
  the file moves its `scheduled_at`.
- A schedule the file made (`from_config`) and no longer lists is disabled, never deleted,
  with `paused_reason` saying why; listing it again enables it again. Schedules made through
  the API are never touched.

Only real differences are written, so applying an unchanged file writes nothing and bumps no
`version`. Every schedule written is passed to `changed()` so the engine's timers follow.
The decisions are pure functions (`new_schedule`, `schedule_changes`, `removal_changes`,
`playbook_differs`); `apply_bootstrap` is the one step that touches the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from daemon.config import Config, PlaybookConfig, ScheduleConfig
from storage.catalogue import config_keys
from storage.domain import Playbook, Schedule
from storage.enums import ScheduleType
from storage.errors import NotFound
from storage.store import Store

CONFIG_AUTHOR: Final = "config"
"""`created_by` / `last_edited_by` of what the configuration file writes."""

REMOVED_REASON: Final = "removed from the configuration file"
"""`paused_reason` of a config-made schedule whose entry left the file."""

_FIELD_OF: Final = {key: name for name, key in config_keys().items()}
"""Config key -> schedule field (`org` is `org_id`, `jitter` `jitter_s`...)."""
# Set from the entry but decided by `_enablement`, which may keep a pause.
_ENABLEMENT: Final = frozenset({"enabled"})


class ScheduleChanges(Protocol):
    """Who must hear of every schedule bootstrap writes (the engine)."""

    async def changed(self, schedule: Schedule) -> None: ...


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """What one application of the file wrote: ids of the objects it created or changed."""

    playbooks: tuple[str, ...] = ()
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        """Numbers for a log line."""
        return {
            "playbooks_written": len(self.playbooks),
            "schedules_created": len(self.created),
            "schedules_updated": len(self.updated),
            "schedules_disabled": len(self.disabled),
        }


# --------------------------------------------------------------------------- pure decisions


def schedule_fields(entry: ScheduleConfig) -> dict[str, Any]:
    """The schedule columns `entry` declares (all of them, defaults included), minus `enabled`.

    `run_as_user_id` is also the owner, and everything written here is marked `from_config`.
    """
    fields = {
        _FIELD_OF[key]: value for key, value in entry.model_dump().items() if key not in _ENABLEMENT
    }
    return fields | {"owner_user_id": entry.run_as_user_id, "from_config": True}


def new_schedule(entry: ScheduleConfig, *, now: datetime) -> Schedule:
    """The schedule to create for an entry that matches no stored schedule."""
    return Schedule(
        **schedule_fields(entry),
        enabled=entry.enabled,
        created_by=CONFIG_AUTHOR,
        last_edited_by=CONFIG_AUTHOR,
        created_at=now,
        updated_at=now,
    )


def schedule_changes(current: Schedule, entry: ScheduleConfig) -> dict[str, Any]:
    """The columns to write so `current` matches `entry`; empty when it already does."""
    desired = schedule_fields(entry) | _enablement(current, entry)
    changes = {key: value for key, value in desired.items() if getattr(current, key) != value}
    if not changes:
        return {}
    return changes | {"last_edited_by": CONFIG_AUTHOR}


def _enablement(current: Schedule, entry: ScheduleConfig) -> dict[str, Any]:
    if not current.enabled and (_auto_paused(current) or _fired_once(current, entry)):
        return {"enabled": False, "paused_reason": current.paused_reason}
    return {"enabled": entry.enabled, "paused_reason": None}


def _auto_paused(schedule: Schedule) -> bool:
    """Paused by the engine (repeated failures), not by the file."""
    return schedule.paused_reason is not None and schedule.paused_reason != REMOVED_REASON


def _fired_once(current: Schedule, entry: ScheduleConfig) -> bool:
    """A one_time schedule that ran at (or after) the instant the file still gives it."""
    return (
        entry.schedule_type is ScheduleType.ONE_TIME
        and current.scheduled_at is not None
        and current.scheduled_at == entry.scheduled_at
        and current.last_executed_at is not None
        and current.last_executed_at >= current.scheduled_at
    )


def removal_changes(current: Schedule) -> dict[str, Any]:
    """The columns to write for a config-made schedule whose entry left the file.

    An enabled one is disabled with `REMOVED_REASON`; a disabled one keeps its reason.
    """
    if not current.enabled:
        return {}
    return {"enabled": False, "paused_reason": REMOVED_REASON, "last_edited_by": CONFIG_AUTHOR}


def new_playbook(entry: PlaybookConfig, *, now: datetime) -> Playbook:
    """The playbook `entry` declares (the store keeps the first `created_at` on upsert)."""
    return Playbook(
        id=entry.id,
        org_id=entry.org,
        title=entry.title,
        body=entry.body,
        macro=entry.macro,
        created_by=CONFIG_AUTHOR,
        updated_by=CONFIG_AUTHOR,
        created_at=now,
        updated_at=now,
    )


def playbook_differs(current: Playbook | None, entry: PlaybookConfig) -> bool:
    """Whether the stored playbook (None: missing or deleted) must be written."""
    if current is None:
        return True
    stored = (current.org_id, current.title, current.body, current.macro)
    return stored != (entry.org, entry.title, entry.body, entry.macro)


# --------------------------------------------------------------------------- applying


async def apply_bootstrap(
    config: Config, store: Store, events: ScheduleChanges, *, now: datetime
) -> BootstrapResult:
    """Make the store match the file's playbooks and schedules (see the module docstring).

    Each object is written in its own transaction; an error from the store propagates and
    leaves the objects before it applied (applying the file again finishes the job).
    """
    playbooks = [p.id for p in config.playbooks if await _apply_playbook(store, p, now)]
    created: list[str] = []
    updated: list[str] = []
    for entry in config.schedules:
        schedule, is_new = await _apply_schedule(store, entry, now)
        if schedule is not None:
            (created if is_new else updated).append(schedule.id)
            await events.changed(schedule)
    disabled = await _disable_removed(store, events, config.schedules, now)
    return BootstrapResult(tuple(playbooks), tuple(created), tuple(updated), tuple(disabled))


async def _apply_playbook(store: Store, entry: PlaybookConfig, now: datetime) -> bool:
    try:
        current: Playbook | None = await store.get_playbook(entry.id)
    except NotFound:
        current = None
    if not playbook_differs(current, entry):
        return False
    await store.upsert_playbook(new_playbook(entry, now=now))
    return True


async def _apply_schedule(
    store: Store, entry: ScheduleConfig, now: datetime
) -> tuple[Schedule | None, bool]:
    """(the schedule written or None if nothing changed, whether it was created)."""
    current = await store.find_schedule_by_name(entry.org, entry.name)
    if current is None:
        return await store.create_schedule(new_schedule(entry, now=now), now=now), True
    changes = schedule_changes(current, entry)
    if not changes:
        return None, False
    return await store.update_schedule(current.id, changes, now=now), False


async def _disable_removed(
    store: Store, events: ScheduleChanges, entries: Sequence[ScheduleConfig], now: datetime
) -> list[str]:
    declared = {(entry.org, entry.name) for entry in entries}
    disabled = []
    for schedule in await store.list_config_schedules():
        changes = removal_changes(schedule)
        if (schedule.org_id, schedule.name) in declared or not changes:
            continue
        written = await store.update_schedule(schedule.id, changes, now=now)
        await events.changed(written)
        disabled.append(written.id)
    return disabled
