"""Stable string values of the domain enumerations (on the wire and in the database)."""

from enum import StrEnum


class ScheduleType(StrEnum):
    RECURRING = "recurring"
    ONE_TIME = "one_time"


class NotifyOn(StrEnum):
    ALWAYS = "always"
    FAILURE = "failure"
    NEVER = "never"


class Overlap(StrEnum):
    SKIP = "skip"
    BUFFER_ONE = "buffer_one"
    ALLOW = "allow"


class PermissionMode(StrEnum):
    DEFAULT = "default"
    ACCEPT_EDITS = "accept_edits"
    EXPLORE = "explore"
    BYPASS = "bypass"
    DONT_ASK = "dont_ask"


class Source(StrEnum):
    USER = "USER"
    AGENT = "AGENT"


class DevinAgent(StrEnum):
    DEVIN = "devin"
    DATA_ANALYST = "data_analyst"
    ADVANCED = "advanced"


class PromptFormat(StrEnum):
    """How a fire turns the stored prompt into the text sent: as is, or rendered."""

    TEXT = "text"
    TEMPLATE = "template"


class RunTrigger(StrEnum):
    CRON = "cron"
    ONE_TIME = "one_time"
    MANUAL = "manual"
    CATCHUP = "catchup"
    BACKFILL = "backfill"


class RunStatus(StrEnum):
    LAUNCHING = "launching"
    RUNNING = "running"
    """Launched, and its session is followed until it ends (neither final nor a failure)."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    MISSED = "missed"
    INTERRUPTED = "interrupted"

    @property
    def is_failure(self) -> bool:
        """Outcomes that count against `consecutive_failures`."""
        return self in (RunStatus.FAILED, RunStatus.INTERRUPTED)

    @property
    def is_final(self) -> bool:
        """The run has ended: nothing will change its status again."""
        return self not in (RunStatus.LAUNCHING, RunStatus.RUNNING)


class Permission(StrEnum):
    MANAGE_ORG_SCHEDULES = "ManageOrgSchedules"
    IMPERSONATE_ORG_SESSIONS = "ImpersonateOrgSessions"
    MANAGE_ORG_PLAYBOOKS = "ManageOrgPlaybooks"
    USE_DEVIN_SESSIONS = "UseDevinSessions"


class ScheduleState(StrEnum):
    """The dashboard's filter of an org's schedules."""

    ALL = "all"
    ENABLED = "enabled"
    PAUSED = "paused"  # disabled: by hand, by an auto-pause, or a one_time schedule that fired
    FAILING = "failing"  # its latest runs failed: consecutive_failures > 0


class HistoryAction(StrEnum):
    """What an entry of a schedule's edit history did (see `storage.history.action_of`)."""

    CREATED = "created"
    UPDATED = "updated"
    ENABLED = "enabled"
    DISABLED = "disabled"
    PAUSED = "paused"
    DELETED = "deleted"
