"""Group commit of the journal for asyncio producers (the daemon's sources and publishers)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from ..events import SensEvent
from .events import AppendResult, Journal

__all__ = ["JournalWriter"]


class JournalWriter:
    """Group commit for asyncio producers: concurrent :meth:`append` calls share a transaction.

    Each call returns once its event is committed. While one commit runs in a worker thread,
    new events queue up and go together in the next, so a burst costs a few commits, not one per
    event, and a lone event is committed at once (no timer adds latency).
    """

    def __init__(self, journal: Journal, *, max_batch: int = 5000) -> None:
        self.journal = journal
        self.max_batch = max_batch
        self._pending: list[tuple[SensEvent, asyncio.Future[AppendResult]]] = []
        self._task: asyncio.Task[None] | None = None

    async def append(self, event: SensEvent) -> AppendResult:
        """Journal ``event``; returns once it is committed."""
        fut: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._pending.append((event, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return await fut

    async def append_many(self, events: Iterable[SensEvent]) -> list[AppendResult]:
        """Journal several events; returns once all are committed."""
        return list(await asyncio.gather(*(self.append(e) for e in events)))

    async def _run(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            try:
                results = await asyncio.to_thread(
                    self.journal.append_many, [e for e, _ in batch]
                )
            except BaseException as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
