"""Prompt templates: a schedule with `prompt_format = "template"` renders its prompt per fire.

The template is Jinja2 in a sandbox (`SandboxedEnvironment`): a prompt is written by any
client with ManageOrgSchedules, so it must not reach attributes such as `__class__` or call
what it was not given. Undefined names are errors (`StrictUndefined`) rather than empty text,
so a typo fails the run instead of sending a prompt with a hole. Autoescape is off: the
output is plain text for an agent, not HTML. The output is capped, so a loop cannot make a
prompt of gigabytes, and so is the time a render may take: nested loops that print nothing
would otherwise hold a thread (or the event loop) for hours. Callers render off the event
loop (`asyncio.to_thread`).

Pure functions: the caller gathers the facts (`PromptFacts`) and decides what a failure
does (a 422 at create and PATCH, a failed run at fire time).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

from storage.domain import Run, Schedule
from storage.enums import PromptFormat

if TYPE_CHECKING:  # jinja2 is imported at the first template, not at start-up (~25 ms)
    from jinja2 import Template
    from jinja2.sandbox import SandboxedEnvironment

MAX_PROMPT_CHARS: Final = 100_000
"""The longest prompt a template may render; longer is an error, not a truncation."""
MAX_RENDER_SECONDS: Final = 1.0
"""The longest a template may take to render; longer is an error."""


class PromptError(ValueError):
    """A template that does not parse or does not render; the message names the problem."""


@dataclass(frozen=True, slots=True)
class PromptFacts:
    """What a template may refer to besides its schedule: the run being fired, the
    schedule's previous run (None before its first) and when a run last succeeded."""

    scheduled_for: datetime
    run_id: str
    last_run: Run | None
    last_success_at: datetime | None


@cache
def _environment() -> SandboxedEnvironment:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def check_template(source: str) -> None:
    """Raise PromptError (`template error at line N: …`) unless `source` parses."""
    from jinja2 import TemplateSyntaxError

    try:
        _environment().parse(source)
    except TemplateSyntaxError as error:
        raise PromptError(f"template error at line {error.lineno}: {error.message}") from None


@lru_cache(maxsize=1024)
def _compiled(source: str) -> Template:
    """The template of `source`, compiled once: a schedule fires the same source each time."""
    check_template(source)
    return _environment().from_string(source)


def render_prompt(schedule: Schedule, facts: PromptFacts) -> str:
    """The prompt a fire sends: the stored text, or the template rendered with `facts`.

    Raises PromptError naming what went wrong: a syntax error, an undefined name, a
    sandbox violation, an output over `MAX_PROMPT_CHARS`.
    """
    if schedule.prompt_format != PromptFormat.TEMPLATE:
        return schedule.prompt
    from jinja2 import TemplateError

    template = _compiled(schedule.prompt)
    variables = _variables(schedule, facts)
    previous = sys.gettrace()
    sys.settrace(_deadline_tracer(time.monotonic() + MAX_RENDER_SECONDS))
    try:
        text = _capped(template.generate(variables))
    except PromptError:
        raise
    except TemplateError as error:
        raise PromptError(f"template error: {error.message or error!r}") from None
    except (ArithmeticError, TypeError, ValueError, LookupError) as error:
        raise PromptError(f"template error: {error}") from None
    finally:
        sys.settrace(previous)
    return text


class _TooSlow(PromptError):
    pass


def _deadline_tracer(deadline: float) -> Any:
    """A trace function that stops the traced code once `deadline` (monotonic) has passed:
    it sees every line the template's compiled code runs, output or not."""

    def trace(frame: Any, event: str, arg: Any) -> Any:
        if time.monotonic() > deadline:
            raise _TooSlow(f"template error: rendering took over {MAX_RENDER_SECONDS:g}s")
        return trace

    return trace


def _capped(pieces: Any) -> str:
    """Join the rendered pieces, stopping as soon as the output passes the cap."""
    parts, length = [], 0
    for piece in pieces:
        length += len(piece)
        if length > MAX_PROMPT_CHARS:
            raise PromptError(f"template error: the prompt is over {MAX_PROMPT_CHARS} characters")
        parts.append(piece)
    return "".join(parts)


def _variables(schedule: Schedule, facts: PromptFacts) -> dict[str, Any]:
    local = facts.scheduled_for.astimezone(ZoneInfo(schedule.timezone))
    return {
        "scheduled_for": facts.scheduled_for.isoformat(),
        "scheduled_for_local": local.isoformat(),
        "schedule": {"name": schedule.name, "id": schedule.id, "timezone": schedule.timezone},
        "run_id": facts.run_id,
        "last_run": _run_facts(facts.last_run),
        "last_success_at": _iso(facts.last_success_at),
    }


def _run_facts(run: Run | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "status": run.status.value,
        "finished_at": _iso(run.finished_at),
        "error": run.error,
        "session_url": run.session_url,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
