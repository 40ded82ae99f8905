"""Org limits: the pure decision as a table, and the counts `OrgUsage` keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.org_limits import (
    LimitRefusal,
    OrgLimits,
    OrgUsage,
    SkipReason,
    counts_in_flight,
    in_flight_at_start,
    limit_refusal,
)
from storage.domain import Run, Schedule
from storage.enums import RunStatus, RunTrigger
from storage.store import OrgLaunch

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CONCURRENCY = SkipReason.ORG_CONCURRENCY
HOURLY = SkipReason.ORG_HOURLY


@pytest.mark.parametrize(
    ("limits", "in_flight", "last_hour", "expected"),
    [
        (OrgLimits(), 10_000, 10_000, None),
        (OrgLimits(max_concurrent_sessions=5), 4, 0, None),
        (
            OrgLimits(max_concurrent_sessions=5),
            5,
            0,
            LimitRefusal(CONCURRENCY, "org limit max_concurrent_sessions=5 reached"),
        ),
        (OrgLimits(max_sessions_per_hour=3), 0, 2, None),
        (
            OrgLimits(max_sessions_per_hour=3),
            0,
            3,
            LimitRefusal(HOURLY, "org limit max_sessions_per_hour=3 reached"),
        ),
        # both reached: the concurrency limit is named (it frees up first)
        (
            OrgLimits(1, 1),
            1,
            1,
            LimitRefusal(CONCURRENCY, "org limit max_concurrent_sessions=1 reached"),
        ),
        (OrgLimits(2, 10), 1, 9, None),
    ],
)
def test_limit_refusal(
    limits: OrgLimits, in_flight: int, last_hour: int, expected: LimitRefusal | None
) -> None:
    assert limit_refusal(limits, in_flight=in_flight, last_hour=last_hour) == expected


@pytest.mark.parametrize(
    ("status", "counts"),
    [
        (RunStatus.LAUNCHING, True),
        (RunStatus.SUCCEEDED, False),
        (RunStatus.FAILED, False),
        (RunStatus.SKIPPED, False),
        (RunStatus.MISSED, False),
        (RunStatus.INTERRUPTED, False),
    ],
)
def test_which_statuses_hold_a_session(status: RunStatus, counts: bool) -> None:
    assert counts_in_flight(status) is counts


def test_admissions_count_until_they_settle() -> None:
    usage = OrgUsage({"org": OrgLimits(max_concurrent_sessions=2)})
    assert usage.admit("org", "r1", NOW) is None
    assert usage.admit("org", "r2", NOW) is None
    refused = usage.admit("org", "r3", NOW)
    assert refused is not None and refused.reason == CONCURRENCY
    assert usage.admit("other-org", "r4", NOW) is None  # limits are per org
    usage.settled("org", "r1", RunStatus.SUCCEEDED)
    assert usage.admit("org", "r3", NOW) is None
    assert usage.counts("org", NOW) == (2, 3)


def test_a_forgotten_admission_gives_its_place_back() -> None:
    usage = OrgUsage({"org": OrgLimits(1, 1)})
    assert usage.admit("org", "r1", NOW) is None
    usage.forget("org", "r1")
    assert usage.counts("org", NOW) == (0, 0)
    assert usage.admit("org", "r2", NOW) is None


def test_launches_leave_the_hourly_count_after_an_hour() -> None:
    usage = OrgUsage({"org": OrgLimits(max_sessions_per_hour=2)})
    usage.admit("org", "r1", NOW)
    usage.admit("org", "r2", NOW + timedelta(minutes=30))
    for run_id in ("r1", "r2"):
        usage.settled("org", run_id, RunStatus.SUCCEEDED)
    assert usage.admit("org", "r3", NOW + timedelta(minutes=59)) is not None
    assert usage.admit("org", "r3", NOW + timedelta(minutes=60)) is None
    assert usage.counts("org", NOW + timedelta(minutes=60)) == (1, 2)


def test_a_manual_run_counts_but_a_recorded_run_is_not_refused_for_itself() -> None:
    usage = OrgUsage({"org": OrgLimits(max_concurrent_sessions=1)})
    usage.record("org", "manual", NOW)
    usage.record("org", "manual", NOW)  # idempotent
    assert usage.counts("org", NOW) == (1, 1)
    assert usage.admit("org", "manual", NOW) is None
    assert usage.admit("org", "cron", NOW) is not None


def test_restored_counts_and_new_limits_apply_to_the_next_admission() -> None:
    usage = OrgUsage()
    launches = [OrgLaunch("org", f"r{i}", NOW - timedelta(minutes=10 * i)) for i in (7, 5, 1)]
    usage.restore([("org", "r1")], launches)
    assert usage.counts("org", NOW) == (1, 2)  # r7 was 70 minutes ago
    assert usage.admit("org", "new", NOW) is None  # no limits yet
    usage.set_limits({"org": OrgLimits(max_sessions_per_hour=3)})
    refused = usage.admit("org", "newer", NOW)
    assert refused is not None and refused.error == "org limit max_sessions_per_hour=3 reached"


def _left(schedule_id: str, status: RunStatus, *, sent: bool) -> Run:
    return Run(
        schedule_id=schedule_id,
        scheduled_for=NOW,
        trigger=RunTrigger.CRON,
        started_at=NOW,
        id=f"{schedule_id}-{status.value}-{'sent' if sent else 'unsent'}",
        status=status,
        dispatched_at=NOW if sent else None,
    )


@pytest.mark.parametrize(
    ("run", "counted"),
    [
        (_left("s", RunStatus.LAUNCHING, sent=False), False),  # admitted when released
        (_left("s", RunStatus.LAUNCHING, sent=True), True),  # its request went out
        (_left("s", RunStatus.RUNNING, sent=True), True),
        (_left("s", RunStatus.RUNNING, sent=False), True),  # running says it was sent
        (_left("gone", RunStatus.RUNNING, sent=True), False),  # its schedule was deleted
    ],
)
def test_the_runs_an_earlier_process_left_in_flight_count_against_their_org(
    run: Run, counted: bool
) -> None:
    schedule = Schedule(
        org_id="org-a", name="s", prompt="p", created_at=NOW, updated_at=NOW, cron="* * * * *"
    )
    expected = [("org-a", run.id)] if counted else []
    assert in_flight_at_start([run], {"s": schedule}) == expected
