"""Several live sources as one: the logon source, the network and the power beside each other.

Their snapshots come together, their changes interleaved as they arrive. A source that stops
(its bus is gone for good, a permission is missing) is said in one log line and the others go
on; the merged stream ends when every source has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from ..observations import Observation
from . import Source, SourceItem, SourceUnavailable

__all__ = ["MergedSource"]

log = logging.getLogger("pysens.sources")


class MergedSource:
    """A :class:`~pysens.sources.Source` made of ``sources`` (each keeps its own name in the
    observations it reports)."""

    def __init__(self, sources: Sequence[Source]) -> None:
        self.sources = list(sources)
        self.name = "+".join(s.name for s in self.sources)
        self._tasks: list[asyncio.Task[None]] = []

    async def snapshot(self) -> list[Observation]:
        """Every source's snapshot, in order."""
        out: list[Observation] = []
        for source in self.sources:
            out.extend(await source.snapshot())
        return out

    async def watch(self) -> AsyncIterator[SourceItem]:
        """Every source's snapshot and changes, interleaved as they come."""
        if len(self.sources) == 1:  # nothing to interleave
            async for item in self.sources[0].watch():
                yield item
            return
        queue: asyncio.Queue[SourceItem | None] = asyncio.Queue()

        async def pump(source: Source) -> None:
            try:
                async for item in source.watch():
                    queue.put_nowait(item)
            except (SourceUnavailable, OSError) as e:
                log.error("the %s source stopped: %s", source.name, e)
            except Exception:  # a bug: its traceback goes to the log, the others go on
                log.exception("the %s source stopped", source.name)
            finally:
                queue.put_nowait(None)  # this one has ended

        self._tasks = [asyncio.create_task(pump(s), name=f"source {s.name}")
                       for s in self.sources]
        running = len(self._tasks)
        try:
            while running:
                got = await queue.get()
                if got is None:
                    running -= 1
                    continue
                yield got
        finally:
            await self._stop()

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def aclose(self) -> None:
        """Stop every source."""
        await self._stop()
        for source in self.sources:
            await source.aclose()
