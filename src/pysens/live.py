"""The live path shared by ``sens watch``, ``sens sessions`` and the daemon: source -> tracker."""

from __future__ import annotations

from collections.abc import AsyncIterator

from .events import SensEvent
from .observations import SessionRecord
from .sources import Source
from .tracker import Tracker

__all__ = ["snapshot_sessions", "tracked_events"]


async def tracked_events(source: Source, tracker: Tracker) -> AsyncIterator[SensEvent]:
    """The SENS events of ``source`` as the tracker judges them, as they happen."""
    async for item in source.watch():
        obs = SessionRecord.of_event(item) if isinstance(item, SensEvent) else item
        for event in tracker.feed(obs):
            yield event


async def snapshot_sessions(source: Source, tracker: Tracker) -> Tracker:
    """``tracker`` filled with the sessions ``source`` sees open now (no events fired)."""
    for obs in await source.snapshot():
        tracker.feed(obs)
    return tracker
