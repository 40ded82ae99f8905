"""Carrying out one run's launch: identity check, dispatch mark, the launcher, the outcome.

A run's request leaves only once the run is durably marked as dispatched: after a crash, a
run still `launching` without the mark never reached the session service and may be
launched again (see `daemon.firing.plan_recovery`). Every outcome, whatever happened, goes
to the finisher, so no launch leaves its run `launching` while the process lives. A
launcher whose sessions are followed leaves its run `running`, and the same task follows
the session to its end (`daemon.following`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from daemon import metrics
from daemon.finisher import Finisher
from daemon.firing import FireIdentity
from daemon.following import Followed, Follower, FollowPlan
from daemon.launcher_routes import LauncherRoutes
from daemon.launchers import Launcher, LaunchRequest, LaunchResult
from daemon.slots import LaunchSlots
from storage.clock import Clock
from storage.domain import Run, RunOutcome, Schedule
from storage.enums import PromptFormat, RunStatus, RunTrigger
from storage.errors import StoreUnavailable
from storage.prompts import PromptError, PromptFacts, render_prompt
from storage.store import Store

log = structlog.get_logger("agentcron.engine")


@dataclass(frozen=True, slots=True)
class Launch:
    """One run to launch. `note` goes into the run's error (a relaunch says so); `resend`:
    the request was dispatched before, by a process that died (no new mark is needed)."""

    schedule: Schedule
    run: Run
    identity: FireIdentity
    note: str | None = None
    resend: bool = False


class LaunchRunner:
    """Launches runs through their schedule's launcher within the slots' sending limit."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        slots: LaunchSlots[Any],
        finisher: Finisher,
        launchers: LauncherRoutes,
        follower: Follower,
    ) -> None:
        self.store = store
        self.clock = clock
        self.slots = slots
        self.finisher = finisher
        self.launchers = launchers
        self.follower = follower

    async def run(self, launch: Launch) -> None:
        """Launch, then finish the run with the outcome (returns once it is committed); a
        followed session is then followed to its end."""
        routes = self.launchers  # a reload may swap them: this run stays on these
        plan = routes.follow_plan(launch.schedule)
        launched_at = self.clock.now()
        outcome = await self._outcome_of(launch, routes, plan)
        await self.finisher.finish(outcome)
        if outcome.status == RunStatus.RUNNING and outcome.session_id is not None:
            run = dataclasses.replace(
                launch.run,
                status=RunStatus.RUNNING,
                started_at=launched_at,
                attempts=outcome.attempts,
                identity=outcome.identity,
                session_id=outcome.session_id,
                error=outcome.error,
            )
            followed = Followed(run, outcome.session_id, launch.schedule)
            await self.follower.follow(followed, plan)

    async def resume(self, item: Followed) -> None:
        """Follow a run left `running` by an earlier process to its end."""
        await self.follower.follow(item, self.launchers.follow_plan(item.schedule))

    async def _outcome_of(
        self, launch: Launch, routes: LauncherRoutes, plan: FollowPlan | None
    ) -> RunOutcome:
        if launch.identity.refusal is not None:
            result = LaunchResult(attempts=0, error=launch.identity.refusal)
            return self._outcome(launch, result)
        try:
            schedule = await self._with_prompt(launch)
        except (PromptError, StoreUnavailable) as exc:
            # Never sent: a prompt with a hole in it is a failure of the schedule.
            return self._outcome(launch, LaunchResult(attempts=0, error=f"not launched: {exc}"))
        session_id = None
        if schedule.is_stateful:
            session_id = schedule.target_devin_id or schedule.stateful_session_id
        identity = launch.identity
        request = LaunchRequest(
            launch.run.id, schedule, identity.user_id, identity.as_user, session_id
        )
        name, launcher = routes.route(schedule)
        if launcher is None:
            result = LaunchResult(attempts=0, error=f"launcher '{name}' is not configured")
            metrics.LAUNCHES.labels(name, "failed").inc()
            return self._outcome(launch, result)
        async with self.slots.sending():
            started = time.monotonic()
            try:
                result = await self._dispatch(launcher, request, resend=launch.resend)
            except Exception as exc:  # a launcher bug must not leave the run launching
                log.exception("launcher_crashed", schedule_id=schedule.id, run_id=launch.run.id)
                result = LaunchResult(attempts=1, error=f"launcher error: {exc!r}")
            finally:
                metrics.LAUNCH_DURATION.observe(time.monotonic() - started)
        metrics.LAUNCHES.labels(name, "succeeded" if result.ok else "failed").inc()
        followed = plan is not None and plan.launches and result.session_id is not None
        return self._outcome(launch, result, followed=followed)

    async def _with_prompt(self, launch: Launch) -> Schedule:
        """The schedule with the prompt this run sends (a template rendered for its instant)."""
        schedule, run = launch.schedule, launch.run
        if schedule.prompt_format != PromptFormat.TEMPLATE:
            return schedule
        facts = PromptFacts(
            scheduled_for=run.scheduled_for,
            run_id=run.id,
            last_run=await self.store.previous_run(schedule.id, run.scheduled_for),
            last_success_at=await self.store.last_success_at(schedule.id),
        )
        # Off the loop: a render may take up to its time limit.
        prompt = await asyncio.to_thread(render_prompt, schedule, facts)
        return dataclasses.replace(schedule, prompt=prompt)

    async def _dispatch(
        self, launcher: Launcher, request: LaunchRequest, *, resend: bool
    ) -> LaunchResult:
        """Send the launch request, once its run is durably marked as dispatched."""
        if not resend:
            try:
                await self.store.mark_dispatched(request.run_id, at=self.clock.now())
            except StoreUnavailable as exc:
                return LaunchResult(attempts=0, error=f"not launched: {exc}")
        return await launcher.launch(request)

    def _outcome(
        self, launch: Launch, result: LaunchResult, *, followed: bool = False
    ) -> RunOutcome:
        error = result.error
        if launch.note is not None:
            error = launch.note if error is None else f"{launch.note}; {error}"
        status = RunStatus.SUCCEEDED if result.ok else RunStatus.FAILED
        if result.ok and followed:
            status = RunStatus.RUNNING
        return RunOutcome(
            run_id=launch.run.id,
            status=status,
            finished_at=self.clock.now(),
            attempts=result.attempts,
            identity=launch.identity.user_id,
            session_id=result.session_id,
            session_url=result.session_url,
            error=error,
        )


def log_fired(run: Run, identity: FireIdentity, now: datetime) -> None:
    """A run is about to launch: its event, its lateness against the nominal instant."""
    lateness = (now - run.scheduled_for).total_seconds()
    if run.trigger != RunTrigger.BACKFILL:  # late by request: it would swamp the histogram
        metrics.FIRE_LATENESS.observe(max(lateness, 0.0))
    if run.trigger == RunTrigger.CATCHUP:
        metrics.CATCHUP_RUNS.inc()
    log.info(
        "schedule_fired",
        schedule_id=run.schedule_id,
        run_id=run.id,
        trigger=run.trigger.value,
        identity=identity.user_id,
        lateness_s=round(lateness, 3),
    )
