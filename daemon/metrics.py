"""The engine's Prometheus metrics, on prometheus-client's default registry (`/metrics`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RUNS = Counter(
    "agentcron_runs_total",
    "Runs recorded, by final status (succeeded, failed, skipped, missed, interrupted);"
    " `running`: followed sessions launched.",
    ["status"],
)
RUNS_SKIPPED = Counter(
    "agentcron_runs_skipped_total",
    "Runs skipped instead of launched, by reason (overlap, org_concurrency, org_hourly).",
    ["reason"],
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
LAUNCHES = Counter(
    "agentcron_launches_total",
    "Launches carried out, by launcher name and outcome (succeeded, failed).",
    ["launcher", "outcome"],
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
SESSIONS_RUNNING = Gauge(
    "agentcron_sessions_running",
    "Launched sessions being followed to their end, by launcher.",
    ["launcher"],
)
FOLLOW_SECONDS = Histogram(
    "agentcron_follow_seconds",
    "From a followed session's launch to the end agentcron saw (or its follow timeout).",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 21600, 43200, 86400),
)
SESSION_POLLS = Counter(
    "agentcron_session_polls_total",
    "Reads of a followed session's status, by outcome (running, ended, transient_error, refused).",
    ["outcome"],
)
FLEET_MEMBERS = Gauge(
    "agentcron_fleet_members", "Live members of the fleet sharing the database (1 on SQLite)."
)
