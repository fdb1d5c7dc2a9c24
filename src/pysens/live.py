"""This host's events as they happen: :func:`awatch` / :func:`watch`, and the source -> tracker
path that ``sens watch``, ``sens sessions`` and the daemon share.

::

    import pysens

    for event in pysens.watch():                      # logind, utmp or WTS: whatever is here
        print(event.method, event.user_name, event.session_id)

    async for event in pysens.awatch(criteria="bstrUserName = 'alice'"):
        ...

With an :class:`~pysens.eventsystem.EventSystem`, ``for event in pysens.watch(): es.fire(event)``
delivers every event to its subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from typing import Any

from .events import EventClass, SensEvent
from .observations import SessionRecord
from .sources import Source, choose_sources
from .sources.merge import MergedSource
from .tracker import Tracker

__all__ = ["awatch", "snapshot_sessions", "tracked_events", "watch"]


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


async def awatch(
    source: str = "auto", *, classes: Iterable[EventClass | str] | None = None,
    criteria: str | None = None, include_existing: bool = False,
    on_start: Callable[[str, str | None], None] | None = None,
    network: dict[str, Any] | None = None, power: dict[str, Any] | None = None,
    **options: Any,
) -> AsyncIterator[SensEvent]:
    """This host's SENS events as they happen, from ``source`` (``auto``: what this host has
    -- its logon source, and its network and power where it can report them; or one source's
    name, or a JSON-lines file to replay).

    ``classes`` keeps the events of these SENS event classes (default: all four) and, with
    ``auto``, opens only the sources they need; ``criteria`` (MS-COMEV filter text) keeps only
    the matching events; ``include_existing`` reports what is there at start (open sessions as
    Logon, usable connections as ConnectionMade, the power state); ``on_start`` is told each
    source's name and, for ``auto``, why it was picked (or, for a source left out, its name
    and ``"not available: …"``). ``network`` / ``power`` are those sources' options; further
    ``options`` go to the logon source. Raises :class:`~pysens.sources.SourceUnavailable`
    when nothing can run here and :class:`~pysens.criteria.CriteriaError` for bad criteria,
    before the first event.
    """
    wanted = None if classes is None else {EventClass(str(c)) for c in classes}
    where = None
    if criteria is not None:
        from .criteria import compile_criteria

        where = compile_criteria(criteria).matches
    chosen, skipped = await choose_sources(source, wanted, options=options, network=network,
                                           power=power)
    if on_start is not None:
        for c in chosen:
            on_start(c.name, c.why)
        for name, why in skipped:
            on_start(name, f"not available: {why}")
    merged = MergedSource([c.source for c in chosen])
    try:
        async for event in tracked_events(merged, Tracker(include_existing=include_existing)):
            if wanted is not None and not wanted.intersection(event.classes):
                continue
            if where is None or where(event):
                yield event
    finally:
        await merged.aclose()


_END = object()


def watch(source: str = "auto", **options: Any) -> Generator[SensEvent, None, None]:
    """:func:`awatch` as a plain iterator: the asyncio loop runs in a thread of its own, and
    stops when the iterator is closed (a ``break`` out of the ``for`` loop) or collected."""
    out: queue.Queue[Any] = queue.Queue()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def pump() -> None:
        state["loop"] = asyncio.get_running_loop()
        state["task"] = asyncio.current_task()
        ready.set()
        try:
            async for event in awatch(source, **options):
                out.put(event)
        except asyncio.CancelledError:
            pass
        except BaseException as e:  # noqa: BLE001 - handed over, raised in the consumer's thread
            out.put(e)
        finally:
            out.put(_END)

    thread = threading.Thread(target=asyncio.run, args=(pump(),), name="pysens.watch",
                              daemon=True)
    thread.start()
    ready.wait()
    try:
        while (item := out.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        loop, task = state.get("loop"), state.get("task")
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                loop.call_soon_threadsafe(task.cancel)
        thread.join(5)
