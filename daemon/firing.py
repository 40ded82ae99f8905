"""Pure firing decisions: timers, catch-up, overlap, pacing and identity, time as a parameter.

Nothing here reads the clock, the database or the network. The engine asks these functions
what to do with an instant and carries the answer out, so every rule of DESIGN sections 3
and 4 that is a decision (not an effect) can be tested with a table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from storage.domain import Schedule
from storage.enums import Overlap, RunTrigger, ScheduleType
from storage.identities import Directory
from storage.timing import jitter_offset, next_run_after

MISSED_COUNT_CAP = 10_000
"""Missed instants are counted up to this many; beyond it the count is reported "at least"."""

_TICK = timedelta(microseconds=1)
_FIRST_LOOKBACK = timedelta(minutes=1)


def natural_trigger(schedule: Schedule) -> RunTrigger:
    """The trigger of a scheduled (not manual, not catch-up) fire of `schedule`."""
    if schedule.schedule_type == ScheduleType.ONE_TIME:
        return RunTrigger.ONE_TIME
    return RunTrigger.CRON


def next_after_fire(schedule: Schedule, instant: datetime) -> datetime | None:
    """Where `next_run_at` goes once `instant` has fired: the next instant, or None.

    A one_time schedule has nothing after its one instant (`next_run_after` would hand its
    `scheduled_at` back, since it fires even when that instant has passed).
    """
    if schedule.schedule_type == ScheduleType.ONE_TIME:
        return None
    key = (
        schedule.cron,
        schedule.timezone,
        schedule.start_at,
        schedule.end_at,
        schedule.is_active,
        instant,
    )
    following = _FOLLOWING.get(key, _UNKNOWN)
    if following is _UNKNOWN:
        if len(_FOLLOWING) >= _FOLLOWING_SIZE:
            _FOLLOWING.clear()
        following = _FOLLOWING[key] = next_run_after(schedule, instant)
    return following  # type: ignore[return-value]


# A memo of the pure function above, by everything it reads: schedules sharing a cron and
# an instant (thousands of `0 9 * * 1-5` at 09:00) compute the next instant once per refill.
_FOLLOWING: dict[tuple[object, ...], datetime | None] = {}
_FOLLOWING_SIZE = 4096
_UNKNOWN = object()


@dataclass(frozen=True, slots=True)
class Timer:
    """A fire held in memory: `instant` is nominal, `fire_at` adds the schedule's jitter.

    `following` is the instant after `instant`, computed once (it bounds the jitter and is
    where `next_run_at` moves after the fire); it is valid while the schedule's `version`
    is unchanged. `schedule` is the schedule the timer was made from: while its `version`
    is unchanged, its definition (prompt, identity, overlap...) is still the stored one.
    """

    schedule_id: str
    version: int
    instant: datetime
    fire_at: datetime
    following: datetime | None
    schedule: Schedule = field(compare=False, repr=False)


def timer_for(schedule: Schedule, instant: datetime) -> Timer:
    """The timer that fires `schedule` at its nominal `instant`."""
    following = next_after_fire(schedule, instant)
    fire_at = instant + jitter_offset(schedule, instant, following)
    return Timer(schedule.id, schedule.version, instant, fire_at, following, schedule)


def is_behind(next_run_at: datetime, now: datetime, grace: float) -> bool:
    """Whether an instant nobody holds a timer for was missed (more than `grace` s ago).

    An instant within the grace is still fired as an ordinary fire; an older one goes through
    the catch-up rules.
    """
    return (now - next_run_at).total_seconds() > grace


# --- catch-up -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MissedSpan:
    """Consecutive instants of one schedule that were missed, counted up to a cap."""

    first: datetime
    last: datetime
    count: int
    at_least: bool = False

    def describe(self) -> str:
        """The error of the `missed` run that records the span."""
        if self.count == 1 and not self.at_least:
            return f"missed the fire at {self.first.isoformat()}"
        count = f"at least {self.count}" if self.at_least else str(self.count)
        return f"missed {count} fires between {self.first.isoformat()} and {self.last.isoformat()}"


@dataclass(frozen=True, slots=True)
class CatchupPlan:
    """What to do about a schedule whose instants from `first_missed` on were missed.

    `catchup_at`: the one missed instant to fire now (trigger `catchup`), or None.
    `missed`: the other missed instants, recorded as one `missed` run at `missed.first`.
    `next_run_at`: where the schedule's `next_run_at` goes (the first instant after `now`;
    None for a one_time schedule, which is disabled once its instant is dealt with).
    """

    catchup_at: datetime | None
    missed: MissedSpan | None
    next_run_at: datetime | None
    window: float

    def missed_error(self) -> str:
        """The error of the `missed` run: what was missed and why it was not caught up."""
        assert self.missed is not None
        if self.catchup_at is None:
            return f"{self.missed.describe()}: older than the {self.window:g}s catch-up window"
        return f"{self.missed.describe()}; only the latest, {self.catchup_at.isoformat()}, ran"


def catchup_window(schedule: Schedule, default: float) -> float:
    """Seconds a missed instant stays worth a catch-up: the schedule's own, else `default`."""
    return schedule.catchup_window_s if schedule.catchup_window_s is not None else default


def plan_catchup(
    schedule: Schedule,
    first_missed: datetime,
    now: datetime,
    *,
    default_window: float,
    cap: int = MISSED_COUNT_CAP,
) -> CatchupPlan:
    """At most one catch-up per schedule: the latest missed instant, if within the window.

    `first_missed` is the schedule's pending `next_run_at` (at or before `now`). Every
    instant from it up to `now` was missed; the latest fires once as a catch-up when it is at
    most the catch-up window old, and all others are summarised in one missed span.
    """
    window = catchup_window(schedule, default_window)
    following = next_after_fire(schedule, now)
    span = missed_span(schedule, first_missed, now, cap=cap)
    if (now - span.last).total_seconds() > window:
        return CatchupPlan(None, span, following, window)
    return CatchupPlan(span.last, _older_than_latest(schedule, span), following, window)


def _older_than_latest(schedule: Schedule, span: MissedSpan) -> MissedSpan | None:
    """The span without its latest instant (which is being caught up), or None if empty."""
    if span.count == 1 and not span.at_least:
        return None
    before = latest_at_or_before(schedule, span.last - _TICK, floor=span.first)
    count = span.count if span.at_least else span.count - 1
    return MissedSpan(span.first, before, count, span.at_least)


def missed_span(schedule: Schedule, first: datetime, bound: datetime, *, cap: int) -> MissedSpan:
    """The instants of `schedule` from `first` (one of its instants) up to `bound` inclusive.

    Counting stops at `cap` instants (then `at_least` is set); `last` is exact either way.
    """
    count, last = 1, first
    while True:
        following = next_after_fire(schedule, last)
        if following is None or following > bound:
            return MissedSpan(first, last, count)
        if count >= cap:
            latest = latest_at_or_before(schedule, bound, floor=following)
            return MissedSpan(first, latest, count, at_least=True)
        count, last = count + 1, following


def latest_at_or_before(schedule: Schedule, bound: datetime, *, floor: datetime) -> datetime:
    """The latest instant of `schedule` at or before `bound`, given `floor` is one of them.

    Looks back from `bound` over a doubling span until an instant falls inside, then walks
    forward: the cost follows the schedule's cadence, not the length of the gap.
    """
    lookback = _FIRST_LOOKBACK
    while True:
        start = max(bound - lookback, floor - _TICK)
        candidate = next_after_fire(schedule, start)
        if candidate is not None and candidate <= bound:
            return _last_up_to(schedule, candidate, bound)
        if start < floor:  # unreachable for a true floor: it is itself an instant <= bound
            return floor
        lookback *= 2


def _last_up_to(schedule: Schedule, instant: datetime, bound: datetime) -> datetime:
    while (following := next_after_fire(schedule, instant)) is not None and following <= bound:
        instant = following
    return instant


# --- overlap ------------------------------------------------------------------------------


class OverlapAction(StrEnum):
    FIRE = "fire"
    SKIP = "skip"
    BUFFER = "buffer"


def overlap_action(schedule: Schedule, *, in_flight: int, buffered: bool) -> OverlapAction:
    """What to do with a due fire while `in_flight` runs of the schedule are still launching.

    `skip` records a skipped run; `buffer_one` holds one fire until the previous run ends
    (a second one while one is held is skipped); `allow` fires in parallel. A one_time
    schedule's single instant always fires: skipping it would lose it for good.
    """
    one_time = schedule.schedule_type == ScheduleType.ONE_TIME
    if in_flight == 0 or schedule.overlap == Overlap.ALLOW or one_time:
        return OverlapAction.FIRE
    if schedule.overlap == Overlap.BUFFER_ONE and not buffered:
        return OverlapAction.BUFFER
    return OverlapAction.SKIP


# --- catch-up pacing ----------------------------------------------------------------------


def releasable(elapsed: float, rate: float, released: int) -> int:
    """How many catch-up launches may start `elapsed` s into pacing, `released` already gone.

    The first starts at once, then one every 1/rate seconds: never more than `rate` a second.
    """
    # The epsilon keeps float rounding (29 / 50 * 50 = 28.999...) from stalling a release.
    return max(0, math.floor(elapsed * rate + 1e-6) + 1 - released)


def seconds_until_release(elapsed: float, rate: float, released: int) -> float:
    """How long until the next catch-up launch may start."""
    return max(0.0, released / rate - elapsed)


# --- identity -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FireIdentity:
    """Who a fire runs as. `refusal` says why it may not run at all (then nothing launches)."""

    user_id: str
    as_user: bool
    refusal: str | None = None


def fire_identity(schedule: Schedule, directory: Directory) -> FireIdentity:
    """The schedule's run-as user, re-checked now, or the bot user when it has none."""
    user_id = schedule.run_as_user_id
    if user_id is None:
        return FireIdentity(directory.bot_user_id, as_user=False)
    refusal = directory.run_as_refusal(user_id, schedule.org_id)
    if refusal is not None:
        refusal = f"cannot run as user '{user_id}': {refusal}"
    return FireIdentity(user_id, as_user=True, refusal=refusal)
