"""kill -9 under load, again and again: nothing acknowledged is lost, nothing fires twice.

While one client PATCHes schedules and another keeps creating one_time schedules due a
second or two ahead (so something fires every second, besides every-minute schedules that
fire together), the daemon is killed with SIGKILL at random moments and restarted. It
launches over HTTP against a loopback session service that records every Idempotency-Key.

Afterwards, with the daemon stopped cleanly after a last restart:
- every write that got a 2xx is in the database (per schedule, the stored prompt is the last
  acknowledged one or a later attempt whose answer was lost in a kill);
- no (schedule, instant) has two runs, every POSTed Idempotency-Key is a stored run, and no
  key was POSTed twice;
- no run is left `launching`: those a kill interrupted are `interrupted`;
- `PRAGMA integrity_check` is ok.

The figures are printed. `pytest --long` runs 25 kills; the default run does 3.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    ADMIN_TOKEN,
    DaemonProcess,
    base_config,
    free_port,
    http_call,
    wait_until,
    write_config,
)
from tests.e2e.threaded_service import ThreadedSessionService, threaded_session_service
from tests.session_service import Reply

EVERY_MINUTE_SCHEDULES = 20


@dataclass
class Ledger:
    """What the clients sent and what was acknowledged, kept by the client threads."""

    acked_prompt: dict[str, int] = field(default_factory=dict)
    attempted_prompts: dict[str, list[int]] = field(default_factory=dict)
    acked_creates: list[str] = field(default_factory=list)
    acked_writes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def attempt(self, schedule_id: str, value: int) -> None:
        with self.lock:
            self.attempted_prompts.setdefault(schedule_id, []).append(value)

    def acknowledge(self, schedule_id: str, value: int) -> None:
        with self.lock:
            self.acked_prompt[schedule_id] = value
            self.acked_writes += 1

    def created(self, schedule_id: str) -> None:
        with self.lock:
            self.acked_creates.append(schedule_id)
            self.acked_writes += 1


class CrashLoop:
    """The daemon under test, restarted in place after every kill."""

    def __init__(self, directory: Path, service: ThreadedSessionService) -> None:
        config = base_config(free_port())
        config["logging"]["level"] = "warning"
        config["launcher"] = {
            "type": "http",
            "url": service.url,
            "token_env": "SESSION_API_TOKEN",
            "timeout": "10s",
        }
        config["scheduler"] = {"shutdown_grace": "5s", "catchup_rate": 50}
        self.config_path = write_config(directory / "config.toml", config)
        self.database = directory / "agentcron.db"
        self.daemon = self.start()

    def start(self) -> DaemonProcess:
        daemon = DaemonProcess(self.config_path, {"SESSION_API_TOKEN": "session-token"})
        daemon.wait_ready()
        return daemon

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request to whichever daemon is up; (0, None) when none is."""
        try:
            return http_call(self.daemon.url(path), method, token=ADMIN_TOKEN, body=body, timeout=5)
        except OSError:
            return 0, None

    def kill_and_restart(self) -> None:
        self.daemon.kill()
        self.daemon = self.start()


def iso(moment: datetime) -> str:
    return moment.isoformat()


def patcher(loop: CrashLoop, ledger: Ledger, ids: list[str], stop: threading.Event) -> None:
    """PATCH the prompts of `ids` round-robin with increasing values; record what was acked."""
    value = 0
    while not stop.is_set():
        value += 1
        schedule_id = ids[value % len(ids)]
        ledger.attempt(schedule_id, value)
        status, _ = loop.call(
            "PATCH", f"/v3/organizations/org-local/schedules/{schedule_id}", {"prompt": str(value)}
        )
        if 200 <= status < 300:
            ledger.acknowledge(schedule_id, value)


def creator(loop: CrashLoop, ledger: Ledger, stop: threading.Event) -> None:
    """Create one_time schedules due 0.5-2.5 s ahead, about five a second."""
    rng = random.Random(7)
    n = 0
    while not stop.wait(0.2):
        n += 1
        due = datetime.now(UTC) + timedelta(seconds=rng.uniform(0.5, 2.5))
        body = {
            "name": f"once-{n}",
            "prompt": "p",
            "schedule_type": "one_time",
            "scheduled_at": iso(due),
        }
        status, answer = loop.call("POST", "/v3/organizations/org-local/schedules", body)
        if 200 <= status < 300:
            ledger.created(answer["scheduled_session_id"])


@contextlib.contextmanager
def clients(loop: CrashLoop, ledger: Ledger, ids: list[str]) -> Iterator[None]:
    stop = threading.Event()
    threads = [
        threading.Thread(target=patcher, args=(loop, ledger, ids, stop)),
        threading.Thread(target=creator, args=(loop, ledger, stop)),
    ]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)


def read(database: Path, query: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        return conn.execute(query).fetchall()


def no_run_launching(database: Path) -> bool:
    return read(database, "SELECT count(*) FROM runs WHERE status = 'launching'") == [(0,)]


def crash_loop(
    tmp_path: Path,
    kills: int,
    seed: int,
    *,
    every_minute: int = EVERY_MINUTE_SCHEDULES,
    gap: tuple[float, float] = (0.3, 2.0),
    into_bursts: bool = False,
) -> dict[str, int]:
    """`kills` SIGKILLs `gap` seconds apart (uniform) under `every_minute` schedules; with
    `into_bursts`, every other kill lands 0.2-1.5 s after a minute boundary instead."""
    rng = random.Random(seed)
    ledger = Ledger()
    with threaded_session_service() as service:
        service.answer(*[Reply(delay=0.3)] * 100_000)  # slow sessions: kills land mid-launch
        loop = CrashLoop(tmp_path, service)
        try:
            ids = []
            for n in range(every_minute):
                body = {"name": f"minute-{n}", "prompt": "0", "frequency": "* * * * *"}
                status, made = loop.call("POST", "/v3/organizations/org-local/schedules", body)
                assert status == 200, made
                ids.append(made["scheduled_session_id"])
            with clients(loop, ledger, ids):
                for n in range(kills):
                    time.sleep(_until_kill(rng, gap, into_burst=into_bursts and n % 2 == 0))
                    loop.kill_and_restart()
                time.sleep(1.0)  # load on the last daemon too
            # A last clean run: whatever was launching at the last kill is interrupted by now.
            claimed_before = {row[0] for row in read(loop.database, "SELECT id FROM runs")}
            wait_until(lambda: no_run_launching(loop.database), "every run to finish", 30)
            assert loop.daemon.stop() == 0
        finally:
            loop.daemon.kill()  # a failed check must not leave a daemon running
        posted = service.idempotency_keys()
    return verify(loop.database, ledger, posted, kills, len(claimed_before))


def _until_kill(rng: random.Random, gap: tuple[float, float], *, into_burst: bool) -> float:
    """Seconds of load until the next kill: a random gap, or into the next minute's burst."""
    if not into_burst:
        return rng.uniform(*gap)
    now = datetime.now(UTC)
    boundary = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return (boundary - now).total_seconds() + rng.uniform(0.2, 1.5)


def verify(
    database: Path, ledger: Ledger, posted: list[str], kills: int, claimed: int
) -> dict[str, int]:
    assert read(database, "PRAGMA integrity_check") == [("ok",)]
    prompts = dict(read(database, "SELECT id, prompt FROM schedules"))
    for schedule_id, acked in ledger.acked_prompt.items():
        stored = int(prompts[schedule_id])
        later = [v for v in ledger.attempted_prompts[schedule_id] if v >= acked]
        assert stored in later, f"{schedule_id}: stored {stored}, acknowledged {acked}"
    missing = set(ledger.acked_creates) - set(prompts)
    assert not missing, f"acknowledged creates lost: {sorted(missing)[:5]}"
    doubles = read(
        database,
        "SELECT schedule_id, scheduled_for, count(*) FROM runs "
        "GROUP BY schedule_id, scheduled_for HAVING count(*) > 1",
    )
    assert doubles == [], f"instants with two runs: {doubles[:5]}"
    runs = dict(read(database, "SELECT id, status FROM runs"))
    unknown = [key for key in posted if key not in runs]
    assert unknown == [], f"POSTed for runs the database does not have: {unknown[:5]}"
    reposted = {key: n for key, n in Counter(posted).items() if n > 1}
    assert reposted == {}, f"Idempotency-Keys POSTed more than once: {reposted}"
    statuses = Counter(runs.values())
    assert statuses["launching"] == 0
    figures = {
        "kills": kills,
        "acknowledged_writes": ledger.acked_writes,
        "runs": len(runs),
        "runs_before_last_restart": claimed,
        "launched": len(posted),
        "interrupted": statuses["interrupted"],
        "relaunched": _count(database, "error LIKE 'relaunched after a restart%'"),
        "catchups": _count(database, "trigger = 'catchup'"),
        "missed": statuses["missed"],
        "duplicates": len(doubles) + len(reposted),
    }
    assert ledger.acked_writes > kills  # the clients did get through between kills
    assert figures["launched"] > 0
    return figures


def _count(database: Path, where: str) -> int:
    ((count,),) = read(database, f"SELECT count(*) FROM runs WHERE {where}")
    return int(count)


def report(figures: dict[str, int], capsys: pytest.CaptureFixture[str], seed: int) -> None:
    with capsys.disabled():
        numbers = ", ".join(f"{name}={value}" for name, value in figures.items())
        print(f"\ncrash loop (seed {seed}): {numbers}")


def test_three_kills_lose_nothing_and_fire_nothing_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = 3
    report(crash_loop(tmp_path, kills=3, seed=seed), capsys, seed)


@pytest.mark.long
@pytest.mark.timeout(900)
def test_twenty_five_kills_lose_nothing_and_fire_nothing_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = random.randrange(1_000_000)
    report(crash_loop(tmp_path, kills=25, seed=seed), capsys, seed)


@pytest.mark.long
@pytest.mark.timeout(900)
def test_kills_under_three_hundred_every_minute_schedules_lose_nothing_and_fire_nothing_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The load case: kills 3-15 s apart, every other one into a burst of 300, so restarts
    find catch-ups, runs that never left and runs that may have (about five minutes)."""
    seed = random.randrange(1_000_000)
    figures = crash_loop(
        tmp_path, kills=8, seed=seed, every_minute=300, gap=(3.0, 15.0), into_bursts=True
    )
    report(figures, capsys, seed)
