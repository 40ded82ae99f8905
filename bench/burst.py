"""A burst: many schedules due in the same second, agentcron against bare APScheduler.

Run: python bench/burst.py [--quick] [--sizes 1000,5000,10000] [--runs N] [--kind cron|one_time]

agentcron: N schedules, all due at the same instant T, are seeded into a fresh database
(`--kind cron`: daily at T's minute, so they advance to tomorrow afterwards; `one_time`:
`scheduled_at = T`, so they are disabled afterwards); the real daemon (with the loop-lag
probe of common.py) and a fast session service in another process serve them. Measured,
for every run against T: when its claim committed (the daemon's `fire_batch_claimed` debug
event, one a batch), when its launch request left (`dispatched_at`, committed just before
the request is sent) and when the session service received it (by the run id in the
Idempotency-Key header); how many instants were dropped; and from T on the longest single
callback the loop ran (the target: none over 100 ms) and the loop lag (how late a 5 ms timer
woke: a whole turn of the loop, all the callbacks ready in it).

Baseline, in the same run: bare APScheduler 3 (AsyncIOScheduler, memory job store) firing
N no-op coroutine jobs with a DateTrigger at one instant; lateness = the moment each job
starts - the instant. `misfire_grace_time=None`, so it drops nothing either.
Prints medians over `--runs` of each step's p50 / p99 / max and its ratio to APScheduler's
job start at the same percentile (ours / APScheduler: how many times later; below 1 is
earlier).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta

import common

TARGET_P99 = {1000: 0.050, 10000: 0.250}
LAUNCH_WITHIN = 1.0


def due_at(lead: float, *, whole_minute: bool) -> datetime:
    """The first whole second (or minute) at least `lead` s from now."""
    now = datetime.now(UTC)
    instant = (now + timedelta(seconds=lead)).replace(microsecond=0) + timedelta(seconds=1)
    if whole_minute and instant.second:
        instant = instant.replace(second=0) + timedelta(minutes=1)
    return instant


def agentcron_burst(size: int, kind: str) -> common.Fires:
    lead = 6.0 + size / 2500  # seeding and start-up must be over before the instant
    instant = due_at(lead, whole_minute=kind == "cron")
    now = datetime.now(UTC)
    names = [f"burst-{i:05}" for i in range(size)]
    if kind == "cron":
        expr = f"{instant.minute} {instant.hour} * * *"
        schedules = [common.bench_schedule(name, now=now, cron=expr) for name in names]
    else:
        schedules = [
            common.bench_schedule(name, now=now, schedule_type="one_time", scheduled_at=instant)
            for name in names
        ]
    with common.Workdir("burst") as workdir:
        return common.measure_fires(
            workdir,
            schedules,
            dict.fromkeys(names, instant),
            seeded_at=now,
            patience=30.0,
            scheduler={"max_concurrent_launches": 100},
        )


async def apscheduler_burst(size: int) -> list[float]:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.date import DateTrigger

    lateness: list[float] = []
    done = asyncio.Event()
    scheduler = AsyncIOScheduler(timezone="UTC")
    instant = due_at(2.0 + size / 5000, whole_minute=False)

    async def job() -> None:
        lateness.append(time.time() - instant.timestamp())
        if len(lateness) == size:
            done.set()

    for _ in range(size):  # added before start(): one wake-up, not one per job
        scheduler.add_job(job, DateTrigger(run_date=instant), misfire_grace_time=None)
    scheduler.start()
    try:
        async with asyncio.timeout((instant - datetime.now(UTC)).total_seconds() + 60):
            await done.wait()
    finally:
        scheduler.shutdown(wait=False)
    return lateness


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1000 schedules, one run")
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--kind", choices=("cron", "one_time"), default="cron")
    args = parser.parse_args()
    sizes = [1000] if args.quick else [int(x) for x in args.sizes.split(",")]
    runs = args.runs or (1 if args.quick else 3)
    common.header(f"burst: {sizes} {args.kind} schedules due in the same second, {runs} runs")
    for size in sizes:
        ours = []
        for _ in range(runs):
            fires = agentcron_burst(size, args.kind)
            print(common.fires_line(f"agentcron {size}", fires))
            ours.append(fires)
        theirs = []
        for _ in range(runs):
            lateness = asyncio.run(apscheduler_burst(size))
            print(
                f"   apscheduler {size}: jobs {len(lateness)}/{size}, lateness p50 "
                f"{common.ms(common.percentile(lateness, 0.5))} p99 "
                f"{common.ms(common.percentile(lateness, 0.99))}"
            )
            theirs.append(lateness)
        report(size, ours, theirs)


STEPS = {
    "claim committed": lambda p: p.claimed,
    "request left (dispatched_at)": lambda p: p.dispatched,
    "received by the session service": lambda p: p.received,
}
STATS = {"p50": lambda x: common.percentile(x, 0.5), "p99": lambda x: common.percentile(x, 0.99),
         "max": lambda x: max(x, default=float("nan"))}  # fmt: skip


def report(size: int, ours: list[common.Fires], theirs: list[list[float]]) -> None:
    per_run = [f.per_run for f in ours if f.per_run is not None]
    dropped = max(f.dropped for f in ours)
    unmatched = max((p.unmatched for p in per_run), default=size)
    launched = common.median(max(f.launch_lateness, default=float("inf")) for f in ours)
    stall = max(f.worst_stall for f in ours)
    callback = max(f.worst_callback for f in ours)
    target = TARGET_P99.get(size)
    print(f"-- {size} due at once (medians of {len(ours)} runs), seconds after the instant")
    print(f"   {'':42} {'agentcron':>11} {'APScheduler':>12} {'ours/APS':>8}")
    claim_p99 = float("nan")
    for step, values in STEPS.items():
        for stat, of in STATS.items():
            mine = common.median(of(values(p)) for p in per_run)
            base = common.median(of(x) for x in theirs)
            claim_p99 = mine if (step, stat) == ("claim committed", "p99") else claim_p99
            name = f"{step} {stat}"
            print(f"   {name:42} {common.ms(mine):>11} {common.ms(base):>12} {mine / base:>7.1f}x")
    if target:
        print(f"   {'claim committed p99 target':42} {'<= ' + common.ms(target):>11}")
    print(f"   {'dropped (worst run)':42} {dropped:>11}")
    print(f"   {'runs missing a step (worst run)':42} {unmatched:>11}")
    print(f"   {'last launch received after T':42} {common.ms(launched):>11}")
    longest = common.callback_ms(callback)
    print(f"   {'longest callback (worst run)':42} {longest:>11} {'':20} <= 100 ms")
    print(f"   {'loop lag, 5 ms timer (worst run)':42} {common.ms(stall):>11}")
    met = dropped == 0 and unmatched == 0 and callback <= 0.1
    met = met and (target is None or claim_p99 <= target)
    if size == 1000:
        met = met and launched <= LAUNCH_WITHIN
    print(f"   targets met: {'yes' if met else 'NO'}")


if __name__ == "__main__":
    main()
