"""Retention in the central store: events older than an age go, when a collector starts and
then every hour (``sens collect --max-age 400d``).

PostgreSQL drops whole monthly partitions (a month goes once all of it is older than the age:
no row deletes, no bloat); SQLite deletes rows in small batches. Either way the hosts' counts
follow, and the session rows of closed sessions whose every event went are dropped with them
(an open one stays: it is still open as far as the store knows). One line per run says what
went.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .store import Store, StoreError, now_us

__all__ = ["Expired", "expire_older", "keep_within"]

log = logging.getLogger("pysens.collect")

#: How often a collector applies its retention after the first time.
HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Expired:
    """What one retention run removed: ``events`` older than ``before_us``, in ``months``
    dropped partitions (None: a store without partitions, whose rows were deleted)."""

    before_us: int
    events: int
    months: int | None

    def line(self, max_age: str) -> str:
        """The log line: how many went, and from before when."""
        when = datetime.fromtimestamp(self.before_us // 1_000_000, UTC)
        how = ("rows deleted" if self.months is None
               else f"{self.months} month(s) dropped")
        return (f"retention (max age {max_age}): {self.events:,} event(s) from before "
                f"{when:%Y-%m-%d %H:%M} UTC removed ({how})")


def expire_older(store: Store, max_age: timedelta, now: int | None = None) -> Expired:
    """Remove the events older than ``max_age`` (from ``now``, µs; default the clock)."""
    before = (now_us() if now is None else now) - int(max_age.total_seconds() * 1_000_000)
    had = store.partitions()
    gone = store.expire(before)
    left = store.partitions()
    return Expired(before, gone, None if had is None or left is None else len(had) - len(left))


async def keep_within(store: Store, max_age: timedelta, interval: float = HOUR, *,
                      label: str | None = None,
                      report: Callable[[str], None] | None = None,
                      clock: Callable[[], int] = now_us) -> None:
    """Apply ``max_age`` to ``store`` now and then every ``interval`` seconds, until
    cancelled (a background task beside the collector). Each run happens in a thread (a
    drop or a batch of deletes waits for the store's lock, not the event loop) and is told
    to ``report`` (default: the ``pysens.collect`` log at INFO) as one line; a run that fails
    says why, in one line too, and the next one tries again. ``clock``: now, in µs."""
    say = report or log.info
    name = label or f"{max_age.total_seconds() / 86400:g}d"
    while True:
        try:
            done = await asyncio.to_thread(expire_older, store, max_age, clock())
        except StoreError as e:
            say(f"retention (max age {name}) failed: {e}; trying again in {interval:g} s")
        else:
            say(done.line(name))
        await asyncio.sleep(interval)
