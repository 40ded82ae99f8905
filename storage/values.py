"""Checked values of schedule fields, shared by every way a schedule comes in.

The Devin façade, the AgentScope façade and the configuration file accept the same cron
expressions, timezone names and instants, so each check is written once, here, over
`storage.cron`: `valid_cron`, `valid_timezone`, `as_utc`, and the pydantic types built on
them. A refusal is a ValueError whose text says what is wrong; each input path words its
own error around it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field

from storage.cron import CronError, load_timezone, validate_cron

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
"""Instants a client may send lie in [EARLIEST, LATEST): every later computation (a fire
time, a window, an offset) then stays inside what a datetime can hold."""
MAX_SECONDS = 10 * 366 * 86400.0
"""Upper bound of the duration fields (`catchup_window_s`, `jitter_s`): ten years."""
MAX_INT = 2**31 - 1


def as_utc(moment: datetime) -> datetime:
    """`moment` in UTC: naive means UTC, aware is converted. Only 1970..9998 is accepted."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("datetime is out of range") from None
    if not EARLIEST <= moment < LATEST:
        raise ValueError("datetime must be between 1970-01-01 and 9999-01-01 (UTC)")
    return moment


def valid_cron(expr: str, *, refusal: str = "{reason}") -> str:
    """`expr` normalised by `storage.cron`; a ValueError, `refusal` worded, if it is not valid."""
    try:
        return validate_cron(expr)
    except CronError as exc:
        raise ValueError(refusal.format(reason=exc)) from None


def valid_timezone(name: str) -> str:
    """`name` if it is an IANA timezone; TimezoneError (a ValueError) if not."""
    load_timezone(name)
    return name


UTCDatetime = Annotated[datetime, AfterValidator(as_utc)]
CronExpression = Annotated[str, AfterValidator(valid_cron)]
TimezoneName = Annotated[str, AfterValidator(valid_timezone)]
NonEmpty = Annotated[str, Field(min_length=1)]
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1, le=MAX_INT)]
LauncherName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")]
"""The name of a configured launcher (`[launcher]` is `default`, `[launchers.NAME]` the others)."""
