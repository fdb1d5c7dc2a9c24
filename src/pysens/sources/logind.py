"""The live logind source: systemd-logind (or elogind) over D-Bus, ``org.freedesktop.login1``.

What it watches, and why (docs/sources.md):

* Manager ``SessionNew`` / ``SessionRemoved`` (and ``User*`` / ``Seat*`` / ``PrepareFor*``),
  ``PropertiesChanged`` under ``/org/freedesktop/login1`` (sessions, users, seats), the session
  ``Lock`` / ``Unlock`` requests and the bus's ``NameOwnerChanged`` for ``org.freedesktop.login1``
  — all subscribed (AddMatch) *before* ``ListSessions``, so nothing falls between the snapshot and
  the first signal. Object paths come only from signals and ``ListSessions`` (logind escapes
  them: ``/session/_31``), never built.
* ``State=closing`` (logout while processes linger) is never signalled. Instead of polling, the
  session's State is re-read (one ``Get``) whenever anything hints at it: every signal about the
  session (PropertiesChanged — including a VT switch's lone ``Active`` —, Lock, Unlock), every
  Manager signal and every user or seat PropertiesChanged (logout re-elects the user's display),
  and every rewrite of ``/run/systemd/sessions/<id>`` seen through inotify (logind rewrites it on
  logout; this is how ``sd_login_monitor`` notices). So Logoff comes at ``closing`` even when
  ``SessionRemoved`` waits for a lingering tmux.
* Session start time is logind's ``Timestamp``, so re-reading the same state gives the same
  event ids; changes carry the time pysens observed them.
* When logind leaves the bus (``NameOwnerChanged``) or the bus connection drops, the source
  reconnects with backoff, compares ``ListSessions`` with what it had reported, and reports the
  gap: ``SessionVanished(synthesized=True, reason="gone while logind was away")``, new sessions as
  ``SessionAppeared`` (not existing), and changed properties as ``SessionChanged``.

dbus-fast is imported inside functions: this module imports on every OS (``pysens[linux]``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from ..observations import (
    Observation,
    SessionAppeared,
    SessionChanged,
    SessionInfo,
    SessionVanished,
)
from . import LiveKind
from .dbus import (
    DBUS,
    PROPERTIES,
    BusSource,
    CallFailed,
    bus_call,
    owner_rule,
    plain,
    properties_rule,
)
from .logind_inotify import DirectoryWatch
from .logind_map import changes_from_properties, diff_info, info_from_properties

__all__ = ["DESCRIPTION", "GONE_REASON", "LogindSource", "open_logind", "probe"]

DESCRIPTION = "systemd-logind on the system bus"
GONE_REASON = "gone while logind was away"

LOGIN1 = "org.freedesktop.login1"
MANAGER_PATH = "/org/freedesktop/login1"
MANAGER = "org.freedesktop.login1.Manager"
SESSION = "org.freedesktop.login1.Session"
SESSIONS_DIR = "/run/systemd/sessions"

_RULES = (
    f"type='signal',sender='{LOGIN1}',path='{MANAGER_PATH}',interface='{MANAGER}'",
    properties_rule(LOGIN1, path_namespace=MANAGER_PATH),
    f"type='signal',sender='{LOGIN1}',interface='{SESSION}'",
    owner_rule(LOGIN1),
)

log = logging.getLogger("pysens.sources.logind")


@dataclass(slots=True)
class _Known:
    path: str
    info: SessionInfo


def _now() -> datetime:
    return datetime.now(UTC)


async def probe(bus_address: str | None = None, **_options: Any) -> str | None:
    """None when logind answers on the system bus here, else the reason it cannot be used."""
    return await LogindSource._probe_bus(bus_address)


class LogindSource(BusSource):
    """A :class:`~pysens.sources.Source` reading systemd-logind live (see the module text).

    ``bus_address`` defaults to ``$DBUS_SYSTEM_BUS_ADDRESS``, else the standard system bus.
    ``sessions_dir`` is logind's state directory watched for logouts (None: don't watch).
    ``max_backoff`` caps the delay between reconnection attempts (seconds).
    """

    name = "logind"
    bus_name = LOGIN1
    missing = "no systemd-logind or elogind running"

    def __init__(
        self, bus_address: str | None = None, *, host: str | None = None,
        sessions_dir: str | None = SESSIONS_DIR, max_backoff: float = 5.0,
        call_timeout: float = 10.0,
    ) -> None:
        self._init_bus(bus_address, call_timeout, max_backoff)
        self.host = host
        self.sessions_dir = sessions_dir
        self._queue: asyncio.Queue[tuple[str, datetime, Any]] | None = None
        self._known: dict[str, _Known] = {}
        self._by_path: dict[str, str] = {}
        self._away = False
        self._dir_watch: DirectoryWatch | None = None
        #: Set once :meth:`watch` has taken its snapshot: every later change will be reported.
        self.ready = asyncio.Event()

    # -- the Source protocol ---------------------------------------------------------------

    async def snapshot(self) -> list[Observation]:
        """The sessions open now, as ``SessionAppeared(existing=True)``."""
        if self._bus is None:
            await self._first_connect()
        return await self._resync(initial=True)

    async def watch(self) -> AsyncIterator[Observation]:
        """The snapshot (``existing=True``), then every change as logind reports it."""
        if self._bus is None:
            await self._first_connect()
        queue = self._queue_()
        if self.sessions_dir and self._dir_watch is None:
            watch = DirectoryWatch(self.sessions_dir,
                                   lambda n: queue.put_nowait(("file", _now(), n)))
            if watch.start():
                self._dir_watch = watch
        first = await self._resync(initial=True)
        self.ready.set()
        for obs in first:
            yield obs
        while not self._closing:
            kind, time, item = await queue.get()
            if kind == "stop":
                break
            if kind == "lost":
                if item is not self._bus:
                    continue  # an old connection's farewell, already handled
                out = await self._reconnect()
            elif kind == "file":
                out = await self._recheck(self._known if item is None else
                                          [item] if item in self._known else [])
            else:
                out = await self._on_signal(time, item)
            for obs in out:
                yield obs

    async def aclose(self) -> None:
        """Disconnect from the bus and stop watching."""
        self._close_bus()
        if self._dir_watch is not None:
            self._dir_watch.close()
            self._dir_watch = None
        if self._queue is not None:
            self._queue.put_nowait(("stop", _now(), None))

    # -- the connection --------------------------------------------------------------------

    def _queue_(self) -> asyncio.Queue[tuple[str, datetime, Any]]:
        if self._queue is None:
            self._queue = asyncio.Queue()
        return self._queue

    def _rules(self) -> tuple[str, ...]:
        return _RULES

    def _on_bus_message(self, bus: Any, msg: Any) -> None:
        if msg.message_type.name == "SIGNAL":
            self._queue_().put_nowait(("signal", _now(), msg))

    def _on_bus_lost(self, bus: Any) -> None:
        self._queue_().put_nowait(("lost", _now(), bus))

    async def _reconnect(self) -> list[Observation]:
        self._away = True
        present = await self._reconnect_bus()
        return await self._resync(initial=False) if present else []

    async def _call(
        self, path: str, interface: str, member: str, signature: str = "", body: Iterable[Any] = ()
    ) -> list[Any]:
        if self._bus is None or not self._bus.connected:
            raise CallFailed(f"{member}: not connected to the system bus")
        return await bus_call(self._bus, LOGIN1, path, interface, member, signature, body,
                               self.call_timeout)

    async def _get_all(self, path: str) -> dict[str, Any] | None:
        try:
            (props,) = await self._call(path, PROPERTIES, "GetAll", "s", [SESSION])
        except CallFailed as e:
            log.debug("reading %s: %s", path, e)
            return None
        result = plain(props)
        return result if isinstance(result, dict) else {}

    # -- turning what logind says into observations ---------------------------------------

    def _remember(self, path: str, info: SessionInfo) -> None:
        sid = info.session_id or path
        self._known[sid] = _Known(path, info)
        self._by_path[path] = sid

    def _forget(self, session_id: str) -> None:
        known = self._known.pop(session_id, None)
        if known is not None:
            self._by_path.pop(known.path, None)

    async def _read_sessions(self) -> dict[str, _Known] | None:
        try:
            (rows,) = await self._call(MANAGER_PATH, MANAGER, "ListSessions")
        except CallFailed as e:
            log.warning("cannot list logind sessions: %s", e)
            return None
        current: dict[str, _Known] = {}
        for row in rows:
            sid, _uid, user, _seat, path = (list(row) + [None] * 5)[:5]
            if not isinstance(path, str):
                continue
            props = await self._get_all(path)
            if props is None:
                continue  # gone between the list and the read: SessionRemoved follows
            info = info_from_properties(props, session_id=sid if isinstance(sid, str) else None,
                                        user_name=user if isinstance(user, str) else None)
            if info.session_id is not None:
                current[info.session_id] = _Known(path, info)
        return current

    async def _resync(self, *, initial: bool) -> list[Observation]:
        """The snapshot (``initial``), or what changed while logind or the bus was away."""
        current = await self._read_sessions()
        if current is None:
            return []
        self._away = False
        now = _now()
        out: list[Observation] = []
        if not initial:
            for sid in [s for s in self._known if s not in current]:
                self._forget(sid)
                out.append(SessionVanished(now, self.name, sid, reason=GONE_REASON,
                                           synthesized=True, host=self.host))
        for sid, new in current.items():
            old = self._known.get(sid)
            if old is not None and self._by_path.get(new.path) == sid:
                changes = diff_info(old.info, new.info)
                self._remember(new.path, new.info)
                if changes:
                    changes["raw"] = new.info.raw
                    out.append(SessionChanged(now, self.name, sid, changes, host=self.host))
                continue
            if old is not None:  # same id, another object: a new session reusing the id
                self._forget(sid)
                out.append(SessionVanished(now, self.name, sid, reason=GONE_REASON,
                                           synthesized=True, host=self.host))
            self._remember(new.path, new.info)
            out.append(SessionAppeared(new.info.since or now, self.name, new.info,
                                       existing=initial, host=self.host))
        return out

    async def _on_signal(self, time: datetime, msg: Any) -> list[Observation]:
        interface, member, body = msg.interface, msg.member, msg.body
        if interface == DBUS and member == "NameOwnerChanged":
            if not body or body[0] != LOGIN1:
                return []
            if not body[2]:
                log.warning("%s left the bus; waiting for it to come back", LOGIN1)
                self._away = True
                return []
            log.info("%s is on the bus (%s)", LOGIN1, body[2])
            return await self._resync(initial=False)
        if interface == MANAGER and member in ("SessionNew", "SessionRemoved"):
            if len(body) < 2 or not isinstance(body[0], str):
                return []
            sid, path = body[0], str(body[1])
            if member == "SessionNew":
                return await self._session_new(time, sid, path)
            sid = self._by_path.get(path, sid)
            self._forget(sid)
            return [SessionVanished(time, self.name, sid, host=self.host)]
        if interface == PROPERTIES and member == "PropertiesChanged":
            sid_ = self._by_path.get(msg.path)
            if sid_ is not None and body and body[0] == SESSION:
                return await self._properties_changed(time, sid_, body)
            if body and body[0] != SESSION:
                return await self._recheck(self._related(msg.path), time)  # a user or seat
            return []
        if interface == SESSION:
            sid_ = self._by_path.get(msg.path)
            return await self._recheck([sid_] if sid_ else [], time)
        # UserNew/UserRemoved, SeatNew/SeatRemoved, PrepareForShutdown/Sleep: any may go with
        # a logout that logind does not announce.
        if member in ("UserNew", "UserRemoved", "SeatNew", "SeatRemoved") and len(body) > 1:
            return await self._recheck(self._related(str(body[1])), time)
        return await self._recheck(self._known, time)

    def _related(self, path: str | None) -> list[str]:
        """The sessions of the user or seat object at ``path`` (all when none says so)."""
        related = []
        for sid, known in self._known.items():
            for prop in ("User", "Seat"):
                ref = known.info.raw.get(prop)
                if isinstance(ref, list) and len(ref) > 1 and ref[1] == path:
                    related.append(sid)
        if related:
            return related
        return list(self._known)

    async def _session_new(self, time: datetime, sid: str, path: str) -> list[Observation]:
        known = self._known.get(sid)
        if known is not None and known.path == path:
            return []  # already in the snapshot (subscribed before ListSessions)
        props = await self._get_all(path)
        if props is None:
            return []  # logged out already; SessionRemoved follows and means nothing then
        info = info_from_properties(props, session_id=sid)
        if known is not None:
            self._forget(sid)
        self._remember(path, info)
        return [SessionAppeared(info.since or time, self.name, info, host=self.host)]

    async def _properties_changed(
        self, time: datetime, sid: str, body: list[Any]
    ) -> list[Observation]:
        known = self._known[sid]
        changed = plain(body[1]) if len(body) > 1 else {}
        changed = changed if isinstance(changed, dict) else {}
        invalidated = body[2] if len(body) > 2 else []
        if invalidated:
            props = await self._get_all(known.path)
            if props is not None:
                changed = {**props, **changed}
        if "State" not in changed:
            # logind does not say State changed (a VT switch sends Active alone): read it.
            state = await self._get_state(known.path)
            if state is not None:
                changed["State"] = state
        changes = changes_from_properties(changed)
        raw = {**known.info.raw, **changed}
        known.info = replace(known.info, raw=raw, **changes)
        if not changes:
            return []
        changes["raw"] = raw
        return [SessionChanged(time, self.name, sid, changes, host=self.host)]

    async def _get_state(self, path: str) -> str | None:
        try:
            (value,) = await self._call(path, PROPERTIES, "Get", "ss", [SESSION, "State"])
        except CallFailed:
            return None
        state = plain(value)
        return state if isinstance(state, str) else None

    async def _recheck(
        self, session_ids: Iterable[str], time: datetime | None = None
    ) -> list[Observation]:
        """Re-read State of these sessions; a change (``closing`` above all) is reported."""
        out: list[Observation] = []
        for sid in list(session_ids):
            known = self._known.get(sid)
            if known is None:
                continue
            state = await self._get_state(known.path)
            if state is None or state == known.info.state:
                continue
            raw = {**known.info.raw, "State": state}
            known.info = replace(known.info, state=state, raw=raw)
            out.append(SessionChanged(time or _now(), self.name, sid,
                                      {"state": state, "raw": raw}, host=self.host))
        return out


def open_logind(
    bus_address: str | None = None, *, host: str | None = None,
    sessions_dir: str | None = SESSIONS_DIR, max_backoff: float = 5.0,
) -> LogindSource:
    """The logind source (``sens watch --source logind``).

    Whether sessions open at start fire Logon is the tracker's choice
    (``Tracker(include_existing=True)``, ``sens watch --include-existing``): the source always
    reports them as ``SessionAppeared(existing=True)``.
    """
    return LogindSource(bus_address, host=host, sessions_dir=sessions_dir,
                        max_backoff=max_backoff)


#: The registry's entry (``sens watch --source logind``).
LIVE = LiveKind(DESCRIPTION, open_logind, probe)
