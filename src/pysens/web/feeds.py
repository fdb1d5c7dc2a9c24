"""Where the live page's data comes from: this host's daemon, or the fleet's store and NATS.

* :class:`LocalFeed`: a running ``sens serve``. One socket connection ``watch``-es (events as
  they are journaled), another asks ``hello`` (which journal) and ``sessions`` (the table);
  the journal the daemon names gives the timeline's history. When the daemon is down or
  restarts, the page is told in one line and the feed reconnects with backoff (0.1 s doubling
  to 5 s), then hands every page a fresh picture.
* :class:`FleetFeed`: the central store (``--store URL``) for every host's history and open
  sessions (the same tracker replay as ``sens sessions --store``), and for live events either
  a core-NATS subscription to ``sens.>`` (what the forwarders publish; ``--nats URL``) or the
  store itself: a SQLite store is watched with inotify on its directory (the collector's
  commits write its WAL), so nothing polls; a PostgreSQL store is read every 2 s. After a NATS
  reconnect the store fills the gap. Events are taken once by id, whichever way they come.

The blocking reads (SQLite, psycopg) run in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from ..daemon import AsyncDaemonClient, DaemonError
from ..events import EventError, SensEvent
from ..fleet.connection import (
    NatsRefused,
    NatsTarget,
    connect,
    describe_failure,
    nats_errors,
    nats_target,
)
from ..fleet.store import Store, StoreError, open_store
from ..journal import Journal, JournalError
from ..journal.notify import JournalWatch
from ..timeline import SESSION_METHODS
from .hub import Hub
from .view_map import LANE_METHODS, LiveView

__all__ = ["FleetFeed", "LocalFeed", "history_from_journal"]

log = logging.getLogger(__name__)

_SESSION_NAMES = sorted(str(m) for m in SESSION_METHODS)
_LANE_NAMES = frozenset(str(m) for m in LANE_METHODS)


def _is_lane(e: SensEvent) -> bool:
    return str(e.method) in _LANE_NAMES


def history_from_journal(path: str | Path, since: datetime) -> list[SensEvent]:
    """The session events a timeline from ``since`` needs, and the network / power events
    since then, from the journal at ``path`` (read-only)."""
    with Journal(path, readonly=True) as j:
        events = list(j.session_events(_SESSION_NAMES, since))
        events += j.query(since=since, where=_is_lane)
    return events


class LocalFeed:
    """This host's daemon, on its socket (see the module docs)."""

    def __init__(self, hub: Hub, socket_path: str | Path, since: datetime,
                 journal: str | Path | None = None) -> None:
        self.hub = hub
        self.socket_path = Path(socket_path)
        self.since = since
        self.journal = journal
        self.connects = 0

    async def run(self) -> None:
        """Follow the daemon until cancelled."""
        delay = 0.1
        while True:
            before = self.connects
            try:
                await self._follow()
                why = "the daemon ended the watch"
            except DaemonError as e:
                why = str(e)
            if self.connects > before:
                delay = 0.1  # it was up: it may be restarting, so look again soon
            if self.connects:
                message = f"sens serve went away ({why}); reconnecting"
            else:
                message = f"sens serve is not running ({why}); waiting for it"
            self.hub.set_status(False, message)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _follow(self) -> None:
        watch = await AsyncDaemonClient.connect(self.socket_path)
        try:
            await watch.start_watch()
            ask = await AsyncDaemonClient.connect(self.socket_path)
            try:
                hello = await ask.request({"op": "hello"})
                rows = (await ask.request({"op": "sessions"}))["sessions"]
            finally:
                await ask.aclose()
            history = await self._history(hello)
            view = LiveView()
            view.seed_sessions(rows)
            view.load(history, table=False)
            self.hub.replace(view)
            self.connects += 1
            self.hub.set_status(True, f"live from sens serve (pid {hello.get('pid')})")
            while True:
                self.hub.apply(await watch.next_event())
        finally:
            await watch.aclose()

    async def _history(self, hello: dict[str, Any]) -> list[SensEvent]:
        path = self.journal or hello.get("journal")
        if not path:
            return []
        try:
            return await asyncio.to_thread(history_from_journal, str(path), self.since)
        except JournalError as e:
            # The daemon's journal may be root's: the page still shows live events.
            log.warning("no history for the timeline: %s", e)
            return []


class FleetFeed:
    """Every host: the central store, and NATS or the store for live events."""

    def __init__(self, hub: Hub, store_url: str, since: datetime,
                 nats_url: str | NatsTarget | None = None, poll: float = 2.0) -> None:
        self.hub = hub
        self.store_url = store_url
        self.nats = nats_target(nats_url) if nats_url is not None else None
        self.since = since
        self.poll = poll
        self.store: Store | None = None
        self._mark: int | None = None
        self._catching_up = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Load the store, then follow NATS or the store until cancelled."""
        delay = 0.5
        while self.store is None:
            try:
                self.store = await asyncio.to_thread(open_store, self.store_url)
            except StoreError as e:
                self.hub.set_status(False, f"{e}; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        try:
            await self._load()
            if self.nats is None or not await self._follow_nats(self.nats):
                await self._follow_store()
        finally:
            self.store.close()

    async def _load(self) -> None:
        assert self.store is not None  # noqa: S101 - opened before the feed starts
        store = self.store

        def read() -> tuple[list[SensEvent], int]:
            _, mark = store.newer(None)
            events = list(store.session_events(_SESSION_NAMES, self.since, on_bad=log.warning))
            events += store.query(since=self.since, where=_is_lane, on_bad=log.warning)
            return events, mark

        events, self._mark = await asyncio.to_thread(read)
        view = LiveView()
        view.load(events)
        self.hub.replace(view)
        await self.catch_up()

    async def catch_up(self) -> None:
        """Apply what the store got since it was last read."""
        assert self.store is not None  # noqa: S101 - opened before the feed starts
        store = self.store
        async with self._catching_up:
            while True:
                try:
                    events, self._mark = await asyncio.to_thread(store.newer, self._mark)
                except StoreError as err:
                    self.hub.set_status(False, str(err))
                    return
                for event in events:
                    self.hub.apply(event)
                if len(events) < 5000:
                    return

    async def _follow_store(self) -> None:
        assert self.store is not None  # noqa: S101 - opened before the feed starts
        path = getattr(self.store, "path", None)
        watch = JournalWatch(path, self._wake) if path and path != ":memory:" else None
        watcher = watch.close if watch is not None and watch.start() else None
        self._woken = asyncio.Event()
        if watcher is None:
            self.hub.set_status(True, f"live from the store {self.store_url} (read every "
                                f"{self.poll:g} s)")
        else:
            self.hub.set_status(True, f"live from the store {self.store_url}")
        try:
            while True:
                if watcher is None:
                    await asyncio.sleep(self.poll)
                else:
                    await self._woken.wait()
                    # A commit writes the WAL several times: one read after the burst.
                    await asyncio.sleep(0.02)
                    self._woken.clear()
                await self.catch_up()
        finally:
            if watcher is not None:
                watcher()

    def _wake(self) -> None:
        self._woken.set()

    async def _follow_nats(self, target: NatsTarget) -> bool:
        """Live events from NATS until cancelled; False (said on the page) when the server
        refuses this client or nats-py is missing: the store is followed instead."""
        try:
            import nats  # noqa: F401
        except ImportError:
            self.hub.set_status(False, "--nats needs nats-py (pip install 'pysens[nats]'); "
                                "following the store instead")
            return False

        loop = asyncio.get_running_loop()
        url = target.display

        async def on_message(msg: Any) -> None:
            try:
                event = SensEvent.from_json(msg.data)
            except (EventError, TypeError):  # not a pysens event: the collector keeps those aside
                return
            self.hub.apply(event)

        async def down() -> None:
            self.hub.set_status(False, f"NATS {url} is unreachable; reconnecting")

        async def up() -> None:
            self.hub.set_status(True, f"live from NATS {url}")
            # the store fills what NATS did not deliver while it was away
            self._tasks.add(task := loop.create_task(self.catch_up()))
            task.add_done_callback(self._tasks.discard)

        delay = 0.5
        while True:
            try:
                nc = await connect(target, name="sens web", disconnected=down, reconnected=up)
                break
            except NatsRefused as e:
                log.error("%s; following the store instead", e)
                self.hub.set_status(False, f"{e}; following the store instead")
                return False
            except nats_errors() as e:
                self.hub.set_status(False, f"{describe_failure(e, url)}; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        try:
            await nc.subscribe("sens.>", cb=on_message)
            await nc.flush()
            await up()
            await asyncio.Event().wait()
        finally:
            with contextlib.suppress(Exception):
                await nc.close()
        return True
