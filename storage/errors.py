"""The errors a store raises, whatever its backend.

`StoreError` and its subclasses say the store itself failed; `NotFound` is an answer (the
object is not there for this caller), so it is not a `StoreError`.
"""

from __future__ import annotations

from collections.abc import Collection


class StoreError(Exception):
    """Base of the store's failures."""


class StoreUnavailable(StoreError):
    """The database cannot be written or read right now (disk full, read-only, locked)."""


class SchemaError(StoreError):
    """The file is not an agentcron database this version can open."""


class NotFound(LookupError):
    """The object does not exist, is deleted, or belongs to another org (or agent)."""


class VersionMismatch(Exception):
    """A conditional write found the schedule at another `version` than the one expected.

    An answer, like `NotFound`: nothing was written. `current` is the stored version.
    """

    def __init__(self, schedule_id: str, expected: Collection[int], current: int) -> None:
        wanted = " or ".join(str(v) for v in sorted(expected)) or "none"
        super().__init__(
            f"schedule '{schedule_id}' is at version {current}, not {wanted}: "
            "it changed since it was read"
        )
        self.schedule_id = schedule_id
        self.current = current
