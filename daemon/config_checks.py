"""Cross-checks of the configuration: what no single section can see wrong on its own
(duplicate ids, names and tokens, references to unknown orgs and users)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from daemon.config_schedules import ScheduleConfig
from daemon.config_sections import ServiceUserConfig
from daemon.config_types import Loc, Problem
from storage.enums import Permission

if TYPE_CHECKING:
    from daemon.config import Config


def cross_problems(config: Config) -> Iterator[Problem]:
    yield from _duplicates("org id", "orgs", [org.id for org in config.orgs])
    yield from _duplicates("user id", "users", [user.id for user in config.users])
    yield from _duplicates("service user id", "service_users", [s.id for s in config.service_users])
    yield from _duplicates("playbook id", "playbooks", [p.id for p in config.playbooks])
    yield from _unknown_orgs(config)
    yield from _duplicate_schedule_names(config.schedules)
    yield from _run_as_problems(config)
    yield from _duplicate_tokens(config.service_users)
    yield from _launcher_problems(config)


def _duplicates(what: str, section: str, ids: Sequence[str]) -> Iterator[Problem]:
    first_seen: dict[str, int] = {}
    for i, value in enumerate(ids):
        first = first_seen.setdefault(value, i)
        if first != i:
            yield (
                (section, i, "id"),
                f"duplicate {what} {value!r} (already used by {section}[{first}])",
            )


def _duplicate_schedule_names(schedules: Sequence[ScheduleConfig]) -> Iterator[Problem]:
    first_seen: dict[tuple[str, str], int] = {}
    for i, schedule in enumerate(schedules):
        first = first_seen.setdefault((schedule.org, schedule.name), i)
        if first != i:
            yield (
                ("schedules", i, "name"),
                (
                    f"duplicate schedule name {schedule.name!r} in org {schedule.org!r} "
                    f"(already used by schedules[{first}])"
                ),
            )


def _org_references(config: Config) -> Iterator[tuple[Loc, str]]:
    for i, user in enumerate(config.users):
        for org in user.orgs:
            yield ("users", i, "orgs"), org
    for i, service_user in enumerate(config.service_users):
        yield ("service_users", i, "org"), service_user.org
    if config.agentscope.enabled:
        yield ("agentscope", "org"), config.agentscope.org
    for i, playbook in enumerate(config.playbooks):
        yield ("playbooks", i, "org"), playbook.org
    for i, schedule in enumerate(config.schedules):
        yield ("schedules", i, "org"), schedule.org


def _unknown_orgs(config: Config) -> Iterator[Problem]:
    known = {org.id for org in config.orgs}
    for loc, org in _org_references(config):
        if org not in known:
            yield loc, f"unknown org {org!r} (not an id of [[orgs]])"


def _run_as_problems(config: Config) -> Iterator[Problem]:
    users = {user.id: user for user in config.users}
    for i, schedule in enumerate(config.schedules):
        if schedule.run_as_user_id is None:
            continue
        loc: Loc = ("schedules", i, "run_as_user_id")
        user = users.get(schedule.run_as_user_id)
        if user is None:
            yield loc, f"unknown user {schedule.run_as_user_id!r} (not an id of [[users]])"
        elif schedule.org not in user.orgs:
            yield loc, f"user {user.id!r} is not a member of org {schedule.org!r}"
        elif Permission.USE_DEVIN_SESSIONS not in user.permissions:
            yield loc, f"user {user.id!r} lacks the UseDevinSessions permission"


def _duplicate_tokens(service_users: Sequence[ServiceUserConfig]) -> Iterator[Problem]:
    first_seen: dict[str, int] = {}
    for i, service_user in enumerate(service_users):
        first = first_seen.setdefault(service_user.token_sha256, i)
        if first != i:
            key = "token_env" if service_user.token_env else "token_sha256"
            yield ("service_users", i, key), f"the same token as service_users[{first}]"


def _launcher_problems(config: Config) -> Iterator[Problem]:
    """`[launchers.default]` (that is `[launcher]`), and names of launchers not configured."""
    if "default" in config.launchers:
        yield ("launchers", "default"), "the launcher named default is [launcher]; use that table"
    known = set(config.named_launchers)
    for loc, name in _launcher_references(config):
        if name not in known:
            yield loc, f"unknown launcher {name!r} (configured: {', '.join(sorted(known))})"


def _launcher_references(config: Config) -> Iterator[tuple[Loc, str]]:
    yield ("scheduler", "default_launcher"), config.scheduler.default_launcher
    if config.agentscope.launcher is not None:
        yield ("agentscope", "launcher"), config.agentscope.launcher
    for i, schedule in enumerate(config.schedules):
        if schedule.launcher is not None:
            yield ("schedules", i, "launcher"), schedule.launcher
