"""The timer book: which schedules fire at which instant, over APScheduler.

APScheduler (3.x, memory job store) is the timer and nothing else: one date job per distinct
fire instant (jitter included), whose callback hands the instant to the engine. The book
keeps, for each schedule, the one timer it holds (`Timer`, see `daemon.firing`), and for each
instant the schedules due then, so a burst of thousands of schedules due at 09:00 is one job.

Invariants: a schedule holds at most one timer; an instant has a job exactly while some
schedule's timer fires at it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from apscheduler.executors.base import BaseExecutor, run_job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from daemon import metrics
from daemon.firing import Timer


class _LoopTimerScheduler(AsyncIOScheduler):  # type: ignore[misc]  # untyped library
    """APScheduler's asyncio scheduler, its timer handing due jobs over in its own turn.

    Its timer calls `wakeup`, which is made thread-safe by posting itself again with
    `call_soon_threadsafe`: one more turn of the loop, behind every callback ready by then,
    between the instant and its job. Under load a turn takes milliseconds. The timer already
    runs on the loop, so here it processes the due jobs at once; `wakeup` from elsewhere (a
    job added) keeps its thread-safe path.
    """

    def _start_timer(self, wait_seconds: float | None) -> None:
        self._stop_timer()
        if wait_seconds is not None:
            self._timeout: Any = self._eventloop.call_later(wait_seconds, self._on_timer)

    def _on_timer(self) -> None:
        self._stop_timer()
        self._start_timer(self._process_jobs())


class _InlineExecutor(BaseExecutor):  # type: ignore[misc]  # untyped library
    """Runs a due job's callable at once, in the timer's own callback on the loop.

    APScheduler's asyncio executor starts a coroutine job as a task: one more turn of the
    loop between the instant and the engine. The book's one callable only hands the instant
    to the engine, which takes it without blocking, so it runs in place. The executor's own
    bookkeeping of the job (its instance count, its events) follows in the next turn, as
    `submit_job` counts the instance only once this returns.
    """

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        events = run_job(job, job._jobstore_alias, run_times, self._logger.name)
        asyncio.get_running_loop().call_soon(self._run_job_success, job.id, events)


class TimerBook:
    """Timers by schedule and by fire instant; `on_due(fire_at)` runs when an instant comes.

    `on_due` runs in the timer's callback, on the loop: it must hand the instant on (start a
    task) rather than do the work itself.
    """

    def __init__(self, on_due: Callable[[datetime], None]) -> None:
        self._on_due = on_due
        self._scheduler = _LoopTimerScheduler(
            timezone="UTC", executors={"default": _InlineExecutor()}
        )
        self._timers: dict[str, Timer] = {}
        self._batches: dict[datetime, set[str]] = {}

    def __len__(self) -> int:
        return len(self._timers)

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        """Stop the clock: no instant fires any more (the timers held are forgotten)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def schedule_ids(self) -> list[str]:
        """The schedules holding a timer (a copy: the caller may drop some)."""
        return list(self._timers)

    def held(self, schedule_id: str) -> Timer | None:
        return self._timers.get(schedule_id)

    def hold(self, timer: Timer) -> None:
        """Hold `timer`, replacing the schedule's previous one."""
        self.drop(timer.schedule_id)
        self._timers[timer.schedule_id] = timer
        batch = self._batches.get(timer.fire_at)
        if batch is None:
            batch = self._batches[timer.fire_at] = set()
            self._scheduler.add_job(
                self._on_due,
                DateTrigger(run_date=timer.fire_at),
                args=[timer.fire_at],
                id=_job_id(timer.fire_at),
                misfire_grace_time=None,
                replace_existing=True,
            )
        batch.add(timer.schedule_id)
        metrics.TIMERS_HELD.set(len(self._timers))

    def drop(self, schedule_id: str) -> None:
        """Forget the schedule's timer, if it holds one."""
        timer = self._timers.pop(schedule_id, None)
        if timer is None:
            return
        metrics.TIMERS_HELD.set(len(self._timers))
        batch = self._batches.get(timer.fire_at)
        if batch is None:
            return
        batch.discard(schedule_id)
        if not batch:
            del self._batches[timer.fire_at]
            with contextlib.suppress(JobLookupError):
                self._scheduler.remove_job(_job_id(timer.fire_at))

    def take(self, fire_at: datetime) -> list[Timer]:
        """The timers that fire at `fire_at`, now no longer held (the instant came)."""
        taken = []
        for schedule_id in self._batches.pop(fire_at, set()):
            timer = self._timers.get(schedule_id)
            if timer is not None and timer.fire_at == fire_at:
                del self._timers[schedule_id]
                taken.append(timer)
        metrics.TIMERS_HELD.set(len(self._timers))
        return taken


def _job_id(fire_at: datetime) -> str:
    return f"fire@{fire_at.isoformat()}"
