"""What the edit history records of a change (`storage.history`), as tables."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from storage.domain import Schedule
from storage.enums import HistoryAction, ScheduleType
from storage.history import RECORDED, action_of, entry_of, field_changes

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
BASE = Schedule(
    id="sched-1", org_id="org", name="n", prompt="p", cron="0 9 * * *", created_at=T0, updated_at=T0
)


def edited(**changes: Any) -> Schedule:
    return dataclasses.replace(BASE, **changes)


# (what, changes made to BASE, what the entry lists)
CHANGES: list[tuple[str, dict[str, Any], dict[str, list[Any]]]] = [
    (
        "the cron goes by its wire name",
        {"cron": "0 10 * * *"},
        {"frequency": ["0 9 * * *", "0 10 * * *"]},
    ),
    (
        "a datetime as ISO 8601 with its offset",
        {"end_at": T0},
        {"end_at": [None, "2026-11-23T12:00:00Z"]},
    ),
    (
        "an enum as its value",
        {"schedule_type": ScheduleType.ONE_TIME},
        {"schedule_type": ["recurring", "one_time"]},
    ),
    ("adoption by the file as managed_by", {"from_config": True}, {"managed_by": [None, "config"]}),
    ("a list whole", {"tags": ["a"]}, {"tags": [None, ["a"]]}),
    ("bookkeeping is not listed", {"next_run_at": T0, "consecutive_failures": 3, "version": 9}, {}),
    ("nor who edited, nor when", {"last_edited_by": "x", "updated_at": T0.replace(hour=13)}, {}),
]


@pytest.mark.parametrize(
    ("changes", "listed"), [c[1:] for c in CHANGES], ids=[c[0] for c in CHANGES]
)
def test_an_entry_lists_the_changed_fields_by_wire_name(
    changes: dict[str, Any], listed: dict[str, list[Any]]
) -> None:
    assert field_changes(BASE, edited(**changes)) == listed


# (what, before, after, action)
ACTIONS: list[tuple[str, Schedule | None, Schedule, HistoryAction]] = [
    ("made", None, BASE, HistoryAction.CREATED),
    ("deleted", BASE, edited(deleted_at=T0), HistoryAction.DELETED),
    ("disabled by someone", BASE, edited(enabled=False), HistoryAction.DISABLED),
    (
        "disabled with a reason",
        BASE,
        edited(enabled=False, paused_reason="r"),
        HistoryAction.PAUSED,
    ),
    ("enabled again", edited(enabled=False), BASE, HistoryAction.ENABLED),
    ("anything else", BASE, edited(name="m"), HistoryAction.UPDATED),
]


@pytest.mark.parametrize(
    ("before", "after", "action"), [a[1:] for a in ACTIONS], ids=[a[0] for a in ACTIONS]
)
def test_the_action_names_the_change(
    before: Schedule | None, after: Schedule, action: HistoryAction
) -> None:
    assert action_of(before, after) == action


def test_a_creation_lists_every_value_against_null_and_a_deletion_the_reverse() -> None:
    made = entry_of(None, BASE, by="u", at=T0)
    gone = entry_of(BASE, edited(deleted_at=T0), by="u", at=T0)
    assert made is not None and gone is not None
    assert made.changes["name"] == [None, "n"] and gone.changes["name"] == ["n", None]
    assert {k: v[::-1] for k, v in made.changes.items()} == gone.changes
    assert "slack_channel_id" not in made.changes  # null before and after


def test_no_entry_when_no_recorded_field_changed() -> None:
    assert entry_of(BASE, edited(version=2, updated_at=T0), by="u", at=T0) is None


def test_every_field_a_client_or_the_file_sets_is_recorded() -> None:
    assert {"name", "prompt", "cron", "enabled", "timezone", "stateful"} <= set(RECORDED)
    assert not {"id", "org_id", "next_run_at", "version", "updated_at"} & set(RECORDED)
