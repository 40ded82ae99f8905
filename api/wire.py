"""Wire pieces the façades and the notifier share: a run as it is answered, and the envelope
of a list paged by `limit` and `offset`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from storage.domain import Run
from storage.enums import RunStatus, RunTrigger

T = TypeVar("T")


class RunJson(BaseModel):
    """One firing of a schedule. `scheduled_for` is the nominal instant (unique per schedule)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    schedule_id: str
    scheduled_for: datetime
    trigger: RunTrigger
    status: RunStatus
    identity: str | None = Field(description="The user the session ran as (or the bot user).")
    started_at: datetime
    finished_at: datetime | None
    session_id: str | None
    session_url: str | None
    attempts: int
    error: str | None
    session_status: str | None = Field(
        description="A followed session's status in the agent service's own words (its last"
        " word once the run has ended), or null."
    )


def run_fields(run: Run) -> dict[str, Any]:
    """The fields of `run` a client or a webhook receiver is shown, in `RunJson`'s order."""
    return {name: getattr(run, name) for name in RunJson.model_fields}


def run_json(run: Run) -> RunJson:
    return RunJson(**run_fields(run))


class OffsetPage(BaseModel, Generic[T]):
    """`{items, end_cursor, has_next_page, total}`: one page of a list paged by offset."""

    model_config = ConfigDict(extra="forbid")

    items: list[T]
    end_cursor: str | None = Field(description="The next page's offset, null on the last.")
    has_next_page: bool
    total: int

    @classmethod
    def of(cls, items: Sequence[T], *, offset: int, total: int) -> Self:
        """The page of `items` found at `offset`, of `total` in all."""
        following = offset + len(items)
        has_next_page = following < total
        return cls(
            items=list(items),
            end_cursor=str(following) if has_next_page else None,
            has_next_page=has_next_page,
            total=total,
        )
