"""Following a launched session to its end: a real engine, a real SQLite store, and a
loopback session service answering Devin v3's GET session, whose sessions move through
the states each test scripts (one step per read)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from daemon import metrics
from daemon.engine import Engine
from storage.enums import Overlap, RunStatus
from storage.identities import DirectoryRef
from storage.store import Store
from tests.engine_harness import SETTINGS, EngineHarness, follow_plan, now
from tests.session_service import WORKING, Reply, SessionService

S = RunStatus
FINISHED = ("running", "finished")
TOKEN = "session-token-for-polls"


@pytest.fixture(autouse=True)
def session_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_API_TOKEN", TOKEN)


@pytest.fixture
async def follow(
    store: Store, directory: DirectoryRef, service: SessionService, http: aiohttp.ClientSession
) -> AsyncIterator[Any]:
    """`await follow(follow_timeout=..., **settings)` -> a started EngineHarness whose launches are
    followed every 0.05 s."""
    started: list[Engine] = []

    async def start(follow_timeout: float = 10.0, **settings: Any) -> EngineHarness:
        harness = EngineHarness(
            store,
            directory,
            service,
            http,
            SETTINGS.model_copy(update=settings),
            follow=follow_plan(service, http, timeout=follow_timeout),
        )
        await harness.engine.start()
        started.append(harness.engine)
        return harness

    yield start
    for engine in started:
        await engine.stop(0.5)


def sessions_running() -> float:
    return float(metrics.SESSIONS_RUNNING.labels("default")._value.get())


def polled(outcome: str) -> float:
    return float(metrics.SESSION_POLLS.labels(outcome)._value.get())


async def test_a_followed_run_is_running_until_its_session_finishes(
    follow: Any, service: SessionService
) -> None:
    service.lifecycle = lambda _: [("claimed", None), WORKING]  # then working until told
    harness = await follow()
    schedule = await harness.create()
    ended, polls_before = metrics.FOLLOW_SECONDS._sum.get(), polled("ended")
    with capture_logs() as logs:
        run = await harness.engine.trigger(schedule, by="service-admin")
        (running,) = await harness.run_with_status(schedule.id, [S.RUNNING])
        assert (running.session_id, running.finished_at) == ("devin-1", None)
        assert (await harness.store.get_schedule(schedule.id)).last_executed_at is not None
        await service.wait_for_polls(3)
        assert sessions_running() == 1
        assert (await harness.store.get_run(run.id)).session_status == "running/working"
        service.set_status("devin-1", *FINISHED)
        (done,) = await harness.finished_runs(schedule.id, 1)
    assert sessions_running() == 0 and polled("ended") == polls_before + 1
    assert metrics.FOLLOW_SECONDS._sum.get() > ended
    assert (done.id, done.status, done.error) == (run.id, S.SUCCEEDED, None)
    assert done.session_status == "running/finished" and done.finished_at is not None
    assert done.session_url == f"{service.base}/s/devin-1"
    polls = service.polls
    assert len(polls) >= 4 and {poll.path for poll in polls} == {
        f"/v3/organizations/{schedule.org_id}/sessions/devin-1"
    }
    assert {poll.headers["Authorization"] for poll in polls} == {f"Bearer {TOKEN}"}
    said = [e["session_status"] for e in logs if e["event"] == "run_running"]
    assert said[0] is None  # the launch: nothing read yet
    assert said[1:] == ["claimed", "running/working"]  # each newer status, once
    assert [item.run.status for item in harness.finished] == [S.SUCCEEDED]


@pytest.mark.parametrize(
    ("end", "error"),
    [
        (("error", None), "session ended error: the session ended in error"),
        (
            ("running", "waiting_for_user"),
            "session ended running/waiting_for_user: blocked, waiting for a user's answer",
        ),
        (("suspended", "out_of_credits"), "session ended suspended/out_of_credits: out of credits"),
    ],
)  # fmt: skip
async def test_a_session_that_ends_in_error_or_blocked_fails_its_run(
    follow: Any, service: SessionService, end: tuple[str, str | None], error: str
) -> None:
    service.lifecycle = lambda _: [WORKING, end]
    harness = await follow()
    schedule = await harness.create()
    await harness.engine.trigger(schedule, by="service-admin")
    (done,) = await harness.finished_runs(schedule.id, 1)
    assert (done.status, done.error, done.session_id) == (S.FAILED, error, "devin-1")
    books = await harness.store.get_schedule(schedule.id)
    assert (books.consecutive_failures, books.last_error_message) == (1, error)
    assert books.last_error_at == done.finished_at


async def test_a_session_still_running_at_the_timeout_fails_its_run(
    follow: Any, service: SessionService
) -> None:
    harness = await follow(follow_timeout=1.0)
    schedule = await harness.create()
    await harness.engine.trigger(schedule, by="service-admin")
    (done,) = await harness.finished_runs(schedule.id, 1)
    assert (done.status, done.error) == (S.FAILED, "session still running/working after 1s")
    assert done.session_status == "running/working"
    assert (await harness.store.get_schedule(schedule.id)).consecutive_failures == 1


async def test_transient_poll_errors_are_retried_and_do_not_end_the_run(
    follow: Any, service: SessionService
) -> None:
    service.lifecycle = lambda _: [WORKING, FINISHED]
    service.answer_polls(
        Reply(status=503), Reply(status=429, headers={"Retry-After": "1"}), Reply(status=502)
    )
    harness = await follow()
    schedule = await harness.create()
    with capture_logs() as logs:
        await harness.engine.trigger(schedule, by="service-admin")
        (done,) = await harness.finished_runs(schedule.id, 1)
    assert (done.status, done.session_status) == (S.SUCCEEDED, "running/finished")
    assert len(service.polls) == 5  # three failed reads, then working, then finished
    failed = [e for e in logs if e["event"] == "session_poll_failed"]
    assert [e["error"].split(":")[0] for e in failed] == [
        "session status answered HTTP 503",
        "session status answered HTTP 429",
        "session status answered HTTP 502",
    ]


async def test_a_session_the_service_no_longer_knows_fails_its_run(
    follow: Any, service: SessionService
) -> None:
    service.answer_polls(Reply(status=404, body={"detail": "Session not found"}))
    harness = await follow()
    schedule = await harness.create()
    await harness.engine.trigger(schedule, by="service-admin")
    (done,) = await harness.finished_runs(schedule.id, 1)
    assert done.status == S.FAILED and done.error is not None
    assert done.error.startswith(
        "the session can no longer be followed: session status answered HTTP 404"
    )


async def test_overlap_skip_applies_while_the_previous_session_runs(
    follow: Any, service: SessionService
) -> None:
    harness = await follow()
    schedule = await harness.create(overlap=Overlap.SKIP)
    manual = await harness.engine.trigger(schedule, by="service-admin")
    await harness.run_with_status(schedule.id, [S.RUNNING])
    await service.wait_for_polls(2)  # launched a while ago: the launch is long over
    instant = await harness.due_in(schedule.id, 0.1)
    (skipped,) = [
        run
        for run in await harness.run_with_status(schedule.id, [S.RUNNING, S.SKIPPED])
        if run.status == S.SKIPPED
    ]
    assert skipped.scheduled_for == instant
    assert skipped.error == f"skipped: the previous run ({manual.id}) was still in progress"
    service.set_status("devin-1", "exit")
    runs = await harness.finished_runs(schedule.id, 2)
    assert sorted(run.status for run in runs) == [S.SKIPPED, S.SUCCEEDED]
    assert len(service.requests) == 1  # one session only


async def test_the_session_s_end_drives_failures_auto_pause_and_one_report_per_run(
    follow: Any, service: SessionService
) -> None:
    harness = await follow(max_consecutive_failures=2)
    schedule = await harness.create()
    await harness.engine.trigger(schedule, by="service-admin")
    await harness.run_with_status(schedule.id, [S.RUNNING])
    await service.wait_for_polls(2)
    assert (await harness.store.get_schedule(schedule.id)).consecutive_failures == 0
    assert harness.finished == []  # nothing reported while the session runs
    service.set_status("devin-1", "error")
    await harness.finished_runs(schedule.id, 1)
    assert (await harness.store.get_schedule(schedule.id)).consecutive_failures == 1
    service.lifecycle = lambda _: [WORKING, ("error", None)]
    await harness.engine.trigger(schedule, by="service-admin")
    await harness.finished_runs(schedule.id, 2)
    books = await harness.store.get_schedule(schedule.id)
    assert (books.consecutive_failures, books.enabled) == (2, False)
    assert books.paused_reason is not None and "session ended error" in books.paused_reason
    reported = [(item.run.status, item.auto_paused) for item in harness.finished]
    assert reported == [(S.FAILED, False), (S.FAILED, True)]  # the running step told nobody
    assert len({item.run.id for item in harness.finished}) == 2


async def test_a_restart_follows_running_runs_again(
    store: Store,
    directory: DirectoryRef,
    service: SessionService,
    http: aiohttp.ClientSession,
) -> None:
    plan = follow_plan(service, http)
    first = EngineHarness(store, directory, service, http, follow=plan)
    await first.engine.start()
    schedule = await first.create()
    run = await first.engine.trigger(schedule, by="service-admin")
    await first.run_with_status(schedule.id, [S.RUNNING])
    await first.engine.stop(5.0)  # returns at once: a followed session does not hold it
    assert (await store.get_run(run.id)).status == S.RUNNING
    service.set_status("devin-1", "suspended", "usage_limit_exceeded")

    second = EngineHarness(store, directory, service, http, follow=plan)
    with capture_logs() as logs:
        await second.engine.start()
        (done,) = await second.finished_runs(schedule.id, 1)
        await second.engine.stop(0.5)
    assert (done.id, done.status) == (run.id, S.FAILED)
    assert done.session_status == "suspended/usage_limit_exceeded"
    started = next(e for e in logs if e["event"] == "engine_started")
    assert (started["followed"], started["interrupted"]) == (1, 0)
    assert len(service.requests) == 1


async def test_a_running_run_of_a_schedule_deleted_meanwhile_fails_at_the_restart(
    store: Store,
    directory: DirectoryRef,
    service: SessionService,
    http: aiohttp.ClientSession,
) -> None:
    plan = follow_plan(service, http)
    first = EngineHarness(store, directory, service, http, follow=plan)
    await first.engine.start()
    schedule = await first.create()
    run = await first.engine.trigger(schedule, by="service-admin")
    await first.run_with_status(schedule.id, [S.RUNNING])
    await first.engine.stop(5.0)
    await store.delete_schedule(schedule.id, now=now(), by="service-admin")

    second = EngineHarness(store, directory, service, http, follow=plan)
    await second.engine.start()
    await second.engine.stop(0.5)
    done = await store.get_run(run.id)
    assert (done.status, done.error) == (S.FAILED, "no longer followed: its schedule was deleted")
    assert (done.session_id, done.attempts) == ("devin-1", 1)
