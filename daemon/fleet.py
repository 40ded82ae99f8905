"""The fleet: which schedules this daemon fires when several daemons share one database.

There is no leader. Each member heartbeats (`storage.fleet_members`); every member reads the
same set of live members, and each schedule belongs to the live member that rendezvous
hashing picks for it (the highest hash of member and schedule id), so all members agree on
the owner without talking to each other, and a membership change moves only the schedules of
the member that came or went. A member holds timers only for the schedules it owns
(`owns`, consulted by the engine). When membership changes the engine re-reads its share
(`FleetEngine.reshare`): timers of schedules it no longer owns go, schedules it now owns are
timed, and their instants missed meanwhile follow the catch-up rules. Two members that
briefly disagree may both fire an instant; its run is claimed once (unique per schedule and
instant), so it launches once.

Edits reach the owner through the database's notifications: every schedule write announces
the schedule's id (`storage.dialects.announce`), and the owner re-times it.

On SQLite the daemon is a fleet of one (`LocalFleet`): it owns everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import structlog

from daemon import metrics
from daemon.config_sections import FleetConfig
from storage.errors import StoreUnavailable

if TYPE_CHECKING:  # psycopg and the PostgreSQL store load only when a fleet is configured
    from storage.postgres_store import PostgresStore

log = structlog.get_logger("agentcron.fleet")

RELISTEN_DELAY = 1.0
"""Seconds before listening again after the notification connection was lost."""


class FleetEngine(Protocol):
    """What the fleet asks of the engine."""

    async def reshare(self) -> None:
        """The owned share changed: drop timers not owned, time and catch up those owned."""
        ...

    async def retime(self, schedule_id: str) -> None:
        """Another member changed the schedule: re-read and re-time it."""
        ...

    @property
    def timers_held(self) -> int: ...


def owner(schedule_id: str, members: Sequence[str]) -> str:
    """The member that owns `schedule_id`: the one with the highest rendezvous hash."""
    return max(members, key=lambda member: _weight(member, schedule_id))


def _weight(member: str, schedule_id: str) -> bytes:
    return hashlib.blake2b(f"{member}\0{schedule_id}".encode(), digest_size=8).digest()


def new_member_id() -> str:
    """A member id naming the host and process, unique even for a pid reused later."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LocalFleet:
    """A fleet of one: the daemon on a SQLite file owns every schedule."""

    def __init__(self) -> None:
        self.member_id = new_member_id()
        self.members: tuple[str, ...] = (self.member_id,)
        self._engine: FleetEngine | None = None
        metrics.FLEET_MEMBERS.set(1)

    def owns(self, schedule_id: str) -> bool:
        return True

    def attach(self, engine: FleetEngine) -> None:
        self._engine = engine

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def background_tasks(self) -> list[asyncio.Task[None]]:
        return []

    def describe(self) -> dict[str, object]:
        return _described(self.member_id, self.members, self._engine)


class PostgresFleet:
    """Membership by heartbeat in the shared PostgreSQL database, and its notifications."""

    def __init__(self, store: PostgresStore, settings: FleetConfig) -> None:
        self.store = store
        self.settings = settings
        self.member_id = new_member_id()
        self.members: tuple[str, ...] = (self.member_id,)
        self._engine: FleetEngine | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def owns(self, schedule_id: str) -> bool:
        return owner(schedule_id, self.members) == self.member_id

    def attach(self, engine: FleetEngine) -> None:
        self._engine = engine

    async def join(self) -> None:
        """Heartbeat once and read who is live: the share the engine starts with."""
        await self._beat()
        log.info("fleet_joined", member=self.member_id, members=list(self.members))

    async def start(self) -> None:
        """Heartbeat and listen for edits in the background (after `attach`)."""
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop(), name="fleet-heartbeat"),
            asyncio.create_task(self._listen_loop(), name="fleet-listen"),
        ]

    def background_tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks)

    async def stop(self) -> None:
        """Stop heartbeating and leave: the others take the share at their next heartbeat."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        with contextlib.suppress(StoreUnavailable):
            await self.store.leave(self.member_id)
        log.info("fleet_left", member=self.member_id)

    def describe(self) -> dict[str, object]:
        return _described(self.member_id, self.members, self._engine)

    async def _beat(self) -> bool:
        """One heartbeat and a read of the live members; whether membership changed."""
        await self.store.heartbeat(self.member_id, socket.gethostname(), os.getpid())
        live = [member.member_id for member in await self.store.live_members(self.settings.lease)]
        members = tuple(sorted({*live, self.member_id}))
        changed, self.members = members != self.members, members
        metrics.FLEET_MEMBERS.set(len(members))
        return changed

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat)
            try:
                changed = await self._beat()
            except StoreUnavailable as exc:
                log.error("fleet_heartbeat_failed", error=str(exc))
                continue
            if changed and self._engine is not None:
                log.info("fleet_changed", member=self.member_id, members=list(self.members))
                await self._engine.reshare()

    async def _listen_loop(self) -> None:
        first = True
        while True:
            try:
                if not first and self._engine is not None:
                    await self._engine.reshare()  # what was announced meanwhile is lost
                first = False
                async for schedule_id in self.store.schedule_changes():
                    if self._engine is not None and self.owns(schedule_id):
                        await self._engine.retime(schedule_id)
            except StoreUnavailable as exc:
                log.error("fleet_listen_failed", error=str(exc))
            await asyncio.sleep(RELISTEN_DELAY)


def _described(
    member: str, members: Sequence[str], engine: FleetEngine | None
) -> dict[str, object]:
    """The fleet as `/readyz` names it: this member, the live ones, the share it owns."""
    return {
        "member": member,
        "members": list(members),
        "share": {
            "fraction": round(1 / len(members), 4),
            "timers_held": 0 if engine is None else engine.timers_held,
        },
    }
