"""Reporting finished runs: one log event and metric per outcome, then the daemon's hook.

Every run that ends — launched, interrupted by a crash, dropped from the catch-up queue, its
followed session ended — is reported here once, in the order its transaction committed. A
run that became (or stays) `running` is only logged: its end is what is reported.
`on_finished` is the daemon's (notifications); `on_inactive` lets the engine drop the timers
of a schedule the finish disabled (auto-pause, a one_time schedule's fire).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import structlog

from daemon import metrics
from storage.domain import FinishedRun
from storage.enums import RunStatus

log = structlog.get_logger("agentcron.engine")


class OutcomeReporter:
    def __init__(
        self,
        on_finished: Callable[[FinishedRun], None],
        on_inactive: Callable[[str], None],
    ) -> None:
        self._on_finished = on_finished
        self._on_inactive = on_inactive

    def __call__(self, finished: Iterable[FinishedRun]) -> None:
        for item in finished:
            self._log(item)
            if not item.schedule.is_active:
                self._on_inactive(item.run.schedule_id)
            if not item.run.status.is_final:
                continue  # a followed session still running: nothing to tell yet
            try:
                self._on_finished(item)
            except Exception:
                log.exception("on_finished_failed", schedule_id=item.run.schedule_id)

    @staticmethod
    def _log(item: FinishedRun) -> None:
        run = item.run
        about = {"schedule_id": run.schedule_id, "run_id": run.id}
        if run.status == RunStatus.RUNNING:
            log.info(
                "run_running",
                **about,
                session_id=run.session_id,
                session_url=run.session_url,
                session_status=run.session_status,
            )
            return
        metrics.RUNS.labels(run.status.value).inc()
        if run.status == RunStatus.SUCCEEDED:
            log.info(
                "run_succeeded",
                **about,
                session_id=run.session_id,
                session_url=run.session_url,
                session_status=run.session_status,
                attempts=run.attempts,
            )
        elif run.status == RunStatus.INTERRUPTED:
            log.warning("run_interrupted", **about, error=run.error)
        elif run.status == RunStatus.MISSED:
            metrics.MISSED_RUNS.inc()
            log.warning("run_missed", **about, error=run.error)
        elif run.status == RunStatus.SKIPPED:
            log.info("run_skipped", **about, error=run.error)
        else:
            log.warning("run_failed", **about, error=run.error, attempts=run.attempts)
        if item.auto_paused:
            log.warning("schedule_auto_paused", **about, paused_reason=item.schedule.paused_reason)
