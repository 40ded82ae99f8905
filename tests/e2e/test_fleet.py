"""A fleet: several real `agentcron serve` processes on one throwaway PostgreSQL database.

Heartbeats are fast here (`heartbeat` 1 s, `lease` 5 s) so that failover is quick to see;
the rules are the same at the defaults. The session service is a real loopback HTTP server
recording every launch (`test_catchup.SessionRecorder`): each request carries its run id as
`Idempotency-Key`, so "launched once" is countable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon.fleet import owner
from tests.e2e.conftest import DaemonProcess, base_config, free_port, wait_until, write_config
from tests.e2e.test_catchup import SessionRecorder, runs_of
from tests.e2e.test_catchup import sessions as sessions
from tests.postgres_cluster import cluster

# Above the suite's 60 s per test: one test waits for a cron minute, and a test stopped by
# the timeout would leave its daemons running.
pytestmark = pytest.mark.timeout(180)

HEARTBEAT = 1
LEASE = 5
GRACE = 2
"""`[scheduler] missed_run_grace`: an instant at most this late still fires from its timer."""
STEPS = 3
"""Seconds allowed for the survivor's own steps after taking over (refill, catch-up claim,
launch), on a loaded machine."""


@pytest.fixture
def database() -> Iterator[str]:
    yield cluster().new_database()


@dataclass(frozen=True)
class Timing:
    heartbeat: int
    lease: int


FAST = Timing(HEARTBEAT, LEASE)
DEFAULT = Timing(2, 10)
"""`[fleet]` as a configuration without the section has it."""

Fleet = Callable[..., list[DaemonProcess]]


@pytest.fixture
def fleet(
    tmp_path: Path,
    database: str,
    sessions: SessionRecorder,
    start_daemon: Callable[..., DaemonProcess],
) -> Fleet:
    """`fleet(n, timing=FAST)`: n members on the database, each ready and seeing all n."""

    def start(count: int, timing: Timing = FAST) -> list[DaemonProcess]:
        members = [start_daemon(member_config(tmp_path / f"m{i}", database, sessions, timing))
                   for i in range(count)]  # fmt: skip
        for member in members:
            wait_until(lambda m=member: len(fleet_of(m)["members"]) == count, "every member")
        return members

    return start


def member_config(
    directory: Path,
    database: str,
    sessions: SessionRecorder,
    timing: Timing = FAST,
    **sections: Any,
) -> Path:
    directory.mkdir()
    config = base_config(free_port()) | sections
    config["storage"] = {"url": database}
    config["fleet"] = {"heartbeat": f"{timing.heartbeat}s", "lease": f"{timing.lease}s"}
    config["launcher"] = {"type": "http", "url": sessions.url, "timeout": "10s"}
    # Catch-ups paced fast enough that pacing is not what the failover test measures.
    config.setdefault("scheduler", {"shutdown_grace": "2s", "catchup_rate": 50.0})
    return write_config(directory / "agentcron.toml", config)


def fleet_of(member: DaemonProcess) -> dict[str, Any]:
    status, body = member.call("GET", "/readyz", token=None)
    assert status == 200, body
    fleet: dict[str, Any] = body["fleet"]
    return fleet


def create(member: DaemonProcess, name: str, **fields: Any) -> str:
    body = {"name": name, "prompt": f"prompt of {name}", **fields}
    status, schedule = member.call("POST", member.devin("/schedules"), body=body)
    assert status == 200, schedule
    schedule_id: str = schedule["scheduled_session_id"]
    return schedule_id


def one_time(member: DaemonProcess, name: str, at: datetime) -> str:
    return create(member, name, schedule_type="one_time", scheduled_at=at.isoformat())


def launches_by_run(sessions: SessionRecorder) -> Counter[str]:
    return Counter(request["headers"]["Idempotency-Key"] for request in sessions.recorded())


def test_readyz_names_the_member_the_live_members_and_the_share(fleet: Fleet) -> None:
    members = fleet(2)
    seen = [fleet_of(member) for member in members]
    names = sorted(view["member"] for view in seen)
    for view in seen:
        assert view["members"] == names
        assert view["share"]["fraction"] == 0.5
    status, body = members[0].call("GET", "/metrics", token=None)
    assert status == 200 and "agentcron_fleet_members 2.0" in body


def test_every_instant_fires_once_fleet_wide(fleet: Fleet, sessions: SessionRecorder) -> None:
    members = fleet(3)
    names = fleet_of(members[0])["members"]
    # Not so close to a minute's end that the creations straddle it.
    wait_until(lambda: datetime.now(UTC).second < 50, "a minute with time to spare", 15)
    start = datetime.now(UTC) + timedelta(seconds=6)
    ids = [
        one_time(members[i % 3], f"once-{i:02}", start + timedelta(seconds=i / 4))
        for i in range(24)
    ]
    minutely = [create(members[i % 3], f"minutely-{i}", frequency="* * * * *") for i in range(6)]
    owners = Counter(owner(schedule_id, names) for schedule_id in ids + minutely)
    assert len(owners) == 3, "the schedules spread over every member"
    minute = (datetime.now(UTC) + timedelta(minutes=1)).replace(second=0, microsecond=0)

    def fired() -> bool:
        return all(runs_of(members[0], sid) for sid in ids + minutely)

    wait_until(fired, "a run of every schedule", timeout=75)
    wait_until(lambda: len(sessions.recorded()) >= 30, "30 launches", timeout=10)
    for schedule_id in ids:
        (run,) = runs_of(members[1], schedule_id)
        assert run["trigger"] == "one_time"
    for schedule_id in minutely:
        (run,) = runs_of(members[2], schedule_id)
        assert datetime.fromisoformat(run["scheduled_for"]) == minute
        assert run["trigger"] == "cron"
    launched = launches_by_run(sessions)
    assert len(launched) == 30 and set(launched.values()) == {1}


def test_an_edit_through_one_member_re_times_the_schedule_on_its_owner(
    fleet: Fleet, sessions: SessionRecorder
) -> None:
    members = fleet(2)
    far = datetime.now(UTC) + timedelta(hours=1)
    schedule_id = one_time(members[0], "edited", far)
    names = fleet_of(members[0])["members"]
    owning = owner(schedule_id, names)
    other = next(m for m in members if fleet_of(m)["member"] != owning)

    due = datetime.now(UTC) + timedelta(seconds=1.5)
    path = other.devin(f"/schedules/{schedule_id}")
    status, body = other.call("PATCH", path, body={"scheduled_at": due.isoformat()})
    assert status == 200, body

    (run,) = wait_until(lambda: runs_of(other, schedule_id), "the edited schedule's run")
    # On time, from a timer: without the notification the owner would have found it only at
    # its next refill (minutes later), as a catch-up.
    assert run["trigger"] == "one_time"
    assert datetime.fromisoformat(run["scheduled_for"]) == due
    lateness = datetime.fromisoformat(run["started_at"]) - due
    assert lateness < timedelta(seconds=1)


def test_a_trigger_through_any_member_launches_its_run_once(
    fleet: Fleet, sessions: SessionRecorder
) -> None:
    members = fleet(2)
    schedule_id = create(members[0], "manual", frequency="0 0 1 1 *")
    for member in members:
        status, run = member.call("POST", member.devin(f"/schedules/{schedule_id}/trigger"))
        assert status == 202, run
    wait_until(lambda: len(sessions.recorded()) == 2, "both manual launches")
    runs = runs_of(members[1], schedule_id)
    assert sorted(run["trigger"] for run in runs) == ["manual"] * 2
    assert launches_by_run(sessions) == Counter({run["id"]: 1 for run in runs})


def test_a_killed_members_share_fires_again_and_its_misses_catch_up(
    fleet: Fleet, sessions: SessionRecorder
) -> None:
    check_failover(fleet(2), sessions, FAST)


@pytest.mark.long
def test_failover_among_three_at_the_default_timing(
    fleet: Fleet, sessions: SessionRecorder
) -> None:
    check_failover(fleet(3, DEFAULT), sessions, DEFAULT)


def check_failover(members: list[DaemonProcess], sessions: SessionRecorder, timing: Timing) -> None:
    """Kill -9 the first member just before a burst of instants: each fires once; the
    victim's share fires again within lease + heartbeat, what it missed as catch-ups."""
    names = fleet_of(members[0])["members"]
    victim, survivors = members[0], members[1:]
    victim_name = fleet_of(victim)["member"]
    start = datetime.now(UTC) + timedelta(seconds=3)
    early = [start + timedelta(seconds=i / 12) for i in range(12)]  # missed during failover
    late = [start + timedelta(seconds=timing.lease + 4 + i / 4) for i in range(8)]  # after it
    creator = survivors[0]
    ids = {one_time(creator, f"f-{i:02}", at): at for i, at in enumerate(early + late)}
    theirs = [sid for sid in ids if owner(sid, names) == victim_name]
    assert any(ids[sid] in early for sid in theirs), "the victim owns some early instants"
    assert any(ids[sid] in late for sid in theirs), "and some late ones"
    wait_until(lambda: datetime.now(UTC) > start - timedelta(seconds=0.5), "the kill's moment")
    victim.kill()
    killed = datetime.now(UTC)
    # The survivors take over between lease - heartbeat (the victim's last heartbeat may
    # predate the kill by one) and lease + heartbeat after the kill.
    earliest, latest = (
        killed + timedelta(seconds=timing.lease + d) for d in (-timing.heartbeat, timing.heartbeat)
    )
    # A run is listed once claimed; its launch reaches the sessions a moment later.
    wait_until(
        lambda: (
            all(runs_of(creator, sid) for sid in ids) and len(launches_by_run(sessions)) >= len(ids)
        ),
        "a run of each, and its launch received",
        timeout=timing.lease + 20,
    )
    for survivor in survivors:
        assert fleet_of(survivor)["members"] == [n for n in names if n != victim_name]
    launched = launches_by_run(sessions)
    assert len(launched) == len(ids) and set(launched.values()) == {1}
    for schedule_id in theirs:
        (run,) = runs_of(creator, schedule_id)
        instant = datetime.fromisoformat(run["scheduled_for"])
        started = datetime.fromisoformat(run["started_at"])
        assert instant == ids[schedule_id]
        if instant < earliest - timedelta(seconds=GRACE):
            assert run["trigger"] == "catchup"  # missed while nobody held its timer
            assert started <= latest + timedelta(seconds=STEPS)
        if instant > latest + timedelta(seconds=1):
            assert run["trigger"] == "one_time"  # timed by its new owner, on time
            assert started - instant < timedelta(seconds=1)


def test_a_member_that_comes_back_rejoins_and_fires_its_share(
    fleet: Fleet, sessions: SessionRecorder, start_daemon: Callable[..., DaemonProcess]
) -> None:
    first, second = fleet(2)
    assert second.stop() == 0  # leaves: the other takes everything at its next heartbeat
    wait_until(lambda: len(fleet_of(first)["members"]) == 1, "the first member alone")
    back = start_daemon(second.config_path)
    wait_until(lambda: len(fleet_of(first)["members"]) == 2, "the member back")
    names = fleet_of(back)["members"]
    assert names == fleet_of(first)["members"]
    start = datetime.now(UTC) + timedelta(seconds=2)
    ids = [one_time(first, f"r-{i:02}", start + timedelta(seconds=i / 5)) for i in range(12)]
    wait_until(lambda: all(runs_of(first, sid) for sid in ids), "a run of each", timeout=20)

    fired_by = {
        fleet_of(member)["member"]: {
            event["schedule_id"] for event in member.events() if event["event"] == "schedule_fired"
        }
        for member in (first, back)
    }
    for schedule_id in ids:
        firing = [name for name, fired in fired_by.items() if schedule_id in fired]
        assert firing == [owner(schedule_id, names)]
    assert fired_by[fleet_of(back)["member"]] & set(ids), "the member back fires its share"
    assert set(launches_by_run(sessions).values()) == {1}


def test_members_starting_together_apply_the_files_schedules_once(
    tmp_path: Path,
    database: str,
    sessions: SessionRecorder,
    start_daemon: Callable[..., DaemonProcess],
) -> None:
    # Enough that applying them takes long enough for the members to overlap.
    schedules = [{"name": f"from-file-{i}", "prompt": "p", "cron": "0 0 1 1 *"} for i in range(5)]
    configs = [
        member_config(tmp_path / f"m{i}", database, sessions, schedules=schedules) for i in range(3)
    ]
    members = [start_daemon(config, ready=False) for config in configs]
    for member in members:
        member.wait_ready()
    names = []
    for offset in (0, 100, 200):
        path = members[0].devin(f"/schedules?limit=100&offset={offset}")
        status, page = members[0].call("GET", path)
        assert status == 200, page
        names += [item["name"] for item in page["items"]]
    assert sorted(names) == [entry["name"] for entry in schedules]  # each once
