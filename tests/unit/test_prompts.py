"""Prompt templates as pure functions: parse errors name their line, rendering sees exactly
the documented variables, and what the sandbox or the cap refuses is an error."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

import pytest

from storage.domain import Run, Schedule
from storage.enums import PromptFormat, RunStatus, RunTrigger
from storage.prompts import (
    MAX_PROMPT_CHARS,
    MAX_RENDER_SECONDS,
    PromptError,
    PromptFacts,
    check_template,
    render_prompt,
)

AT = datetime(2026, 3, 9, 14, 30, tzinfo=UTC)
FINISHED = datetime(2026, 3, 8, 14, 31, 5, tzinfo=UTC)


def template(prompt: str, prompt_format: PromptFormat = PromptFormat.TEMPLATE) -> Schedule:
    return Schedule(
        id="sched-1",
        org_id="org",
        name="nightly",
        prompt=prompt,
        cron="30 * * * *",
        timezone="Europe/Paris",
        prompt_format=prompt_format,
        created_at=AT,
        updated_at=AT,
    )


def facts(last_run: Run | None = None, last_success_at: datetime | None = None) -> PromptFacts:
    return PromptFacts(
        scheduled_for=AT, run_id="run-7", last_run=last_run, last_success_at=last_success_at
    )


PREVIOUS = Run(
    schedule_id="sched-1",
    scheduled_for=datetime(2026, 3, 8, 14, 30, tzinfo=UTC),
    trigger=RunTrigger.CRON,
    started_at=datetime(2026, 3, 8, 14, 30, tzinfo=UTC),
    status=RunStatus.FAILED,
    finished_at=FINISHED,
    error="HTTP 500",
    session_url="https://sessions.example/s/1",
)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ scheduled_for }}", "2026-03-09T14:30:00+00:00"),
        ("{{ scheduled_for_local }}", "2026-03-09T15:30:00+01:00"),
        (
            "{{ schedule.name }}/{{ schedule.id }}/{{ schedule.timezone }}",
            "nightly/sched-1/Europe/Paris",
        ),
        ("{{ run_id }}", "run-7"),
        ("{{ last_run is none }} {{ last_success_at is none }}", "True True"),
        ("{% if last_run %}again{% else %}first{% endif %}", "first"),
        ("<b>{{ '<&>' }}</b>", "<b><&></b>"),  # plain text: nothing is escaped
    ],
)
def test_a_template_renders_its_variables(source: str, expected: str) -> None:
    assert render_prompt(template(source), facts()) == expected


def test_the_previous_run_and_last_success_are_there_when_known() -> None:
    source = (
        "{{ last_run.status }}|{{ last_run.finished_at }}|{{ last_run.error }}|"
        "{{ last_run.session_url }}|{{ last_success_at }}"
    )
    rendered = render_prompt(template(source), facts(PREVIOUS, FINISHED))
    assert rendered == (
        "failed|2026-03-08T14:31:05+00:00|HTTP 500|https://sessions.example/s/1|"
        "2026-03-08T14:31:05+00:00"
    )


def test_a_text_prompt_is_sent_as_written() -> None:
    schedule = template("{{ not rendered", prompt_format=PromptFormat.TEXT)
    assert render_prompt(schedule, facts()) == "{{ not rendered"


@pytest.mark.parametrize(
    ("source", "line"),
    [("{{ oops", 1), ("line one\nline two {% if %}", 2), ("a\nb\n{% for x in y %}", 3)],
)
def test_a_template_that_does_not_parse_names_its_line(source: str, line: int) -> None:
    with pytest.raises(PromptError, match=rf"^template error at line {line}: "):
        check_template(source)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{{ nope }}", "'nope' is undefined"),
        ("{{ schedule.owner }}", "has no attribute 'owner'"),
        ("{{ last_run.status }}", "'None' has no attribute 'status'"),
        ("{{ run_id.__class__.__mro__ }}", "unsafe"),
        ("{{ ''.__class__.__subclasses__() }}", "unsafe"),
        ("{% for i in range(40000) %}abc{% endfor %}", f"over {MAX_PROMPT_CHARS} characters"),
        ("{{ range(10 ** 7) | list }}", "range too big"),
        ("{{ 1 / 0 }}", "division by zero"),
    ],
)
def test_what_cannot_render_is_an_error_naming_the_problem(source: str, problem: str) -> None:
    with pytest.raises(PromptError, match="template error") as raised:
        render_prompt(template(source), facts())
    assert problem.lower() in str(raised.value).lower()


def test_a_render_that_runs_too_long_is_stopped() -> None:
    # Nested loops that print nothing: the output cap never sees them.
    source = "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}"
    tracer_before = sys.gettrace()
    started = time.monotonic()
    with pytest.raises(PromptError, match=r"rendering took over 1s"):
        render_prompt(template(source), facts())
    assert time.monotonic() - started < 5 * MAX_RENDER_SECONDS
    assert sys.gettrace() is tracer_before  # the thread's tracer (a coverage tool's) is back
