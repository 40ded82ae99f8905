"""AgentScope's unpaged schedule list under load: `python bench/api.py --lists`.

One user owns 100 schedules, another 10,000 (a 260-character prompt and a chat model
config each, about 8 MB of JSON for the larger list). The real daemon (with the loop probe)
answers `GET /schedule/` for each user over 10 keep-alive connections, while one-time
schedules fire one a second throughout. Per load: requests/s and latency; the longest
single loop callback and the loop lag (5 ms timer) within the load's window; the lateness of
the fires whose instant fell in it (run `started_at` - `scheduled_for`). Before the loads,
five single requests time the list unloaded. The baseline is the same daemon answering the
list the way it did before (`legacy_lists.py`), in the same run, on a copy of the database
without the indexes the lists have since (`storage.tables.LIST_INDEXES`), as it was then.
"""

from __future__ import annotations

import math
import shutil
import sqlite3
import time
import urllib.request
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import common

SIZES = (100, 10_000)
CONNECTIONS = 10
PROMPT = ("Summarise the pull requests merged since yesterday, group them by area, flag "
          "anything that touched the database schema or the public API, and post the summary "
          "to the team channel with links; keep it under two hundred words and say so when "
          "nothing was merged at all. ")[:260]  # fmt: skip
CHAT_MODEL = {"type": "openai", "model": "gpt-bench", "parameters": {"temperature": 0.2}}
TICK = "tick-"
ENCODERS = {"rows": "encoded from rows off the loop", "models": "pydantic models (before)"}
RATE_RATIO = 10.0  # the 100-item list, against the baseline
LARGE_MS = 0.300  # one unloaded request of the 10,000-item list
CALLBACK = 0.020
LATENESS_P99 = 0.010


def user(size: int) -> str:
    return f"bench-owner-{size}"


@dataclass
class ListLoad:
    size: int
    single: list[float]  # unloaded request times
    body_bytes: int
    load: common.Load
    callback: float
    lag: float
    lateness: list[float]
    gc: float
    slow: list[str]  # what the callbacks over CALLBACK were


def seed_lists(path: Path, now: datetime) -> None:
    schedules = [
        common.bench_schedule(
            f"list-{size}-{i:05}",
            now=now,
            cron="0 0 1 1 *",
            owner_user_id=user(size),
            agent="agent-bench",
            prompt=PROMPT,
            chat_model_config=CHAT_MODEL,
        )
        for size in SIZES
        for i in range(size)
    ]
    common.seed(path, schedules, now=now)


def config_sections() -> dict[str, Any]:
    """The AgentScope façade on, and one user per list size."""
    users = [{"id": user(size), "orgs": [common.ORG], "permissions": []} for size in SIZES]
    return {"agentscope": {"enabled": True, "org": common.ORG}, "users": users}


def fetch(base: str, size: int) -> tuple[float, int]:
    """(seconds, bytes) of one list request."""
    request = urllib.request.Request(f"{base}/schedule/", headers={"X-User-ID": user(size)})
    began = time.perf_counter()
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
        request, timeout=60
    ) as response:
        body = response.read()
    return time.perf_counter() - began, len(body)


def tick_lateness(db_path: Path, since: float, until: float) -> list[float]:
    """Lateness of the every-second fires whose instant fell in [since, until]."""
    query = (
        "SELECT r.scheduled_for, r.started_at FROM runs r JOIN schedules s "
        "ON s.id = r.schedule_id WHERE s.name LIKE ? AND r.trigger = 'one_time'"
    )
    with closing(sqlite3.connect(db_path, timeout=10)) as conn:
        rows = conn.execute(query, (f"{TICK}%",)).fetchall()
    late = []
    for nominal, started in rows:
        instant = datetime.fromisoformat(nominal).replace(tzinfo=UTC)
        if since <= instant.timestamp() <= until:
            late.append(
                (datetime.fromisoformat(started).replace(tzinfo=UTC) - instant).total_seconds()
            )
    return late


def slow_callbacks(probe_file: Path, since: float, until: float) -> list[str]:
    """`what` of each callback over CALLBACK the probe saw in the window, longest first."""
    found = []
    for line in probe_file.read_text().splitlines():
        kind, at, seconds, *what = line.split()
        if kind == "callback" and since <= float(at) <= until and float(seconds) > CALLBACK:
            found.append((float(seconds), " ".join(what)))
    return [f"{common.ms(seconds)} {what}" for seconds, what in sorted(found, reverse=True)]


def drop_list_indexes(db_path: Path) -> None:
    from storage.tables import LIST_INDEXES

    with closing(sqlite3.connect(db_path)) as conn:
        for index in LIST_INDEXES:
            conn.execute(f"DROP INDEX {index.name}")
        conn.commit()


def measure(
    seeded: Path, workdir: Path, encoder: str, seconds: float, use_wrk: bool
) -> list[ListLoad]:
    run_dir = workdir / encoder
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir()
    db_path = run_dir / "agentcron.db"
    shutil.copy(seeded, db_path)
    if encoder == "models":
        drop_list_indexes(db_path)
    now = datetime.now(UTC)
    first = now.replace(microsecond=0) + timedelta(seconds=4)
    ticks = math.ceil(len(SIZES) * (seconds + 25)) + 10
    common.seed(db_path, [
        common.bench_schedule(f"{TICK}{i:04}", now=now, schedule_type="one_time",
                              scheduled_at=first + timedelta(seconds=i))
        for i in range(ticks)
    ], now=now)  # fmt: skip
    sessions = common.SessionServer(run_dir)
    config = common.write_config(
        run_dir, port=common.free_port(), launcher_url=sessions.url, extra=config_sections()
    )
    daemon = common.Daemon(config, env={common.LIST_ENCODER_ENV: encoder})
    windows: list[tuple[int, list[float], int, common.Load, float, float]] = []
    try:
        daemon.wait_ready()
        time.sleep(max(0.0, first.timestamp() + 0.5 - time.time()))
        for size in SIZES:
            timed = [fetch(daemon.base, size) for _ in range(5)]
            began = time.time()
            load = common.generate_load(
                daemon.base, "GET", ["/schedule/"], connections=CONNECTIONS, seconds=seconds,
                headers={"X-User-ID": user(size)}, use_wrk=use_wrk,
            )  # fmt: skip
            windows.append((size, [t for t, _ in timed], timed[0][1], load, began, time.time()))
        time.sleep(2.0)  # the last fires of the window finish
        probe = daemon.probe()
    finally:
        daemon.stop()
        sessions.stop()
    if daemon.errors():
        print(f"   warning: the {encoder} daemon logged {len(daemon.errors())} errors")
        print("\n".join(line[-1200:] for line in daemon.errors()[:2]))
    return [
        ListLoad(
            size,
            single,
            size_bytes,
            load,
            common.worst_lag(probe, began, ended, "callback")[0],
            common.worst_lag(probe, began, ended)[0],
            tick_lateness(db_path, began, ended),
            common.worst_lag(probe, began, ended, "gc")[0],
            slow_callbacks(daemon.probe_file, began, ended),
        )
        for size, single, size_bytes, load, began, ended in windows
    ]


def line(label: str, found: ListLoad) -> str:
    late = found.lateness
    return (
        f"   {found.size:>6} items {label:7} {found.load.line()}\n"
        f"   {'':20}unloaded median {common.ms(common.median(found.single))} "
        f"({found.body_bytes / 1e6:.2f} MB); longest callback "
        f"{common.callback_ms(found.callback)}, loop lag {common.ms(found.lag)}; "
        f"every-second fires {len(late)}: lateness p50 {common.ms(common.percentile(late, 0.5))} "
        f"p99 {common.ms(common.percentile(late, 0.99))} max {common.ms(max(late, default=0.0))}; "
        f"longest full GC {common.ms(found.gc)}\n"
        f"   {'':20}callbacks over {CALLBACK * 1000:g} ms: {', '.join(found.slow[:4]) or 'none'}"
    )


def main(seconds: float, use_wrk: bool) -> None:
    common.header(
        f"API lists: AgentScope list of {SIZES} items, {CONNECTIONS} conns, {seconds:g} s"
    )
    with common.Workdir("api-lists") as workdir:
        seeded = workdir / "seeded.db"
        seed_lists(seeded, datetime.now(UTC))
        results = {name: measure(seeded, workdir, name, seconds, use_wrk) for name in ENCODERS}
    for name, label in ENCODERS.items():
        print(f"-- {label}")
        for found in results[name]:
            print(line(name, found))
    report(results)


def report(results: dict[str, list[ListLoad]]) -> None:
    ours = {found.size: found for found in results["rows"]}
    theirs = {found.size: found for found in results["models"]}
    small, large = ours[SIZES[0]], ours[SIZES[-1]]
    ratio = small.load.rate / theirs[SIZES[0]].load.rate
    single = common.median(large.single)
    callback = max(found.callback for found in ours.values())
    late = [value for found in ours.values() for value in found.lateness]
    p99 = common.percentile(late, 0.99)
    errors = sum(found.load.errors for found in ours.values())
    checks = [
        (f"{SIZES[0]}-item list: {ratio:.1f}x the baseline's req/s", ratio >= RATE_RATIO, ">= 10x"),
        (f"{SIZES[-1]}-item list, unloaded: {common.ms(single)}", single <= LARGE_MS, "<= 300 ms"),
        (
            f"longest loop callback: {common.callback_ms(callback)}",
            callback <= CALLBACK,
            "<= 20 ms",
        ),
        (f"every-second fires' lateness p99: {common.ms(p99)}", p99 <= LATENESS_P99, "<= 10 ms"),
        (f"errors: {errors}", errors == 0, "0"),
    ]
    for text, met, target in checks:
        print(f"   {text:58} target {target:9} {'met' if met else 'MISSED'}")
    print(f"   targets met: {'yes' if all(met for _, met, _ in checks) else 'NO'}")
