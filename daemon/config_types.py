"""The vocabulary of the configuration models: the types of the values keys take
(durations, identifiers, secret names, URLs, paths, instants), the strict base of every
section, and the error a model raises about one of its keys."""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict
from pydantic_core import PydanticCustomError

from daemon.secrets import is_secret_name
from storage.enums import Permission
from storage.values import UTCDatetime

Loc = tuple[str | int, ...]
"""Where a value is in the file: section, index in an array of tables, key."""
Problem = tuple[Loc, str]
"""One problem: where, and what is wrong."""

_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_HINT = "a duration is a string like '90s', '15m', '2h', '1d' or integer seconds"


def parse_duration(value: str | int) -> float:
    """Seconds in `value`: `'90s'`, `'15m'`, `'2h'`, `'1d'`, or an integer number of seconds.

    Raises ValueError for anything else (negative numbers, booleans, other units).
    """
    if isinstance(value, bool):
        raise ValueError(_DURATION_HINT)
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str) and (match := _DURATION.fullmatch(value)):
        return float(int(match[1]) * _UNIT_SECONDS[match[2]])
    raise ValueError(f"{_DURATION_HINT}, not {value!r}")


def _duration_input(value: object) -> object:
    """Durations from the file go through `parse_duration`; code may also pass float seconds."""
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        return value
    if isinstance(value, str | int):
        return parse_duration(value)
    raise ValueError(_DURATION_HINT)


Duration = Annotated[float, BeforeValidator(_duration_input)]
"""Seconds (>= 0), written as `'90s'`, `'15m'`, `'2h'`, `'1d'` or integer seconds."""
PositiveDuration = Annotated[Duration, Field(gt=0)]


def _identifier(value: str) -> str:
    if not value or any(char.isspace() or char == "/" for char in value):
        raise ValueError("must be a non-empty identifier without spaces or '/'")
    return value


def _secret_name(value: str) -> str:
    if not is_secret_name(value):
        raise ValueError(
            "must be an environment variable or credential name "
            "(letters, digits, '_', '.', '-'; not starting with a digit)"
        )
    return value


def _sha256_hex_input(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _sha256_hex(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("must be 64 hexadecimal characters (the sha256 of the token)")
    return value


def http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http:// or https:// URL, not {value!r}")
    return value


def _path_input(value: object) -> object:
    if isinstance(value, str):
        if not value:
            raise ValueError("must be a non-empty path")
        return Path(value)
    return value


def _datetime_input(value: object) -> object:
    """TOML datetimes as they are, ISO-8601 strings parsed; a date alone is refused."""
    if isinstance(value, str):
        return _parse_iso_datetime(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        raise ValueError("needs a time of day too, e.g. 2030-01-01T09:00:00Z")
    return value


def _parse_iso_datetime(text: str) -> datetime:
    if not re.match(r"\d{4}-\d{2}-\d{2}[T ]\d", text):
        raise ValueError("must be an ISO-8601 date and time, e.g. 2030-01-01T09:00:00Z")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid ISO-8601 date and time") from None


Identifier = Annotated[str, AfterValidator(_identifier)]
SecretName = Annotated[str, AfterValidator(_secret_name)]
Sha256Hex = Annotated[str, BeforeValidator(_sha256_hex_input), AfterValidator(_sha256_hex)]
HttpUrl = Annotated[str, AfterValidator(http_url)]
ConfigPath = Annotated[Path, BeforeValidator(_path_input)]
UtcDatetime = Annotated[UTCDatetime, BeforeValidator(_datetime_input)]
"""An instant, as `storage.values.UTCDatetime` checks it; the file may also write it as an
ISO-8601 string (one without an offset is read as UTC)."""
# The domain's string enums, accepted from their string values (and only those).
PermissionName = Annotated[Permission, Strict(False)]


def conflict(message: str, key: str | None = None) -> PydanticCustomError:
    """A model-level error; `key` tells the loader which key of the model to point at."""
    return PydanticCustomError("config_value", message, {"config_key": key})


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


def _playbook_id(value: str) -> str:
    if not value.startswith("playbook-") or len(value) == len("playbook-"):
        raise ValueError("must start with 'playbook-' followed by a name")
    return _identifier(value)


PlaybookId = Annotated[str, AfterValidator(_playbook_id)]
