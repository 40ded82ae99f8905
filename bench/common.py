"""Shared pieces of the agentcron benchmarks: the real daemon, a session service, seeding,
load generation, statistics.

Everything runs on loopback in a temporary directory and every loop is bounded in count and
time. Run as a script, this module also serves the helper processes the benchmarks start:

    python bench/common.py session-server PORT_FILE
        A fast Devin-style session service: answers `{"session_id", "url"}` at once and
        records when each create-session request arrived, by its title and by the run id
        its `Idempotency-Key` header carries (GET /stats, POST /reset).
    python bench/common.py probed-serve CONFIG PROBE_FILE
        `agentcron serve --config CONFIG`, the same code path as `python -m daemon.cli
        serve`, with a probe writing to PROBE_FILE: when the imports were done, every
        callback of the loop that ran over 10 ms, every full garbage collection, and the
        loop lag (by how much a task sleeping 5 ms at a time woke late; a turn of the loop
        running many short callbacks shows there as well as one long callback does).
    python bench/common.py baseline-api DB PORT_FILE
        The API baseline: a minimal aiohttp + aiosqlite server on the same database file,
        one connection. GET reads one schedule row and answers it as JSON; POST inserts one
        row (a copy of a seeded one with a new id, name and prompt) and PATCH does one
        UPDATE, each awaiting the commit before answering (WAL, synchronous=FULL; concurrent
        requests share a commit, as aiosqlite's implicit transactions do). No auth, no
        validation.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# The repository before this directory: bench/api.py must not shadow the `api` package.
sys.path.insert(0, str(REPO))

from tests import processes  # noqa: E402  (needs the repository on the path)
from tests.processes import free_port  # noqa: E402

ORG = "org-bench"
TOKEN = "cog_bench_token_0123456789"
SERVICE_USER = "service-user-bench"
LIST_ENCODER_ENV = "BENCH_LIST_ENCODER"
"""`models`: the probed daemon answers AgentScope's list as it did before the lists were
encoded from rows (`legacy_lists`), the baseline of `api_lists.py`."""
USER = "user-bench"  # the AgentScope façade's caller (X-User-ID)
PERMISSIONS = ["ManageOrgSchedules", "ImpersonateOrgSessions", "ManageOrgPlaybooks"]
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
PROBE_INTERVAL = 0.005
NOTABLE_LAG = 0.002
NOTABLE_CALLBACK = 0.010


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (`share` in 0..1) of `values`; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(share * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def callback_ms(seconds: float) -> str:
    """A longest-callback figure: the probe records only those over NOTABLE_CALLBACK."""
    return f"< {NOTABLE_CALLBACK * 1000:g} ms" if seconds == 0 else ms(seconds)


def ratio(baseline: float, ours: float) -> str:
    """How many times better `ours` is than `baseline` (both: smaller is better)."""
    if ours <= 0:
        return "inf"
    return f"{baseline / ours:.1f}x"


def machine() -> str:
    cpu = "unknown cpu"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} cpus ({cpu}), python {sys.version.split()[0]}, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def header(title: str) -> None:
    print(f"== {title}")
    print(f"   {datetime.now(UTC).isoformat(timespec='seconds')}  {machine()}")


# --------------------------------------------------------------------------- files


class Workdir:
    """A temporary directory on the same disk as a real deployment (not a tmpfs)."""

    def __init__(self, name: str) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=f"agentcron-bench-{name}-"))

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *_: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def write_config(
    directory: Path,
    *,
    port: int,
    launcher_url: str,
    scheduler: dict[str, Any] | None = None,
    level: str = "info",
    extra: dict[str, Any] | None = None,
    agentscope: bool = False,
) -> Path:
    """A daemon configuration: one org, one service user holding TOKEN, an http launcher;
    with `agentscope`, the AgentScope façade too, for USER of the org; `extra` sections added
    (or replaced) at the top level."""
    from storage.identities import token_sha256

    scheduler = {"shutdown_grace": "10s", "max_concurrent_launches": 100} | (scheduler or {})
    service_user = {
        "id": SERVICE_USER,
        "org": ORG,
        "permissions": PERMISSIONS,
        "token_sha256": token_sha256(TOKEN),
    }
    config = {
        "server": {"listen": f"127.0.0.1:{port}"},
        "storage": {"path": "agentcron.db"},
        "logging": {"level": level, "format": "json"},
        "scheduler": scheduler,
        "orgs": [{"id": ORG, "name": "Bench"}],
        "service_users": [service_user],
        "launcher": {
            "type": "http",
            "url": launcher_url,
            "token_env": "BENCH_SESSION_TOKEN",
            "timeout": "30s",
        },
    }
    if agentscope:
        config["agentscope"] = {"enabled": True, "org": ORG}
        config["users"] = [{"id": USER, "orgs": [ORG], "permissions": ["UseDevinSessions"]}]
    return processes.write_config(directory / "agentcron.toml", config | (extra or {}))


# --------------------------------------------------------------------------- seeding


def bench_schedule(name: str, *, now: datetime, **fields: Any) -> Any:
    """A schedule of the bench org (a storage.domain.Schedule)."""
    from storage.domain import Schedule

    fields = {"prompt": f"bench {name}"} | fields
    return Schedule(org_id=ORG, name=name, created_at=now, updated_at=now, **fields)


def create_database(db_path: Path) -> None:
    """An empty agentcron database (schema and version), as the daemon would create it."""
    from storage.sqlite_store import SqliteStore

    async def create() -> None:
        store = await SqliteStore.open(db_path)
        await store.close()

    asyncio.run(create())


def seed(db_path: Path, schedules: Sequence[Any], *, now: datetime) -> float:
    """Insert `schedules` with their `next_run_at` from `now`; return the seconds it took.

    Uses SQLAlchemy Core `insert(SCHEDULES)` with executemany in one transaction on a plain
    synchronous connection: the same tables and column types the store writes, but one
    statement for all rows instead of one write operation per schedule, which would take
    minutes for 100,000 rows.
    """
    from sqlalchemy import create_engine, insert

    from storage.tables import SCHEDULES
    from storage.timing import next_run_after

    began = time.perf_counter()
    if not db_path.exists():
        create_database(db_path)
    rows = []
    for schedule in schedules:
        stored = dataclasses.replace(schedule, next_run_at=next_run_after(schedule, now))
        rows.append({f.name: getattr(stored, f.name) for f in dataclasses.fields(stored)})
    engine = create_engine(f"sqlite:///{db_path}")
    try:
        with engine.begin() as conn:
            for start in range(0, len(rows), 5000):
                conn.execute(insert(SCHEDULES), rows[start : start + 5000])
    finally:
        engine.dispose()
    return time.perf_counter() - began


def read_runs(db_path: Path) -> list[dict[str, Any]]:
    """Every run in the database, as dicts of aware datetimes and strings."""
    from sqlalchemy import create_engine, select

    from storage.tables import RUNS

    engine = create_engine(f"sqlite:///{db_path}")
    try:
        with engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(select(RUNS))]
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- processes


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = processes.daemon_environment({"BENCH_SESSION_TOKEN": "bench-session-token"})
    # An installed package has its bytecode compiled; let this checkout cache it too, or
    # every start would compile the daemon's modules from source again.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env | (extra or {})


def http_json(url: str, method: str = "GET", body: Any = None, token: str | None = None) -> Any:
    """The JSON answer of a request that must succeed."""
    status, answer = processes.http_call(url, method, token=token, body=body)
    if not 200 <= status < 300:
        raise RuntimeError(f"{method} {url} answered HTTP {status}: {answer}")
    return answer


class Helper:
    """A helper process of this module (session server, baseline API) on a free port."""

    def __init__(self, kind: str, *args: str, workdir: Path) -> None:
        port_file = workdir / f"{kind}.port"
        self.process = subprocess.Popen(
            [sys.executable, str(BENCH / "common.py"), kind, *args, str(port_file)],
            env=environment(),
            stdout=subprocess.DEVNULL,
            stderr=(workdir / f"{kind}.log").open("wb"),
        )
        self.port = int(processes.wait_for_line(port_file, self.process, kind, READY_TIMEOUT))
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        processes.stop_process(self.process, STOP_TIMEOUT)


class SessionServer(Helper):
    def __init__(self, workdir: Path) -> None:
        super().__init__("session-server", workdir=workdir)
        self.url = self.base + "/v3/organizations/{org_id}/sessions"

    def stats(self) -> dict[str, Any]:
        """{"count": n, "arrivals": [unix seconds...], "titles": [...], "by_run": {run id:
        unix seconds}} of the create-session requests so far."""
        return http_json(self.base + "/stats")  # type: ignore[no-any-return]

    def reset(self) -> None:
        http_json(self.base + "/reset", method="POST", body={})


class Daemon:
    """The real `agentcron serve` process (optionally with the loop-lag probe)."""

    def __init__(
        self, config: Path, *, probe: bool = True, env: dict[str, str] | None = None
    ) -> None:
        self.config = config
        self.workdir = config.parent
        self.probe_file = self.workdir / "probe.txt"
        self.probe_file.unlink(missing_ok=True)
        self.base = f"http://127.0.0.1:{processes.listen_port(config)}"
        if probe:
            argv = [str(BENCH / "common.py"), "probed-serve", str(config), str(self.probe_file)]
        else:
            argv = ["-m", "daemon.cli", "serve", "--config", str(config)]
        self.log = self.workdir / "daemon.log"
        self.spawned = time.monotonic()
        self.spawned_at = time.time()
        self.process = processes.spawn_serve(
            config, self.log, argv=argv, env=environment(env), cwd=REPO
        )

    def wait_ready(self) -> float:
        """Poll /readyz every 2 ms; return the seconds from spawn to its first 200."""
        processes.wait_ready(
            self.process, self.base, self.log, timeout=READY_TIMEOUT, interval=0.002
        )
        return time.monotonic() - self.spawned

    def memory_mb(self) -> tuple[float, float]:
        """(resident now, peak resident) in MB."""
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024

    def probe(self) -> dict[str, list[tuple[float, float]]]:
        """What the loop-lag probe recorded so far (see `_LagProbe`)."""
        return read_probe(self.probe_file)

    def stop(self) -> int:
        return processes.stop_process(self.process, STOP_TIMEOUT)

    def tail(self, lines: int = 30) -> str:
        return processes.log_tail(self.log, lines)

    def errors(self) -> list[str]:
        """Log lines at warning level or above (the daemon logs JSON)."""
        found = []
        with contextlib.suppress(OSError):
            for line in self.log.read_text(errors="replace").splitlines():
                if '"level": "error"' in line or '"level": "critical"' in line:
                    found.append(line)
        return found


# --------------------------------------------------------------------------- fires


@dataclass(frozen=True)
class PerRun:
    """Each on-time run's steps, in seconds after its nominal instant (see `per_run`)."""

    claimed: list[float]  # its batch's claim was known committed (`fire_batch_claimed`)
    dispatched: list[float]  # `dispatched_at`: committed just before the request left
    received: list[float]  # the session service received the request (by Idempotency-Key)
    unmatched: int  # on-time runs missing one of the three


@dataclass
class Fires:
    """What the daemon did with schedules due at known instants."""

    expected: int
    run_lateness: list[float]  # run started_at - scheduled_for, scheduled fires only
    launch_lateness: list[float]  # session request arrival - nominal instant
    statuses: dict[str, int]
    other_triggers: int  # fires that were not on time (catch-up, missed)
    worst_stall: float
    stalls_over_100ms: int
    ready_s: float
    worst_gc: float = 0.0
    worst_callback: float = 0.0
    per_run: PerRun | None = None

    @property
    def dropped(self) -> int:
        return self.expected - len(self.run_lateness)


def measure_fires(
    workdir: Path,
    schedules: Sequence[Any],
    instants: dict[str, datetime],
    *,
    seeded_at: datetime,
    patience: float,
    scheduler: dict[str, Any] | None = None,
) -> Fires:
    """Seed `schedules` (named keys of `instants`), serve them with the real daemon until
    every one fired and finished (or `patience` s after the last instant), and measure."""
    seed(workdir / "agentcron.db", schedules, now=seeded_at)
    sessions = SessionServer(workdir)
    # At debug the daemon logs one `fire_batch_claimed` a batch; it has no other debug event.
    config = write_config(workdir, port=free_port(), launcher_url=sessions.url,
                          scheduler=scheduler, level="debug")  # fmt: skip
    daemon = Daemon(config)
    first, last = min(instants.values()), max(instants.values())
    try:
        ready = daemon.wait_ready()
        if (lead := (first - datetime.now(UTC)).total_seconds()) < 1.0:
            print(f"   warning: the daemon was ready only {lead:.2f} s before the first instant")
        deadline = last.timestamp() + patience
        while time.time() < deadline and sessions.stats()["count"] < len(schedules):
            time.sleep(0.05)
        _wait_finished(workdir / "agentcron.db", deadline=time.time() + 10)
        stats = sessions.stats()
        probe = daemon.probe()
        stall, over = worst_lag(probe, first.timestamp() - 0.5, time.time())
        collections = worst_lag(probe, first.timestamp() - 0.5, time.time(), "gc")[0]
        callback = worst_lag(probe, first.timestamp() - 0.5, time.time(), "callback")[0]
    finally:
        code = daemon.stop()
        sessions.stop()
    if code != 0 or daemon.errors():
        print(f"   warning: daemon exit code {code}; errors logged: {len(daemon.errors())}")
        print("\n".join(daemon.errors()[:5]))
    fires = _fires(workdir, instants, stats, stall, over, ready)
    fires.worst_gc = collections
    fires.worst_callback = callback
    fires.per_run = per_run(workdir / "agentcron.db", daemon.log, instants, stats["by_run"])
    return fires


def claim_commits(log: Path) -> dict[str, float]:
    """{run id: when its batch's claim was known committed} from a daemon log at debug."""
    found: dict[str, float] = {}
    with contextlib.suppress(OSError), log.open(errors="replace") as lines:
        for line in lines:
            if '"fire_batch_claimed"' in line:
                event = json.loads(line)
                found.update(dict.fromkeys(event["run_ids"], event["committed_at"]))
    return found


def per_run(
    db_path: Path, log: Path, instants: dict[str, datetime], arrivals: dict[str, float]
) -> PerRun:
    """Claim commit, dispatch and arrival of every on-time run, against its instant.

    The claim commit is the `fire_batch_claimed` event of the run's batch (the daemon logs
    it at debug, one a batch, with the batch's run ids); `dispatched_at` is per run; the
    arrival is the session service's, keyed by the run id the Idempotency-Key carries.
    """
    import sqlite3

    commits = claim_commits(log)
    claimed, dispatched, received, unmatched = [], [], [], 0
    with contextlib.closing(sqlite3.connect(db_path, timeout=5)) as conn:
        rows = conn.execute(
            "SELECT r.id, r.scheduled_for, r.dispatched_at, s.name FROM runs r "
            "JOIN schedules s ON s.id = r.schedule_id WHERE r.trigger IN ('cron', 'one_time')"
        ).fetchall()
    for run_id, scheduled_for, dispatched_at, name in rows:
        nominal = instants.get(name)
        if nominal is None or _instant(scheduled_for) != nominal:
            continue
        commit, arrival = commits.get(run_id), arrivals.get(run_id)
        if commit is None or dispatched_at is None or arrival is None:
            unmatched += 1
            continue
        due = nominal.timestamp()
        claimed.append(commit - due)
        dispatched.append(_instant(dispatched_at).timestamp() - due)
        received.append(arrival - due)
    return PerRun(claimed, dispatched, received, unmatched)


def _instant(stored: str) -> datetime:
    """A stored instant (ISO text, UTC) as an aware datetime."""
    value = datetime.fromisoformat(stored)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _wait_finished(db_path: Path, *, deadline: float) -> None:
    import sqlite3

    while time.time() < deadline:
        with contextlib.closing(sqlite3.connect(db_path, timeout=5)) as conn:
            (launching,) = conn.execute(
                "SELECT count(*) FROM runs WHERE status = 'launching'"
            ).fetchone()
        if launching == 0:
            return
        time.sleep(0.05)


def _fires(
    workdir: Path,
    instants: dict[str, datetime],
    stats: dict[str, Any],
    stall: float,
    over: int,
    ready: float,
) -> Fires:
    from sqlalchemy import create_engine, select

    from storage.tables import RUNS, SCHEDULES

    engine = create_engine(f"sqlite:///{workdir / 'agentcron.db'}")
    try:
        with engine.connect() as conn:
            query = select(SCHEDULES.c.id, SCHEDULES.c.name)
            names: dict[str, str] = dict(conn.execute(query).tuples().all())
            runs = [dict(row._mapping) for row in conn.execute(select(RUNS))]
    finally:
        engine.dispose()
    statuses: dict[str, int] = {}
    lateness, others = [], 0
    for run in runs:
        statuses[run["status"]] = statuses.get(run["status"], 0) + 1
        nominal = instants.get(names.get(run["schedule_id"], ""))
        if run["trigger"] in ("cron", "one_time") and run["scheduled_for"] == nominal:
            lateness.append((run["started_at"] - run["scheduled_for"]).total_seconds())
        else:
            others += 1
    arrivals = [
        at - instants[title].timestamp()
        for at, title in zip(stats["arrivals"], stats["titles"], strict=True)
        if title in instants
    ]
    return Fires(len(instants), lateness, arrivals, statuses, others, stall, over, ready)


def fires_line(label: str, fires: Fires) -> str:
    late, launch = fires.run_lateness, fires.launch_lateness
    return (
        f"   {label}: runs {len(late)}/{fires.expected} on time, dropped {fires.dropped}, "
        f"statuses {fires.statuses}; run lateness p50 {ms(percentile(late, 0.5))} "
        f"p99 {ms(percentile(late, 0.99))} max {ms(max(late, default=0.0))}; "
        f"launches received {len(launch)}, last {ms(max(launch, default=0.0))} after its "
        f"instant; loop lag max {ms(fires.worst_stall)}, longest callback "
        f"{callback_ms(fires.worst_callback)}, longest full GC {ms(fires.worst_gc)}"
        + ("" if fires.per_run is None else per_run_line(fires.per_run))
    )


def per_run_line(steps: PerRun) -> str:
    figures = {"claimed": steps.claimed, "left": steps.dispatched, "received": steps.received}
    return (
        "; per run p50/p99/max "
        + ", ".join(
            f"{name} {ms(percentile(x, 0.5))}/{ms(percentile(x, 0.99))}/{ms(max(x, default=0.0))}"
            for name, x in figures.items()
        )
        + f" ({steps.unmatched} unmatched)"
    )


# --------------------------------------------------------------------------- load generation


@dataclass(frozen=True)
class Load:
    """What one load run measured."""

    tool: str
    requests: int
    seconds: float
    errors: int
    p50: float
    p99: float
    max: float
    cpu: float | None = None
    """CPU seconds (user + system, every thread) the server process used during the load."""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_request(self) -> float | None:
        """Server CPU seconds per request: unlike the rate, it hardly moves with what else
        the machine is running. It does move with how busy the server was (`busy`): a
        request that finds the process idle runs on cold CPU caches, and costs several times
        one that follows another at once (a keyed read: 60-80 us back to back, 300 us after
        2 ms idle, measured). Compare loads of a similar `busy`."""
        return None if self.cpu is None or not self.requests else self.cpu / self.requests

    @property
    def busy(self) -> float | None:
        """The server's CPU seconds per second of the load (1.0: one core throughout)."""
        return None if self.cpu is None or not self.seconds else self.cpu / self.seconds

    def line(self) -> str:
        cpu = self.cpu_per_request
        return (
            f"{self.rate:8.0f} req/s  p50 {self.p50 * 1000:6.2f} ms  p99 {self.p99 * 1000:6.2f} ms"
            f"  max {self.max * 1000:7.1f} ms  errors {self.errors}"
            f"{'' if cpu is None else f'  cpu {cpu * 1e6:5.0f} us/req'}  ({self.tool})"
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process `pid` (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_cpu(pid: int, load: Callable[[], Load]) -> Load:
    """`load()`, with the CPU process `pid` used meanwhile."""
    before = cpu_seconds(pid)
    found = load()
    return dataclasses.replace(found, cpu=cpu_seconds(pid) - before)


def generate_load(
    base: str,
    method: str,
    paths: Sequence[str],
    *,
    connections: int,
    seconds: float,
    body: str | None = None,
    token: str | None = None,
    use_wrk: bool = True,
    headers: dict[str, str] | None = None,
) -> Load:
    """`connections` keep-alive connections sending requests for `seconds`, paths in turn.

    A PATCH/POST body may contain `{n}`, replaced by a request counter. Uses `wrk` when it
    is installed (it costs the machine far less CPU than a Python client), else aiohttp.
    """
    sent = ({"Authorization": f"Bearer {token}"} if token else {}) | (headers or {})
    plan = LoadPlan(base, method, paths, connections, seconds, body, sent)
    if use_wrk and shutil.which("wrk"):
        return _wrk(plan)
    return asyncio.run(_python_load(plan))


@dataclass(frozen=True)
class LoadPlan:
    """What one load run sends (see `generate_load`)."""

    base: str
    method: str
    paths: Sequence[str]
    connections: int
    seconds: float
    body: str | None
    headers: dict[str, str]


_WRK_SCRIPT = """
paths = {%(paths)s}
counter = 0
wrk.method = "%(method)s"
wrk.headers["Content-Type"] = "application/json"
%(headers)s
request = function()
  counter = counter + 1
  local path = paths[(counter %% #paths) + 1]
  local body = nil
  %(body)s
  return wrk.format(nil, path, nil, body)
end
done = function(summary, latency, requests)
  io.write(string.format("BENCH %%d %%d %%d %%d %%d %%d %%d\\n",
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout + summary.errors.status,
    latency:percentile(50), latency:percentile(99), latency.max, summary.errors.status))
end
"""


def _wrk(plan: LoadPlan, script: str | None = None) -> Load:
    """Run `wrk` for the plan (or with a script of its own, ending in `_WRK_SCRIPT`'s done)."""
    if script is None:
        script = _wrk_script(plan)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        result = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{plan.connections}",
                f"-d{max(1, round(plan.seconds))}s",
                "--timeout",
                "10s",
                "-s",
                handle.name,
                plan.base,
            ],
            capture_output=True,
            text=True,
            timeout=plan.seconds + 60,
            env=environment(),
        )
    finally:
        os.unlink(handle.name)
    line = next((x for x in result.stdout.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {result.stdout}\n{result.stderr}")
    requests, micros, errors, p50, p99, worst, _ = (int(x) for x in line.split()[1:])
    return Load("wrk", requests, micros / 1e6, errors, p50 / 1e6, p99 / 1e6, worst / 1e6)


def _wrk_script(plan: LoadPlan) -> str:
    body_code = ""
    if plan.body is not None:
        lua_body = json.dumps(plan.body).replace("{n}", '" .. counter .. "')
        body_code = f"body = {lua_body}"
    return _WRK_SCRIPT % {
        "paths": ", ".join(json.dumps(p) for p in plan.paths),
        "method": plan.method,
        "headers": "\n".join(
            f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}"
            for name, value in plan.headers.items()
        ),
        "body": body_code,
    }


async def _python_load(plan: LoadPlan) -> Load:
    """The plan's requests, sent as a mix of one kind."""
    headers = {"Content-Type": "application/json"} | plan.headers
    requests = [Request(plan.method, path, headers, plan.body) for path in plan.paths]
    return await _python_mix(plan.base, requests, plan.connections, plan.seconds)


@dataclass(frozen=True)
class Request:
    """One request of a mixed load; `{n}` in its body is replaced by a request counter."""

    method: str
    path: str
    headers: dict[str, str]
    body: str | None = None


_WRK_MIX_SCRIPT = """
requests = {%(requests)s}
counter = 0
request = function()
  counter = counter + 1
  local r = requests[(counter %% #requests) + 1]
  local headers = {}
  for k, v in pairs(r.headers) do headers[k] = v end
  local body = nil
  if r.body then body = (r.body:gsub("{n}", tostring(counter))) end
  return wrk.format(r.method, r.path, headers, body)
end
""" + _WRK_SCRIPT[_WRK_SCRIPT.index("done = function") :]


def generate_mix(
    base: str,
    requests: Sequence[Request],
    *,
    connections: int,
    seconds: float,
    use_wrk: bool = True,
) -> Load:
    """`connections` keep-alive connections sending `requests` in turn for `seconds`."""
    if use_wrk and shutil.which("wrk"):
        return _wrk_mix(base, requests, connections, seconds)
    return asyncio.run(_python_mix(base, requests, connections, seconds))


def _lua_request(request: Request) -> str:
    headers = ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}" for k, v in request.headers.items())
    body = "nil" if request.body is None else json.dumps(request.body)
    return (
        f"{{method = {json.dumps(request.method)}, path = {json.dumps(request.path)}, "
        f"headers = {{{headers}}}, body = {body}}}"
    )


def _wrk_mix(base: str, requests: Sequence[Request], connections: int, seconds: float) -> Load:
    script = _WRK_MIX_SCRIPT % {"requests": ",\n".join(map(_lua_request, requests))}
    plan = LoadPlan(base, "GET", ["/"], connections, seconds, None, {})
    return _wrk(plan, script=script)


async def _python_mix(
    base: str, requests: Sequence[Request], connections: int, seconds: float
) -> Load:
    import aiohttp

    latencies: list[float] = []
    errors = counter = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(base, connector=connector) as session:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors, counter
            while time.perf_counter() < deadline:
                counter += 1
                r = requests[counter % len(requests)]
                data = None if r.body is None else r.body.replace("{n}", str(counter))
                began = time.perf_counter()
                try:
                    async with session.request(
                        r.method, r.path, data=data, headers=r.headers
                    ) as response:
                        await response.read()
                        errors += response.status >= 400
                except aiohttp.ClientError:
                    errors += 1
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - began
    return Load(
        "python-aiohttp",
        len(latencies),
        elapsed,
        errors,
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        max(latencies, default=0.0),
    )


# --------------------------------------------------------------------------- helper servers


async def _serve_app(app: Any, port_file: Path) -> None:
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
    port = runner.addresses[0][1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    port_file.write_text(str(port))  # noqa: ASYNC240  (once, before serving)
    await stop.wait()
    await runner.cleanup()


async def session_server(port_file: Path) -> None:
    from aiohttp import web

    arrivals: list[float] = []
    titles: list[str] = []
    by_run: dict[str, float] = {}

    async def create(request: web.Request) -> web.Response:
        arrived = time.time()
        arrivals.append(arrived)
        if run_id := request.headers.get("Idempotency-Key"):
            by_run.setdefault(run_id, arrived)  # the first arrival; a re-send keeps it
        body = await request.json()
        titles.append(body.get("title", ""))
        session_id = f"bench-{len(arrivals)}"
        return web.json_response({"session_id": session_id, "url": f"http://s/{session_id}"})

    async def stats(request: web.Request) -> web.Response:
        answer = {"count": len(arrivals), "arrivals": arrivals, "titles": titles, "by_run": by_run}
        return web.json_response(answer)

    async def reset(request: web.Request) -> web.Response:
        arrivals.clear()
        titles.clear()
        by_run.clear()
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/v3/organizations/{org_id}/sessions", create)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    await _serve_app(app, port_file)


async def baseline_api(db_path: Path, port_file: Path) -> None:
    import aiosqlite
    from aiohttp import web

    db = await aiosqlite.connect(db_path)  # implicit transactions: execute, then commit
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=5000"):
        await db.execute(f"PRAGMA {pragma}")
    db.row_factory = aiosqlite.Row
    collection = "/v3/organizations/{org_id}/schedules"
    item = f"{collection}/{{schedule_id}}"
    async with db.execute("SELECT * FROM schedules LIMIT 1") as cursor:
        template = dict(await cursor.fetchone() or {})
    insert = (
        f"INSERT INTO schedules ({', '.join(template)}) "
        f"VALUES ({', '.join(f':{column}' for column in template)})"
    )

    async def get(request: web.Request) -> web.Response:
        async with db.execute(
            "SELECT * FROM schedules WHERE id = ?", (request.match_info["schedule_id"],)
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            raise web.HTTPNotFound()
        return web.json_response(dict(row))

    async def patch(request: web.Request) -> web.Response:
        body = await request.json()
        schedule_id = request.match_info["schedule_id"]
        await db.execute(
            "UPDATE schedules SET name = ?, version = version + 1 WHERE id = ?",
            (body["name"], schedule_id),
        )
        await db.commit()
        return web.json_response({"id": schedule_id, "name": body["name"]})

    async def post(request: web.Request) -> web.Response:
        body = await request.json()
        row = template | {"id": uuid.uuid4().hex, "name": body["name"], "prompt": body["prompt"]}
        await db.execute(insert, row)
        await db.commit()
        return web.json_response({"id": row["id"], "name": row["name"]})

    app = web.Application()
    app.router.add_get(item, get)
    app.router.add_post(collection, post)
    app.router.add_patch(item, patch)
    try:
        await _serve_app(app, port_file)
    finally:
        await db.close()


# --------------------------------------------------------------------------- probed daemon


class _LagProbe:
    """Sleeps PROBE_INTERVAL at a time on the daemon's loop and records the overshoot.

    Every overshoot over NOTABLE_LAG is appended to the probe file as `lag <wall time> <s>`,
    so a benchmark can take the worst stall within the window it cares about (a burst, not
    the start-up). Garbage collections of the oldest generation are appended as
    `gc <wall time> <s>`: they stop every thread, the loop's included.
    """

    def __init__(self, out: Path) -> None:
        self.out = out.open("a", buffering=1)
        self._gc_began = 0.0
        gc.callbacks.append(self._on_gc)
        self._time_callbacks()

    def _time_callbacks(self) -> None:
        """Time every callback the loop runs; write those over NOTABLE_CALLBACK as
        `callback <wall time> <s> <what>` (two clock reads per callback: negligible)."""
        run, out, clock = asyncio.events.Handle._run, self.out, time.perf_counter

        def timed(handle: asyncio.events.Handle) -> None:
            began = clock()
            run(handle)
            took = clock() - began
            if took > NOTABLE_CALLBACK:
                out.write(f"callback {time.time() - took:.6f} {took:.6f} {_what(handle)}\n")

        asyncio.events.Handle._run = timed  # type: ignore[method-assign,assignment]

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._gc_began = time.perf_counter()
        else:
            took = time.perf_counter() - self._gc_began
            self.out.write(f"gc {time.time() - took:.6f} {took:.6f}\n")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            await asyncio.sleep(PROBE_INTERVAL)
            lag = loop.time() - began - PROBE_INTERVAL
            if lag > NOTABLE_LAG:
                self.out.write(f"lag {time.time() - lag:.6f} {lag:.6f}\n")


def _what(handle: asyncio.events.Handle) -> str:
    callback: Any = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        return str(getattr(owner.get_coro(), "__qualname__", "?")).replace(" ", "")
    return str(getattr(callback, "__qualname__", "?")).replace(" ", "")


def read_probe(path: Path) -> dict[str, list[tuple[float, float]]]:
    """{"lag": [(wall time, s)...], "gc": [...]} from a probe file (empty if none yet)."""
    found: dict[str, list[tuple[float, float]]] = {"lag": [], "gc": []}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            kind, at, seconds, *_ = line.split()
            found.setdefault(kind, []).append((float(at), float(seconds)))
    return found


def worst_lag(
    probe: dict[str, list[tuple[float, float]]], since: float, until: float, kind: str = "lag"
) -> tuple[float, int]:
    """(longest loop stall in s, stalls over 100 ms) the probe saw between two wall times."""
    lags = [lag for at, lag in probe.get(kind, []) if since <= at <= until]
    return max(lags, default=0.0), sum(1 for lag in lags if lag > 0.1)


def probed_serve(config: Path, probe_file: Path) -> int:
    from daemon import logs, service  # noqa: F401  (what serve imports)
    from daemon.cli import main

    with probe_file.open("a") as out:  # the imports are done: the rest is start-up work
        out.write(f"imported {time.time():.6f} 0\n")
    if os.environ.get(LIST_ENCODER_ENV) == "models":
        import legacy_lists

        legacy_lists.install()

    run = service.Daemon.run

    async def run_with_probe(self: service.Daemon) -> int:
        probe = asyncio.create_task(_LagProbe(probe_file).run(), name="bench-lag-probe")
        try:
            code: int = await run(self)
            return code
        finally:
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe

    service.Daemon.run = run_with_probe
    code: int = main(["serve", "--config", str(config)])
    return code


def _main(argv: Sequence[str]) -> int:
    kind, *args = argv
    if kind == "session-server":
        asyncio.run(session_server(Path(args[0])))
    elif kind == "baseline-api":
        asyncio.run(baseline_api(Path(args[0]), Path(args[1])))
    elif kind == "probed-serve":
        return probed_serve(Path(args[0]), Path(args[1]))
    else:
        print(f"unknown helper {kind!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
