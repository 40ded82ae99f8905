"""Following a launched session to its end (DESIGN section 9).

After a successful launch with `follow` on, the run is `running`; `Follower.follow` then
reads the session's state every `interval` seconds, at most `max_concurrent_follows` reads
in flight at once, until the session ends (the run `succeeded` or `failed`, with the
session's own status and message as its error) or `timeout` seconds after the launch (the
run `failed`: "session still <status> after <timeout>"). A read that fails transiently
is tried again at the next interval. A newer session status is recorded on the run as it
is seen, counting nothing: only the end drives the schedule's books.

The follow runs inside the run's launch task, so the run stays "in progress" for the
overlap policies until its session ends. Stopping the daemon ends every follow at once and
leaves its run `running`; the next start follows it again (`daemon.firing.plan_recovery`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp
import structlog

from daemon import metrics
from daemon.config import LauncherConfig
from daemon.finisher import Finisher
from daemon.sessions import PollFailed, SessionPoller, SessionState, build_poller
from storage.clock import Clock
from storage.domain import Run, RunOutcome, Schedule
from storage.enums import RunStatus

log = structlog.get_logger("agentcron.engine")


@dataclass(frozen=True, slots=True)
class FollowPlan:
    """How a launcher's sessions are followed. `launches`: whether new launches are followed
    (`follow = true`); runs already `running` are followed to their end either way."""

    poller: SessionPoller
    interval: float
    timeout: float
    launches: bool = True
    launcher: str = "default"


@dataclass(frozen=True, slots=True)
class Followed:
    """A `running` run to follow: its session, its schedule (whose launcher reads the
    session), and whether to read at once (after a restart) or one interval after the launch."""

    run: Run
    session_id: str
    schedule: Schedule
    at_once: bool = False

    @property
    def org_id(self) -> str:
        return self.schedule.org_id


def _seconds(value: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:g}s"


class Follower:
    """Follows running runs' sessions; `limit()` bounds the reads in flight (read when the
    follower is made and at `resize`)."""

    def __init__(self, clock: Clock, *, finisher: Finisher, limit: Callable[[], int]) -> None:
        self.clock = clock
        self._finisher = finisher
        self._reads = asyncio.Semaphore(limit())
        self._closed = asyncio.Event()

    def resize(self, limit: int) -> None:
        """Reads started from now on wait for the new limit; those in flight go on."""
        self._reads = asyncio.Semaphore(limit)

    def close(self) -> None:
        """End every follow now, leaving its run `running` (the next start follows it)."""
        self._closed.set()

    async def follow(self, item: Followed, plan: FollowPlan | None) -> None:
        """Follow `item` until its session ends and the run's end is committed, or until the
        follower closes. Without a plan (the launcher no longer reads session status) the
        run fails at once, saying so."""
        if self._closed.is_set():
            return
        if plan is None:
            error = "the session can no longer be followed: the launcher reads no session status"
            await self._end(item, RunStatus.FAILED, error, item.run.session_status)
            return
        metrics.SESSIONS_RUNNING.labels(plan.launcher).inc()
        work = asyncio.create_task(self._until_end(item, plan), name=f"follow-{item.run.id}")
        closed = asyncio.create_task(self._closed.wait())
        try:
            await asyncio.wait({work, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            metrics.SESSIONS_RUNNING.labels(plan.launcher).dec()
            for task in (work, closed):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(work, closed)

    async def _until_end(self, item: Followed, plan: FollowPlan) -> None:
        deadline = item.run.started_at + timedelta(seconds=plan.timeout)
        said = item.run.session_status
        if not item.at_once:
            await self._pause(plan.interval, deadline)
        while True:
            try:
                state = await self._read(item, plan)
            except _Unfollowable as exc:
                error = f"the session can no longer be followed: {exc}"
                await self._end(item, RunStatus.FAILED, error, said)
                return
            if state is not None and state.terminal:
                await self._finish(item, state)
                return
            if state is not None and state.status != said:
                said = state.status
                await self._record(item, said)
            if self.clock.now() >= deadline:
                error = f"session still {said or 'running'} after {_seconds(plan.timeout)}"
                await self._end(item, RunStatus.FAILED, error, said)
                return
            await self._pause(plan.interval, deadline)

    async def _pause(self, interval: float, deadline: datetime) -> None:
        """Wait `interval` s, or until the deadline if that comes first."""
        left = (deadline - self.clock.now()).total_seconds()
        await asyncio.sleep(max(0.0, min(interval, left)))

    async def _read(self, item: Followed, plan: FollowPlan) -> SessionState | None:
        """The session's state, or None when it could not be read this time."""
        about = {"schedule_id": item.run.schedule_id, "run_id": item.run.id}
        async with self._reads:
            try:
                state = await plan.poller.poll(item.run, item.session_id, schedule=item.schedule)
            except PollFailed as exc:
                if not exc.transient:
                    metrics.SESSION_POLLS.labels("refused").inc()
                    raise _Unfollowable(str(exc)) from exc
                metrics.SESSION_POLLS.labels("transient_error").inc()
                log.warning("session_poll_failed", **about, error=str(exc))
                return None
        outcome = "running" if not state.terminal else "ended"
        metrics.SESSION_POLLS.labels(outcome).inc()
        return state

    async def _record(self, item: Followed, said: str) -> None:
        """A newer status of a session still running: on the run, nothing counted."""
        outcome = RunOutcome(
            item.run.id,
            RunStatus.RUNNING,
            finished_at=self.clock.now(),
            attempts=item.run.attempts,
            error=item.run.error,
            session_status=said,
        )
        await self._finisher.finish(outcome)

    async def _finish(self, item: Followed, state: SessionState) -> None:
        if state.succeeded:
            await self._end(item, RunStatus.SUCCEEDED, None, state.status)
            return
        error = f"session ended {state.status}"
        if state.message:
            error = f"{error}: {state.message}"
        await self._end(item, RunStatus.FAILED, error, state.status)

    async def _end(
        self, item: Followed, status: RunStatus, error: str | None, said: str | None
    ) -> None:
        now = self.clock.now()
        metrics.FOLLOW_SECONDS.observe(max(0.0, (now - item.run.started_at).total_seconds()))
        outcome = RunOutcome(
            item.run.id,
            status,
            finished_at=now,
            attempts=item.run.attempts,
            identity=item.run.identity,
            error=error,
            session_status=said,
        )
        await self._finisher.finish(outcome)


class _Unfollowable(Exception):
    """The session's service refused to tell its status (not a passing fault)."""


def follow_plan(
    config: LauncherConfig, *, http: aiohttp.ClientSession, name: str = "default"
) -> FollowPlan | None:
    """How the launcher `config` describes has its sessions followed; None if its type reads
    no session status. Runs left `running` are followed with it even when `follow` is off."""
    poller = build_poller(config, http=http)
    if poller is None:
        return None
    return FollowPlan(
        poller,
        interval=config.follow_interval,
        timeout=config.follow_timeout,
        launches=config.follow,
        launcher=name,
    )
