"""The errors a store raises, whatever its backend.

`StoreError` and its subclasses say the store itself failed; `NotFound` is an answer (the
object is not there for this caller), so it is not a `StoreError`.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of the store's failures."""


class StoreUnavailable(StoreError):
    """The database cannot be written or read right now (disk full, read-only, locked)."""


class SchemaError(StoreError):
    """The file is not an agentcron database this version can open."""


class NotFound(LookupError):
    """The object does not exist, is deleted, or belongs to another org (or agent)."""
