"""Which configured launcher a run goes through (DESIGN section 9, "Several launchers").

`[launcher]` is the launcher named `default`; `[launchers.NAME]` declares more. A schedule
that names a launcher (its `launcher` field) uses that one; one that names none uses
`[agentscope] launcher` when it was made through the AgentScope façade (its agent is not one
of Devin's) and that key is set, else `[scheduler] default_launcher`. The choice is made per
run, so a reload that changes the defaults applies from the next fire on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import aiohttp

from daemon.config import DEFAULT_LAUNCHER, Config, LauncherConfig
from daemon.following import FollowPlan, follow_plan
from daemon.launcher_agentscope import AgentScopeLauncher
from daemon.launcher_devin import DevinLauncher
from daemon.launchers import Launcher, build_launcher
from storage.domain import Schedule
from storage.enums import DevinAgent

_DEVIN_AGENTS: Final = frozenset(agent.value for agent in DevinAgent)


@dataclass(frozen=True, slots=True)
class LauncherRoutes:
    """The launchers by name, and which one a schedule that names none uses."""

    launchers: Mapping[str, Launcher]
    default: str = DEFAULT_LAUNCHER
    agentscope: str | None = None
    follows: Mapping[str, FollowPlan] = field(default_factory=dict)
    """How each launcher that reads session status has its sessions followed."""

    @classmethod
    def single(cls, launcher: Launcher, follow: FollowPlan | None = None) -> LauncherRoutes:
        """Every schedule on `launcher` (named `default`), followed as `follow` says."""
        follows = {} if follow is None else {DEFAULT_LAUNCHER: follow}
        return cls({DEFAULT_LAUNCHER: launcher}, follows=follows)

    def name_for(self, schedule: Schedule) -> str:
        if schedule.launcher is not None:
            return schedule.launcher
        if self.agentscope is not None and schedule.agent not in _DEVIN_AGENTS:
            return self.agentscope
        return self.default

    def route(self, schedule: Schedule) -> tuple[str, Launcher | None]:
        """(name, launcher) of the schedule's runs; None when no launcher has that name (a
        reload removed it while a run was on its way: the run fails, saying so)."""
        name = self.name_for(schedule)
        return name, self.launchers.get(name)

    def follow_plan(self, schedule: Schedule) -> FollowPlan | None:
        """How the sessions of the schedule's launcher are followed; None: they are not."""
        return self.follows.get(self.name_for(schedule))

    def idempotent(self, schedule: Schedule) -> bool:
        """Whether the schedule's launcher may be sent a request again after a crash."""
        launcher = self.route(schedule)[1]
        return launcher is not None and launcher.idempotent


def build_one(config: LauncherConfig, *, http: aiohttp.ClientSession, workdir: Path) -> Launcher:
    """The launcher `config.type` names, over the daemon's shared HTTP session."""
    if config.type == "devin":
        return DevinLauncher(config, http=http)
    if config.type == "agentscope":
        return AgentScopeLauncher(config, http=http)
    return build_launcher(config, http=http, workdir=workdir)


def build_routes(config: Config, *, http: aiohttp.ClientSession) -> LauncherRoutes:
    """Every launcher `config` declares, and its defaults."""
    launchers = {
        name: build_one(section, http=http, workdir=config.base_dir)
        for name, section in config.named_launchers.items()
    }
    follows = {
        name: plan
        for name, section in config.named_launchers.items()
        if (plan := follow_plan(section, http=http, name=name)) is not None
    }
    return LauncherRoutes(
        launchers,
        default=config.scheduler.default_launcher,
        agentscope=config.agentscope.launcher,
        follows=follows,
    )
