"""The `fire_batch_claimed` debug event: when a fire batch's claim was known committed.

One event a batch, naming its runs, so a reader (bench/burst.py) can place every run's claim
commit without a column or per-run work at the default level; at info it is not built.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
import structlog
from structlog.testing import capture_logs

from storage.enums import RunStatus
from storage.identities import DirectoryRef
from storage.store import Store
from tests.engine_harness import SETTINGS, EngineHarness, now
from tests.session_service import SessionService


@pytest.fixture
async def harness(
    store: Store, directory: DirectoryRef, service: SessionService, http: aiohttp.ClientSession
) -> AsyncIterator[EngineHarness]:
    started = EngineHarness(store, directory, service, http, SETTINGS)
    await started.engine.start()
    yield started
    await started.engine.stop(0.5)


@pytest.fixture
def at_level() -> Iterator[Any]:
    """`at_level(logging.X)`: filter the engine's events at X; defaults restored after."""

    def configure(level: int) -> None:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level))

    structlog.reset_defaults()
    yield configure
    structlog.reset_defaults()


def claimed_events(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == "fire_batch_claimed"]


async def test_each_run_of_a_batch_is_named_once_with_its_claim_commit(
    harness: EngineHarness, at_level: Any
) -> None:
    at_level(logging.DEBUG)
    at = now() + timedelta(seconds=1)
    with capture_logs() as logs:
        schedules = [await harness.create(name=f"s{i}", scheduled_at=at) for i in range(12)]
        runs = [(await harness.finished_runs(s.id, 1))[0] for s in schedules]
    events = claimed_events(logs)
    named = [run_id for event in events for run_id in event["run_ids"]]
    assert sorted(named) == sorted(run.id for run in runs)  # each run once, no other
    commits = {run_id: event["committed_at"] for event in events for run_id in event["run_ids"]}
    for run in runs:
        assert run.status == RunStatus.SUCCEEDED and run.dispatched_at is not None
        # Committed after the instant and before the run was marked dispatched.
        assert at.timestamp() <= commits[run.id] <= run.dispatched_at.timestamp()


async def test_at_info_no_batch_event_is_logged(harness: EngineHarness, at_level: Any) -> None:
    at_level(logging.INFO)
    with capture_logs() as logs:
        schedule = await harness.create(name="s", scheduled_at=now() + timedelta(seconds=1))
        (run,) = await harness.finished_runs(schedule.id, 1)
    assert run.status == RunStatus.SUCCEEDED
    assert [e for e in logs if e["event"] == "schedule_fired"]  # info events still arrive
    assert claimed_events(logs) == []
