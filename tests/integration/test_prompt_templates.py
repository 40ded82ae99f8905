"""Prompt templates over the real API and the real engine: a template that does not parse
is refused at create and PATCH naming its line, a fire sends the rendered prompt to a
loopback session service, a fire that cannot render fails without a launch, and the
preview renders what the next fire would send."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from storage.domain import Run
from storage.enums import PromptFormat, RunStatus, RunTrigger
from storage.identities import DirectoryRef
from storage.store import Store
from tests.conftest import ApiHarness
from tests.engine_harness import EngineHarness, now
from tests.session_service import SessionService

SCHEDULES = "/v3/organizations/org-local/schedules"


@pytest.fixture
async def harness(
    store: Store, directory: DirectoryRef, service: SessionService, http: aiohttp.ClientSession
) -> AsyncIterator[EngineHarness]:
    started = EngineHarness(store, directory, service, http)
    await started.engine.start()
    yield started
    await started.engine.stop(0.5)


@pytest.fixture
async def api(api_factory: Callable[..., Any], harness: EngineHarness) -> ApiHarness:
    served: ApiHarness = await api_factory(events=harness.engine)
    return served


async def create(api: ApiHarness, prompt: str, **fields: Any) -> tuple[int, Any]:
    body = {"name": "nightly", "prompt": prompt, "frequency": "30 2 * * *"} | fields
    return await api.call("POST", SCHEDULES, json=body)


async def create_template(api: ApiHarness, prompt: str, **fields: Any) -> dict[str, Any]:
    status, answer = await create(api, prompt, prompt_format="template", **fields)
    assert status == 200, answer
    assert answer["prompt_format"] == "template"
    return dict(answer)


def refusal(answer: Any) -> tuple[list[Any], str]:
    (item,) = answer["detail"]
    return item["loc"], item["msg"]


# --- create and PATCH ----------------------------------------------------------------------


async def test_a_template_that_does_not_parse_is_refused_at_create_naming_its_line(
    api: ApiHarness, store: Store
) -> None:
    status, answer = await create(api, "Hello\n{% if x %}no end", prompt_format="template")
    assert status == 422
    loc, msg = refusal(answer)
    assert loc == ["body", "prompt"]
    assert msg.startswith("prompt: template error at line 2: ")
    assert (await store.list_schedules("org-local", limit=10, offset=0)).total == 0


async def test_the_same_text_is_accepted_as_a_text_prompt(api: ApiHarness) -> None:
    status, answer = await create(api, "Hello\n{% if x %}no end")
    assert status == 200 and answer["prompt_format"] == "text"


async def test_switching_to_template_checks_the_stored_prompt_and_changes_nothing(
    api: ApiHarness, store: Store
) -> None:
    status, created = await create(api, "fine\nthen {{ broken")
    schedule_id = created["scheduled_session_id"]
    status, answer = await api.call(
        "PATCH", f"{SCHEDULES}/{schedule_id}", json={"prompt_format": "template"}
    )
    assert status == 422
    assert refusal(answer) == (["body", "prompt"], refusal(answer)[1])
    assert refusal(answer)[1].startswith("prompt: template error at line 2: ")
    assert (await store.get_schedule(schedule_id)).prompt_format == PromptFormat.TEXT


async def test_a_patch_of_a_template_prompt_is_checked_too(api: ApiHarness) -> None:
    created = await create_template(api, "ok {{ run_id }}")
    path = f"{SCHEDULES}/{created['scheduled_session_id']}"
    status, answer = await api.call("PATCH", path, json={"prompt": "{% for %}"})
    assert status == 422 and refusal(answer)[1].startswith("prompt: template error at line 1")
    status, answer = await api.call("PATCH", path, json={"prompt": "{{ scheduled_for }}"})
    assert status == 200 and answer["prompt"] == "{{ scheduled_for }}"


async def test_an_unknown_prompt_format_is_refused(api: ApiHarness) -> None:
    status, answer = await create(api, "p", prompt_format="jinja")
    assert status == 422 and refusal(answer)[0] == ["body", "prompt_format"]


# --- at fire time --------------------------------------------------------------------------


async def test_a_fire_sends_the_rendered_prompt(
    api: ApiHarness, harness: EngineHarness, service: SessionService, store: Store
) -> None:
    created = await create_template(
        api,
        "{{ schedule.name }} at {{ scheduled_for }} ({{ scheduled_for_local }}) run {{ run_id }}; "
        "before: {{ last_run.status }} {{ last_run.error }}; ok at {{ last_success_at }}",
        timezone="Asia/Tokyo",
    )
    schedule_id = created["scheduled_session_id"]
    # Its history: a success, then a failure (the latest run before the fire).
    earlier = now() - timedelta(hours=2)
    succeeded = Run(
        schedule_id=schedule_id,
        scheduled_for=earlier,
        trigger=RunTrigger.CRON,
        started_at=earlier,
        status=RunStatus.SUCCEEDED,
        finished_at=earlier + timedelta(seconds=3),
    )
    failed = Run(
        schedule_id=schedule_id,
        scheduled_for=earlier + timedelta(hours=1),
        trigger=RunTrigger.CRON,
        started_at=earlier + timedelta(hours=1),
        status=RunStatus.FAILED,
        finished_at=earlier + timedelta(hours=1, seconds=1),
        error="HTTP 503",
    )
    assert len(await store.claim_runs([succeeded, failed])) == 2
    instant = await harness.due_in(schedule_id, 0.3)
    statuses = [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SUCCEEDED]
    fired = (await harness.run_with_status(schedule_id, statuses))[-1]
    assert (fired.status, fired.scheduled_for) == (RunStatus.SUCCEEDED, instant)
    (body,) = service.bodies()
    local = instant.astimezone(ZoneInfo("Asia/Tokyo"))
    assert body["prompt"] == (
        f"nightly at {instant.isoformat()} ({local.isoformat()}) run {fired.id}; "
        f"before: failed HTTP 503; ok at {(earlier + timedelta(seconds=3)).isoformat()}"
    )


@pytest.mark.parametrize(
    ("prompt", "problem"),
    [
        ("Hello {{ nobody }}", "'nobody' is undefined"),
        ("{{ run_id.__class__.__mro__ }}", "is unsafe"),
        ("{% for i in range(99999) %}{{ run_id }}{% endfor %}", "over 100000 characters"),
        (
            "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
            "rendering took over 1s",
        ),
    ],
)
async def test_a_fire_that_cannot_render_fails_without_a_launch(
    api: ApiHarness,
    harness: EngineHarness,
    service: SessionService,
    store: Store,
    prompt: str,
    problem: str,
) -> None:
    created = await create_template(api, prompt)
    schedule_id = created["scheduled_session_id"]
    await harness.due_in(schedule_id, 0.3)
    (run,) = await harness.finished_runs(schedule_id, 1)
    assert (run.status, run.attempts) == (RunStatus.FAILED, 0)
    assert run.error is not None and run.error.startswith("not launched: template error")
    assert problem in run.error
    assert service.requests == []
    after = await store.get_schedule(schedule_id)
    assert after.consecutive_failures == 1 and after.last_error_message == run.error
    assert [item.run.id for item in harness.finished] == [run.id]  # reported as a failure


# --- preview -------------------------------------------------------------------------------


async def test_the_preview_renders_for_the_next_instant(api: ApiHarness) -> None:
    created = await create_template(api, "{{ schedule.id }} {{ scheduled_for }} {{ last_run }}")
    schedule_id = created["scheduled_session_id"]
    status, answer = await api.call("GET", f"{SCHEDULES}/{schedule_id}/prompt-preview")
    assert status == 200, answer
    assert answer["scheduled_for"] == created["next_run_at"]
    next_run_at = created["next_run_at"].replace("Z", "+00:00")
    assert answer["prompt"] == f"{schedule_id} {next_run_at} None"


async def test_the_preview_of_a_text_prompt_is_the_prompt(api: ApiHarness) -> None:
    status, created = await create(api, "Plain {{ not a template")
    path = f"{SCHEDULES}/{created['scheduled_session_id']}/prompt-preview"
    status, answer = await api.call("GET", path)
    assert status == 200
    assert answer == {"prompt": "Plain {{ not a template", "scheduled_for": created["next_run_at"]}


async def test_a_preview_that_cannot_render_answers_422_naming_the_problem(
    api: ApiHarness,
) -> None:
    created = await create_template(api, "{{ typo_here }}")
    path = f"{SCHEDULES}/{created['scheduled_session_id']}/prompt-preview"
    status, answer = await api.call("GET", path)
    assert status == 422
    assert "'typo_here' is undefined" in refusal(answer)[1]


async def test_the_preview_of_an_unknown_schedule_is_404(api: ApiHarness) -> None:
    status, _ = await api.call("GET", f"{SCHEDULES}/sched-nope/prompt-preview")
    assert status == 404
