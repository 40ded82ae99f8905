"""Launchers: how a fire starts an agent session (DESIGN section 4).

A launcher takes a `LaunchRequest` (the run, its schedule, who the session runs as) and
answers a `LaunchResult`. Each type lives in a module of its own: `http`
(`launcher_http.py`), `command` (`launcher_command.py`), `devin` (`launcher_devin.py`) and
`agentscope` (`launcher_agentscope.py`); `launcher_routes.py` builds the configured ones
and picks each run's.

A launcher never raises for a failed launch: it answers a `LaunchResult` whose `error` is a
short, readable cause, which becomes the run's error and the schedule's `last_error_message`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from storage.domain import Schedule


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    """One launch: the run, its schedule as it is now, and who the session runs as.

    `identity` is the run-as user id, or the bot user id when `as_user` is false.
    `session_id` is the existing session a stateful schedule sends its prompt to, else None.
    """

    run_id: str
    schedule: Schedule
    identity: str
    as_user: bool
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class LaunchResult:
    """How a launch ended: a session (success) or an error, after `attempts` attempts."""

    attempts: int
    session_id: str | None = None
    session_url: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Launcher(Protocol):
    @property
    def idempotent(self) -> bool:
        """The service honours the run id as an idempotency key: a request that may have
        been sent already can be sent again after a crash without starting a second session."""
        ...

    async def launch(self, request: LaunchRequest) -> LaunchResult:
        """Start the session (within the launcher's timeout); never raises for a failure."""
        ...


def seconds_text(value: float) -> str:
    """A duration as launch errors quote it (`30s`, `0.5s`)."""
    return f"{value:g}s"
