"""Start-up with many schedules: agentcron against bare APScheduler.

Run: python bench/startup.py [--quick] [--schedules 10000,100000] [--runs N]

For each count N (10,000 and 100,000 unless told): agentcron: N enabled cron schedules
are seeded into a database file (SQLAlchemy Core bulk insert, see common.seed); then,
`--runs` times, a fresh copy of that file is served by the real `agentcron serve` process
and the time from spawning it to the first 200 of /readyz is taken, with its resident
memory once ready. The interpreter's start and the imports
are part of that time (with the bytecode cached, as for an installed package); the daemon
runs under common.py's `probed-serve`, which notes when its imports are done, so the
start-up work (store, recovery, catch-up, horizon, HTTP) is reported on its own too.

Baseline, in the same run: a fresh Python process registers the same cron expressions as
APScheduler 3 jobs (`CronTrigger.from_crontab`) in an AsyncIOScheduler with its memory job
store and starts it: the time from spawn until it is running with every job added.
Prints medians and the ratio per count, then how start-up time and memory grew from the
smallest count to the largest.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import common

FULL_SCHEDULES = "10000,100000"
QUICK_SCHEDULES = "10000"
TARGET_READY_S = 1.0
TARGET_RSS_MB = 120.0
TARGET_RATIO = 10.0  # against the baseline, from this many schedules on:
TARGET_RATIO_FROM = 100_000


def expressions(count: int) -> list[str]:
    """A realistic mix: daily at a random time, weekdays, hourly, every few hours."""
    rng = random.Random(20260101)
    shapes = (
        lambda: f"{rng.randrange(60)} {rng.randrange(24)} * * *",
        lambda: f"{rng.randrange(60)} {rng.randrange(24)} * * 1-5",
        lambda: f"{rng.randrange(60)} * * * *",
        lambda: f"{rng.randrange(60)} */{rng.choice((2, 3, 4, 6))} * * *",
        lambda: f"{rng.randrange(60)} {rng.randrange(24)} {rng.randrange(1, 29)} * *",
    )
    return [shapes[i % len(shapes)]() for i in range(count)]


def seed_database(path: Path, exprs: list[str]) -> float:
    now = datetime.now(UTC)
    schedules = [
        common.bench_schedule(f"s-{i:06}", now=now, cron=expr) for i, expr in enumerate(exprs)
    ]
    return common.seed(path, schedules, now=now)


def import_seconds() -> float:
    """Spawn of a process to the moment it has imported what `agentcron serve` imports
    (its exit, which tears down every module, is not counted)."""
    code = (
        "import time\n"
        "import daemon.cli, daemon.service, daemon.config, daemon.logs\n"
        "print(time.time())"
    )
    began = time.time()
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        cwd=common.REPO,
        env=common.environment(),
        capture_output=True,
        text=True,
    )
    return float(result.stdout) - began


def agentcron_start(seeded: Path, workdir: Path, session_url: str) -> tuple[float, float, float]:
    """(seconds to ready, seconds of it spent importing, RSS MB once ready) on a copy of
    `seeded`."""
    run_dir = workdir / f"run-{time.monotonic_ns()}"
    run_dir.mkdir()
    shutil.copy(seeded, run_dir / "agentcron.db")
    config = common.write_config(run_dir, port=common.free_port(), launcher_url=session_url)
    daemon = common.Daemon(config)
    try:
        ready = daemon.wait_ready()
        rss, _ = daemon.memory_mb()
        imported = daemon.probe()["imported"][0][0] - daemon.spawned_at
    finally:
        code = daemon.stop()
    if code != 0:
        raise RuntimeError(f"daemon exited {code}:\n{daemon.tail()}")
    shutil.rmtree(run_dir, ignore_errors=True)
    return ready, imported, rss


BASELINE_CHILD = """
import asyncio, json, resource, sys, time
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

def noop():
    pass

async def main(exprs):
    began = time.monotonic()
    scheduler = AsyncIOScheduler(timezone="UTC")
    for i, expr in enumerate(exprs):  # added before start(): one wake-up, not one per job
        scheduler.add_job(noop, CronTrigger.from_crontab(expr, timezone="UTC"), id=str(i))
    scheduler.start()
    elapsed = time.monotonic() - began
    jobs = len(scheduler.get_jobs())
    scheduler.shutdown(wait=False)
    return elapsed, jobs

elapsed, jobs = asyncio.run(main(json.load(open(sys.argv[1]))))
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"in_process_s": elapsed, "jobs": jobs, "peak_rss_mb": rss}))
"""


def apscheduler_start(exprs_file: Path) -> tuple[float, float, float]:
    """(seconds spawn to registered, seconds of registration in-process, peak RSS MB)."""
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", BASELINE_CHILD, str(exprs_file)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    total = time.monotonic() - began
    figures = json.loads(result.stdout)
    return total, figures["in_process_s"], figures["peak_rss_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SCHEDULES} schedules, 1 run")
    parser.add_argument("--schedules", help=f"counts, comma-separated (default {FULL_SCHEDULES})")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--baseline-runs", type=int)
    args = parser.parse_args()
    counts = args.schedules or (QUICK_SCHEDULES if args.quick else FULL_SCHEDULES)
    runs = args.runs or (1 if args.quick else 5)
    baseline_runs = args.baseline_runs or (1 if args.quick else 3)
    medians = {}
    for count in [int(x) for x in counts.split(",")]:
        medians[count] = measure(count, runs, baseline_runs)
    if len(medians) > 1:
        (low, (low_ready, low_rss)), *_, (high, (high_ready, high_rss)) = sorted(medians.items())
        print(
            f"-- from {low} to {high} schedules ({high / low:g}x): spawn -> ready "
            f"{low_ready:.3f} -> {high_ready:.3f} s, RSS {low_rss:.1f} -> {high_rss:.1f} MB"
        )


def measure(count: int, runs: int, baseline_runs: int) -> tuple[float, float]:
    """Seed `count` schedules, start both sides; report; the median ready time and RSS."""
    common.header(f"start-up with {count} enabled schedules")
    exprs = expressions(count)
    with common.Workdir("startup") as workdir:
        seeded = workdir / "seeded.db"
        print(f"   seeded {count} schedules in {seed_database(seeded, exprs):.1f} s (bulk insert)")
        exprs_file = workdir / "exprs.json"
        exprs_file.write_text(json.dumps(exprs))
        sessions = common.SessionServer(workdir)
        import_seconds()  # writes the bytecode cache, as installing the package would
        try:
            ours = [agentcron_start(seeded, workdir, sessions.url) for _ in range(runs)]
        finally:
            sessions.stop()
        theirs = [apscheduler_start(exprs_file) for _ in range(baseline_runs)]
    report(count, ours, theirs)
    return common.median(r for r, _, _ in ours), common.median(m for _, _, m in ours)


def report(
    count: int, ours: list[tuple[float, float, float]], theirs: list[tuple[float, float, float]]
) -> None:
    ready = common.median(r for r, _, _ in ours)
    imported = common.median(i for _, i, _ in ours)
    work = common.median(r - i for r, i, _ in ours)
    rss = common.median(m for _, _, m in ours)
    total = common.median(t for t, _, _ in theirs)
    inside = common.median(i for _, i, _ in theirs)
    their_rss = common.median(m for _, _, m in theirs)
    print(f"   agentcron runs (s to /readyz 200): {', '.join(f'{r:.3f}' for r, _, _ in ours)}")
    print(f"   apscheduler runs (s to registered): {', '.join(f'{t:.2f}' for t, _, _ in theirs)}")
    print(f"{'':36} {'agentcron':>12} {'APScheduler':>12} {'ratio':>7} {'target':>10}")
    rows = [
        ("spawn -> ready (median)", ready, total, f"<= {TARGET_READY_S:g} s"),
        ("  of which interpreter + imports", imported, None, ""),
        ("  start-up work (ready - imports)", work, inside, f"<= {TARGET_READY_S:g} s"),
    ]
    for name, mine, base, target in rows:
        other = f"{base:11.3f}s" if base is not None else f"{'':12}"
        ratio = common.ratio(base, mine) if base is not None else ""
        print(f"   {name:33} {mine:11.3f}s {other} {ratio:>7} {target:>10}")
    print(f"   {'RSS once ready (MB)':33} {rss:12.1f} {their_rss:12.1f} {'':>7} {'<= 120':>10}")
    met = ready <= TARGET_READY_S and rss <= TARGET_RSS_MB
    if count >= TARGET_RATIO_FROM:
        met = met and total / ready >= TARGET_RATIO
    print(f"   schedules: {count}; targets met: {'yes' if met else 'NO'}")


if __name__ == "__main__":
    main()
