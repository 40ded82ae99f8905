"""The horizon: how far ahead timers are held, and edits a refill must not undo.

The engine holds timers only for instants up to `loaded_until`, refilled from the
`next_run_at` index every half horizon. A refill reads pages of rows while edits keep
arriving: a schedule touched (edited, fired, moved) after the refill began reading is newer
in memory than in the page, and the refill leaves it alone. Touches are numbered by a
counter (an epoch), so "after the refill began" is a comparison of integers.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta


class Horizon:
    def __init__(self) -> None:
        self.loaded_until: datetime | None = None
        self.last_refill = 0.0
        """`time.monotonic()` when the last refill ended."""
        self.refilling = False
        self._epoch = 0
        self._touched: dict[str, int] = {}

    def within(self, instant: datetime) -> bool:
        """Whether a timer for `instant` belongs in memory now (else a refill picks it up)."""
        return self.loaded_until is not None and instant <= self.loaded_until

    def touch(self, schedule_id: str) -> None:
        """The schedule's timing changed in memory: a refill reading it now must skip it."""
        self._epoch += 1
        self._touched[schedule_id] = self._epoch

    def begin(self, now: datetime, seconds: float) -> int:
        """A refill starts reading up to `now + seconds`; answers its epoch."""
        self.loaded_until = now + timedelta(seconds=seconds)
        return self._epoch

    def stale(self, schedule_id: str, since: int) -> bool:
        """Whether the refill of epoch `since` holds an older copy of the schedule."""
        return self._touched.get(schedule_id, 0) > since

    def end(self, since: int) -> None:
        """The refill of epoch `since` is done: forget the touches it no longer needs."""
        self._touched = {k: epoch for k, epoch in self._touched.items() if epoch > since}
        self.last_refill = time.monotonic()
