"""Steady load: one schedule due every second, agentcron against bare APScheduler.

Run: python bench/steady.py [--quick] [--seconds N]

Cron fires on whole minutes, so a fire every second is built from one_time schedules:
N schedules whose `scheduled_at` are N consecutive whole seconds. They are seeded into a
fresh database and served by the real daemon (with the loop-lag probe) and a fast session
service in another process. Measured: the lateness of the durable run record (run
`started_at` - `scheduled_for`), when each launch reached the session service, and the
longest single callback the loop ran and the loop lag over the whole window.

Baseline, at the same time in a separate process (both are nearly idle, so they share the
machine fairly): bare APScheduler 3 firing N no-op coroutine jobs with DateTriggers one
second apart, offset by half a second from agentcron's; lateness = job start - instant.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import common

FULL_SECONDS = 180
QUICK_SECONDS = 20
TARGET_P99 = 0.010

BASELINE_CHILD = """
import asyncio, json, sys, time
from datetime import datetime, UTC
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

async def main(first, count):
    lateness = []
    scheduler = AsyncIOScheduler(timezone="UTC")
    scheduler.start()
    done = asyncio.Event()
    async def job(instant):
        lateness.append(time.time() - instant)
        if len(lateness) == count:
            done.set()
    for i in range(count):
        instant = first + i
        run_date = datetime.fromtimestamp(instant, UTC)
        scheduler.add_job(job, DateTrigger(run_date=run_date), args=[instant],
                          misfire_grace_time=None)
    async with asyncio.timeout(first + count + 30 - time.time()):
        await done.wait()
    scheduler.shutdown(wait=False)
    return lateness

print(json.dumps(asyncio.run(main(float(sys.argv[1]), int(sys.argv[2])))))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SECONDS} s")
    parser.add_argument("--seconds", type=int)
    args = parser.parse_args()
    count = args.seconds or (QUICK_SECONDS if args.quick else FULL_SECONDS)
    common.header(f"steady: one schedule due every second for {count} s")
    now = datetime.now(UTC)
    first = now.replace(microsecond=0) + timedelta(seconds=8)
    instants = {f"steady-{i:04}": first + timedelta(seconds=i) for i in range(count)}
    schedules = [
        common.bench_schedule(name, now=now, schedule_type="one_time", scheduled_at=instant)
        for name, instant in instants.items()
    ]
    baseline = subprocess.Popen(
        [sys.executable, "-c", BASELINE_CHILD, str(first.timestamp() + 0.5), str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    with common.Workdir("steady") as workdir:
        fires = common.measure_fires(workdir, schedules, instants, seeded_at=now, patience=10.0)
    out, _ = baseline.communicate(timeout=120)
    theirs = json.loads(out)
    print(common.fires_line("agentcron", fires))
    report(fires, theirs)


def report(fires: common.Fires, theirs: list[float]) -> None:
    late = fires.run_lateness
    p50, p99 = common.percentile(late, 0.5), common.percentile(late, 0.99)
    base_p50, base_p99 = common.percentile(theirs, 0.5), common.percentile(theirs, 0.99)
    launch_p99 = common.percentile(fires.launch_lateness, 0.99)
    print(f"   {'':30} {'agentcron':>11} {'APScheduler':>12} {'ratio':>7} {'target':>9}")
    print(
        f"   {'lateness p50':30} {common.ms(p50):>11} {common.ms(base_p50):>12} "
        f"{common.ratio(base_p50, p50):>7}"
    )
    print(
        f"   {'lateness p99':30} {common.ms(p99):>11} {common.ms(base_p99):>12} "
        f"{common.ratio(base_p99, p99):>7} {'<= 10 ms':>9}"
    )
    print(f"   {'lateness max':30} {common.ms(max(late, default=0.0)):>11} "
          f"{common.ms(max(theirs, default=0.0)):>12}")  # fmt: skip
    print(f"   {'launch received p99':30} {common.ms(launch_p99):>11}")
    longest = common.callback_ms(fires.worst_callback)
    print(f"   {'longest callback':30} {longest:>11} {'':>20} <= 100 ms")
    print(f"   {'loop lag, 5 ms timer':30} {common.ms(fires.worst_stall):>11}")
    met = fires.dropped == 0 and p99 <= TARGET_P99 and fires.worst_callback <= 0.1
    print(f"   fires {len(late)}/{fires.expected}, dropped {fires.dropped}; "
          f"targets met: {'yes' if met else 'NO'}")  # fmt: skip


if __name__ == "__main__":
    main()
