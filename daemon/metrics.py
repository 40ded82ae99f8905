"""The engine's Prometheus metrics, on prometheus-client's default registry (`/metrics`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RUNS = Counter(
    "agentcron_runs_total",
    "Runs recorded, by final status (succeeded, failed, skipped, missed, interrupted).",
    ["status"],
)
FIRE_LATENESS = Histogram(
    "agentcron_fire_lateness_seconds",
    "How long after its nominal instant a scheduled run started (jitter included).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
LAUNCH_DURATION = Histogram(
    "agentcron_launch_duration_seconds",
    "How long launching a session took, retries included.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
LAUNCHES_IN_FLIGHT = Gauge("agentcron_launches_in_flight", "Launches started and not yet finished.")
SCHEDULES_ENABLED = Gauge(
    "agentcron_schedules_enabled", "Enabled, not deleted schedules (as of the last refill)."
)
TIMERS_HELD = Gauge(
    "agentcron_timers_held", "Schedules with a timer in memory (due within the horizon)."
)
CATCHUP_RUNS = Counter(
    "agentcron_catchup_runs_total", "Catch-up runs started for instants missed while down or late."
)
MISSED_RUNS = Counter(
    "agentcron_missed_runs_total", "Missed runs recorded (each may stand for many instants)."
)
FLEET_MEMBERS = Gauge(
    "agentcron_fleet_members", "Live members of the fleet sharing the database (1 on SQLite)."
)
