"""Group commit of the journal for asyncio producers (the daemon's sources and publishers)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence

from ..events import SensEvent
from .events import AppendResult, Journal

__all__ = ["JournalWriter"]


class JournalWriter:
    """Group commit for asyncio producers: concurrent :meth:`append` calls share a transaction.

    Each call returns once its event is committed. While one commit runs in a worker thread,
    new events queue up and go together in the next, so a burst costs a few commits, not one per
    event, and a lone event is committed at once (no timer adds latency).

    ``on_commit(results)``, if given, is called with each commit's results as soon as it is
    done, in the same step of the loop that answers its callers (they run next, in the order
    they were answered): what must know of new events first (the daemon's delivery) is told
    before any other task can ask the journal about them.
    """

    def __init__(
        self, journal: Journal, *, max_batch: int = 5000,
        on_commit: Callable[[Sequence[AppendResult]], None] | None = None,
    ) -> None:
        self.journal = journal
        self.max_batch = max_batch
        self.on_commit = on_commit
        # Each request (one event, or a publisher's list) with the future its caller awaits.
        self._pending: list[tuple[list[SensEvent], asyncio.Future[list[AppendResult]]]] = []
        self._task: asyncio.Task[None] | None = None

    async def append(self, event: SensEvent) -> AppendResult:
        """Journal ``event``; returns once it is committed."""
        return (await self._queue([event]))[0]

    async def append_many(self, events: Iterable[SensEvent]) -> list[AppendResult]:
        """Journal several events; returns once all are committed."""
        return await self._queue(list(events))

    def _queue(self, events: list[SensEvent]) -> asyncio.Future[list[AppendResult]]:
        # One future per request, not per event: a 1,000-event publish is one wait.
        fut: asyncio.Future[list[AppendResult]] = asyncio.get_running_loop().create_future()
        if not events:
            fut.set_result([])
            return fut
        self._pending.append((events, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return fut

    def _take(self) -> list[tuple[list[SensEvent], asyncio.Future[list[AppendResult]]]]:
        """The next group: whole requests, up to ``max_batch`` events (at least one request)."""
        n = 0
        size = 0
        for events, _ in self._pending:
            if n and size + len(events) > self.max_batch:
                break
            n += 1
            size += len(events)
        group = self._pending[:n]
        del self._pending[:n]
        return group

    async def _run(self) -> None:
        while self._pending:
            group = self._take()
            try:
                results = await asyncio.to_thread(
                    self.journal.append_many, [e for events, _ in group for e in events]
                )
            except BaseException as exc:
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            start = 0
            for events, fut in group:
                if not fut.done():
                    fut.set_result(results[start : start + len(events)])
                start += len(events)
            if self.on_commit is not None:
                self.on_commit(results)
