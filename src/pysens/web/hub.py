"""The fan-out between where live data comes from (:mod:`.feeds`) and the open pages.

A feed calls :meth:`Hub.apply` with each event, :meth:`Hub.replace` with a whole new picture
(after a (re)connect) and :meth:`Hub.set_status` when its source goes away or comes back. Each
open page is a :class:`Subscriber` with a bounded queue of ready-to-send Server-Sent Events: a
change is serialized once for everybody (twice at most: with the event, for the pages whose
filter it passes, and without). A page that reads too slowly fills its queue; it is then told
it fell behind and cut off (its browser reconnects and starts from a fresh picture), so a slow
reader never grows the server's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..events import SensEvent, format_time
from .view_map import LiveView

__all__ = ["Hub", "Subscriber", "sse"]

Predicate = Callable[[SensEvent], bool]

#: Bytes a page may have waiting before it counts as fallen behind.
QUEUE_LIMIT = 4 * 1024 * 1024


def sse(kind: str, data: str | bytes) -> bytes:
    """One Server-Sent Event (``data`` is one line of JSON: it holds no newline)."""
    body = data.encode() if isinstance(data, str) else data
    return b"event: " + kind.encode() + b"\ndata: " + body + b"\n\n"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def _lean(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows and spans without their null fields (and their intervals' nulls): the page reads a
    missing field as null, and a snapshot of ten thousand sessions is a third smaller."""
    out = []
    for item in items:
        lean = {k: v for k, v in item.items() if v is not None}
        if "intervals" in lean:
            lean["intervals"] = [{k: v for k, v in iv.items() if v is not None}
                                 for iv in lean["intervals"]]
        out.append(lean)
    return out


class Subscriber:
    """One open page: its filter and its queue of messages not yet written."""

    def __init__(self, predicate: Predicate | None, limit: int = QUEUE_LIMIT) -> None:
        self.predicate = predicate
        self.limit = limit
        self._items: deque[bytes] = deque()
        self._size = 0
        self._wake = asyncio.Event()
        #: Set once the queue overflowed: the page gets a "behind" and is cut off.
        self.behind = False
        #: Set when the picture was replaced: the page gets a fresh snapshot first.
        self.resync = False

    def offer(self, data: bytes) -> None:
        """Queue ``data``, or mark the page behind when that would pass the limit."""
        if self.behind:
            return
        if self._size + len(data) > self.limit:
            self.behind = True
            self._items.clear()
            self._size = 0
        else:
            self._items.append(data)
            self._size += len(data)
        self._wake.set()

    def wake(self) -> None:
        """Have :meth:`take` return now (a flag was set)."""
        self._wake.set()

    @property
    def queued(self) -> int:
        """Bytes waiting."""
        return self._size

    async def take(self, timeout: float) -> list[bytes]:  # noqa: ASYNC109 - a heartbeat's pace
        """What is queued (waiting up to ``timeout`` seconds for something; [] then)."""
        if not self._items and not self.behind and not self.resync:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return []
        items = list(self._items)
        self._items.clear()
        self._size = 0
        return items


class Hub:
    """The current picture, the source's status and the open pages."""

    def __init__(self, mode: str, title: str, since: datetime) -> None:
        self.mode = mode
        self.title = title
        self.since = since
        self.view = LiveView()
        self.status: dict[str, Any] = {"ok": False, "message": "starting"}
        self.subscribers: set[Subscriber] = set()
        #: Bytes each page may have waiting (see :class:`Subscriber`).
        self.queue_limit = QUEUE_LIMIT
        # The picture of an unfiltered page, serialized once until it changes (the status and
        # the clock around it are added per page).
        self._cached: bytes | None = None
        #: Called after each applied event (the benchmark's and tests' hook).
        self.on_change: Callable[[SensEvent], None] | None = None

    # -- feeds -------------------------------------------------------------------------------

    def apply(self, event: SensEvent) -> None:
        """One live event: into the picture, then to every page."""
        change = self.view.apply(event)
        if change is None:
            return
        self._cached = None
        if self.subscribers:
            common = _dumps(change.common_json())
            with_event = sse("change", b'{"e":' + _dumps(event.to_json()) + b"," + common[1:])
            without = None
            for sub in self.subscribers:
                if sub.predicate is None or sub.predicate(event):
                    sub.offer(with_event)
                else:
                    if without is None:
                        without = sse("change", b'{"e":null,' + common[1:])
                    sub.offer(without)
        if self.on_change is not None:
            self.on_change(event)

    def replace(self, view: LiveView) -> None:
        """A whole new picture (the source reconnected): every page starts from it."""
        self.view = view
        self._cached = None
        for sub in self.subscribers:
            sub.resync = True
            sub.wake()
        # Made now, not when the first page asks: ten thousand sessions take a tenth of a
        # second to serialize, and that page would wait for it.
        with contextlib.suppress(RuntimeError):  # no event loop: made on demand
            asyncio.get_running_loop().call_soon(self._picture)

    def set_status(self, ok: bool, message: str) -> None:
        """The source is up (``ok``) or down; ``message`` is the one line the page shows."""
        new = {"ok": ok, "message": message}
        if new == self.status:
            return
        self.status = new
        data = sse("status", _dumps(new))
        for sub in self.subscribers:
            sub.offer(data)

    # -- pages -------------------------------------------------------------------------------

    def subscribe(self, predicate: Predicate | None, limit: int = QUEUE_LIMIT) -> Subscriber:
        """A new page's subscriber (call :meth:`unsubscribe` when it goes)."""
        sub = Subscriber(predicate, limit)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """The page went away."""
        self.subscribers.discard(sub)

    def snapshot(self, predicate: Predicate | None) -> dict[str, Any]:
        """The whole picture for a page that (re)starts, its filter applied to the events."""
        return {**self._head(format_time(datetime.now(UTC))), **self.view.snapshot(predicate)}

    def _head(self, now: str) -> dict[str, Any]:
        """A snapshot's fields beside the picture."""
        return {"mode": self.mode, "title": self.title, "status": self.status, "now": now,
                "since": format_time(self.since)}

    def snapshot_sse(self, predicate: Predicate | None) -> bytes:
        """The server's clock (``clock``), then :meth:`snapshot` as one Server-Sent Event, its
        rows and spans without null fields (the picture kept serialized for unfiltered pages
        until it changes)."""
        now = format_time(datetime.now(UTC))
        head = _dumps(self._head(now))
        picture = self._picture() if predicate is None else self._serialize(predicate)
        return (sse("clock", _dumps({"now": now}))
                + sse("snapshot", head[:-1] + b"," + picture[1:]))

    def _serialize(self, predicate: Predicate | None) -> bytes:
        picture = self.view.snapshot(predicate)
        picture["sessions"] = _lean(picture["sessions"])
        picture["spans"] = _lean(picture["spans"])
        return _dumps(picture)

    def _picture(self) -> bytes:
        if self._cached is None:
            self._cached = self._serialize(None)
        return self._cached
