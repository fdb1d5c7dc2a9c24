"""Observations -> SENS events, and the table of open sessions. Pure: no I/O.

Connection, destination and power observations go to the network and power rules
(:mod:`pysens.tracker.network`, :mod:`pysens.tracker.power`), which one :class:`Tracker` holds.

Every source reports what it sees (:mod:`pysens.observations`); this module alone decides what
that means in SENS terms, so every source obeys the same rules (docs/events.md):

* greeter / lock-screen / logon-UI sessions are not user sessions: no events;
* per session: Logon first, PostShell at most once and after Logon, Disconnect and Reconnect
  alternate (Reconnect only after Disconnect), Logoff once and last, nothing after Logoff;
* DisplayLock / DisplayUnlock alternate, and so do StartScreenSaver / StopScreenSaver;
* duplicates (one occurrence reported twice, by two channels or two WTS codes) collapse.

A session that was already open when a source started (``existing``), or that a log first shows
in the middle of its life, is tracked without a Logon; the rules then hold from there on.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from ..events import Method, SensEvent, default_host, fold_name, parse_time
from ..observations import (
    ConnectionState,
    DestinationState,
    HostReset,
    Observation,
    PowerState,
    SessionAppeared,
    SessionChanged,
    SessionInfo,
    SessionRecord,
    SessionVanished,
)
from .network import NetworkTracker
from .power import PowerTracker

__all__ = ["OpenSession", "Tracker", "is_user_session", "session_key"]

M = Method
_USER_CLASSES = frozenset({None, "", "user", "user-early", "user-incomplete"})
_GRAPHICAL = frozenset({"x11", "wayland", "mir"})
# Two Logon records for one session within this window are one logon (Security 4624 + LSM 21).
_DUPLICATE_WINDOW = timedelta(seconds=5)
# Closed session keys remembered so that late signals for them are ignored (bounded: logind
# never reuses an id within a boot, so this only needs to outlast SessionRemoved's delay).
_CLOSED_MEMORY = 10_000

Key = tuple[str, str]
_trusted = SensEvent.trusted_fields
_SESSION_METHODS = frozenset({
    M.Logon, M.Logoff, M.SessionDisconnect, M.SessionReconnect, M.PostShell, M.DisplayLock,
    M.DisplayUnlock, M.StartScreenSaver, M.StopScreenSaver,
})


def _now() -> datetime:
    return datetime.now(UTC)


def session_key(session_id: str | None, logon_id: str | None, domain: str | None,
                user_name: str | None) -> str:
    """What a session is known by on its host: its session id; else its logon id (Security
    4624 has only that); else its user (domain and name, compared as account names are)."""
    if session_id is not None:
        return session_id
    if logon_id is not None:
        return f"logon_id:{logon_id}"
    return f"user:{fold_name(domain)}\\{fold_name(user_name)}"


def is_user_session(info: SessionInfo) -> bool:
    """True when ``info`` is a user's session (not a greeter, lock screen or logon UI)."""
    return bool(info.user_name) and info.session_class in _USER_CLASSES


def _shell_ready(info: SessionInfo) -> bool:
    # tty and remote (seatless) sessions have their shell at once; a graphical seat session has
    # it when its Type says which display server runs it.
    t = info.session_type
    if t in _GRAPHICAL or t == "tty":
        return True
    return not info.seat


def _found_detached(info: SessionInfo) -> bool:
    # A seat session that is not the active one (another user's VT is in front), or a
    # seatless session that says it is detached (a GNU screen, a WTS disconnected session):
    # its next event is then a Reconnect.
    return (info.active is False and bool(info.seat)) or info.state == "disconnected"


@dataclass(slots=True)
class OpenSession:
    """A session in the tracker's table (what ``sens sessions`` shows)."""

    host: str
    source: str
    info: SessionInfo
    since: datetime
    logged_on: bool = True
    shell: bool = False
    connected: bool = True
    locked: bool = False
    saver: bool = False

    @property
    def state(self) -> str:
        """``disconnected``, ``locked`` or ``active``."""
        if not self.connected:
            return "disconnected"
        return "locked" if self.locked else "active"

    def to_json(self) -> dict[str, Any]:
        """A JSON object for ``sens sessions --json`` (and the daemon's session table)."""
        i = self.info
        return {
            "host": self.host, **{f: getattr(i, f) for f in _SHOWN[:3]}, "state": self.state,
            **{f: getattr(i, f) for f in _SHOWN[3:]},
            "since": self.since.isoformat().replace("+00:00", "Z"), "source": self.source,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> OpenSession:
        """The session a :meth:`to_json` object describes (a daemon's answer)."""
        values: dict[str, Any] = {f: obj.get(f) for f in _SHOWN}
        values["remote"] = bool(values["remote"])
        state = obj.get("state")
        return cls(host=str(obj.get("host")), source=str(obj.get("source")),
                   info=SessionInfo(**values), since=parse_time(obj["since"]),
                   connected=state != "disconnected", locked=state == "locked")


#: The SessionInfo fields a session's JSON shows, in order.
_SHOWN = ("session_id", "user_name", "domain", "session_type", "session_class", "tty", "seat",
          "remote", "client_name", "client_address")


class Tracker:
    """Turns observations into SENS events and keeps the open-session table.

    ``include_existing``: fire Logon (and PostShell) for sessions that were open before the
    source started, instead of adopting them silently. ``clock`` gives the events' ``observed``
    time (default: now, per event).
    """

    def __init__(
        self, *, host: str | None = None, include_existing: bool = False,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.host = host or default_host()
        self.include_existing = include_existing
        self._clock = clock or _now
        self._open: dict[Key, OpenSession] = {}
        self._ignored: dict[Key, SessionInfo] = {}
        self._closed: OrderedDict[Key, None] = OrderedDict()
        #: The ISensNetwork rules and their table of usable connections.
        self.network = NetworkTracker(host=self.host, include_existing=include_existing,
                                      clock=self._clock)
        #: The ISensOnNow rules and the power state.
        self.power = PowerTracker(host=self.host, include_existing=include_existing,
                                  clock=self._clock)

    # -- the table ---------------------------------------------------------------------------

    @property
    def sessions(self) -> list[OpenSession]:
        """The open sessions, oldest first."""
        return sorted(self._open.values(), key=lambda s: (s.since, s.info.session_id or ""))

    def session(self, session_id: str, host: str | None = None) -> OpenSession | None:
        """The open session with this id, if any."""
        return self._open.get((host or self.host, session_id))

    # -- feeding -----------------------------------------------------------------------------

    def feed_all(self, observations: Iterable[Observation]) -> list[SensEvent]:
        """:meth:`feed` for each observation, the events concatenated."""
        out: list[SensEvent] = []
        for obs in observations:
            out.extend(self.feed(obs))
        return out

    def feed(self, obs: Observation) -> list[SensEvent]:
        """The SENS events that ``obs`` means (often none), in order."""
        if isinstance(obs, SessionAppeared):
            return self._appeared(obs)
        if isinstance(obs, SessionChanged):
            return self._changed(obs)
        if isinstance(obs, SessionVanished):
            return self._vanished(obs)
        if isinstance(obs, SessionRecord):
            return self._record(obs)
        if isinstance(obs, ConnectionState):
            return self.network.feed_connection(obs)
        if isinstance(obs, DestinationState):
            return self.network.feed_destination(obs)
        if isinstance(obs, PowerState):
            return self.power.feed(obs)
        return self._reset(obs)

    # -- rules -------------------------------------------------------------------------------

    def _key(self, host: str | None, info_or_id: SessionInfo | str) -> Key:
        h = host or self.host
        if isinstance(info_or_id, str):
            return (h, info_or_id)
        i = info_or_id
        return (h, session_key(i.session_id, i.logon_id, i.domain, i.user_name))

    def _appeared(self, obs: SessionAppeared) -> list[SensEvent]:
        key = self._key(obs.host, obs.info)
        if key in self._open:
            return self._apply(self._open[key], obs.info, obs.time, obs.source)
        if not is_user_session(obs.info):
            self._ignored[key] = obs.info
            return []
        self._ignored.pop(key, None)
        self._closed.pop(key, None)
        if obs.existing and not self.include_existing:
            if obs.info.state == "closing":
                self._close(key)
                return []
            info = obs.info
            self._open[key] = OpenSession(  # noqa: S604 - 'shell' here is PostShell seen, no subprocess
                host=key[0], source=obs.source, info=info, since=info.since or obs.time,
                logged_on=False, shell=True, connected=not _found_detached(info),
                locked=bool(info.locked),
            )
            return []
        if not obs.existing:
            return self._logon(key, obs.info, None, obs.time, obs.source)
        out = self._logon(key, obs.info, obs.info.since, obs.time, obs.source)
        s = self._open.get(key)
        if s is not None and _found_detached(obs.info):
            # Reported as it is found: logged on earlier, disconnected now.
            s.connected = False
            out.append(self._event(s, M.SessionDisconnect, obs.time, obs.source))
        return out

    def _logon(
        self, key: Key, info: SessionInfo, since: datetime | None, time: datetime, source: str,
        shell: bool | None = None,
    ) -> list[SensEvent]:
        """Logon (and PostShell when ``shell``; None: judge from the session's type and seat)."""
        s = OpenSession(host=key[0], source=source, info=info, since=since or time)
        self._open[key] = s
        out = [self._event(s, M.Logon, since or time, source)]
        if shell if shell is not None else _shell_ready(info):
            s.shell = True
            out.append(self._event(s, M.PostShell, since or time, source))
        if info.locked:
            s.locked = True
            out.append(self._event(s, M.DisplayLock, time, source))
        if info.state == "closing":
            out.extend(self._logoff(key, s, time, source, "closing", False))
        return out

    def _changed(self, obs: SessionChanged) -> list[SensEvent]:
        key = self._key(obs.host, obs.session_id)
        s = self._open.get(key)
        if s is None:
            ignored = self._ignored.get(key)
            if ignored is None:
                return []
            info = replace(ignored, **_known(obs.changes))
            self._ignored[key] = info
            if is_user_session(info):
                return self._appeared(SessionAppeared(obs.time, obs.source, info, host=obs.host))
            return []
        return self._apply(s, replace(s.info, **_known(obs.changes)), obs.time, obs.source)

    def _apply(
        self, s: OpenSession, new: SessionInfo, time: datetime, source: str
    ) -> list[SensEvent]:
        """The events for the open session ``s`` moving to the properties ``new``."""
        key = self._key(s.host, s.info)
        s.info = new
        if new.state == "closing":
            return self._logoff(key, s, time, source, "closing", False)
        out: list[SensEvent] = []
        if not s.shell and _shell_ready(new):
            s.shell = True
            out.append(self._event(s, M.PostShell, time, source))
        lock_events = self._lock(s, new.locked, time, source)
        if new.seat and new.active is False and s.connected:
            # Switching away locks the screen first, then leaves: Lock before Disconnect.
            out.extend(lock_events)
            s.connected = False
            out.append(self._event(s, M.SessionDisconnect, time, source))
        elif new.seat and new.active is True and not s.connected:
            s.connected = True
            out.append(self._event(s, M.SessionReconnect, time, source))
            out.extend(lock_events)
        else:
            out.extend(lock_events)
        return out

    def _lock(
        self, s: OpenSession, locked: bool | None, time: datetime, source: str
    ) -> list[SensEvent]:
        if locked is None or locked == s.locked:
            return []
        s.locked = locked
        return [self._event(s, M.DisplayLock if locked else M.DisplayUnlock, time, source)]

    def _vanished(self, obs: SessionVanished) -> list[SensEvent]:
        key = self._key(obs.host, obs.session_id)
        self._ignored.pop(key, None)
        s = self._open.get(key)
        if s is None:
            self._closed.pop(key, None)  # gone for good: the id may be reused (Windows, utmp)
            return []
        # Gone for good, as above: not remembered as closed.
        return self._logoff(key, s, obs.time, obs.source, obs.reason, obs.synthesized,
                            remember=False)

    def _logoff(
        self, key: Key, s: OpenSession, time: datetime, source: str,
        reason: str | None, synthesized: bool, info: SessionInfo | None = None,
        *, remember: bool = True,
    ) -> list[SensEvent]:
        del self._open[key]
        if remember:
            self._close(key)
        else:
            self._forget(key)
        return [self._event(s, M.Logoff, time, source, reason=reason, synthesized=synthesized,
                            info=info)]

    def _close(self, key: Key) -> None:
        self._closed[key] = None
        self._closed.move_to_end(key)
        while len(self._closed) > _CLOSED_MEMORY:
            self._closed.popitem(last=False)

    def _forget(self, key: Key) -> None:
        """What :meth:`_close` and then dropping ``key`` leave in the memory of closed keys,
        without the OrderedDict's moves (a history import does this per logout): ``key`` not
        there, and the oldest pushed out if the memory was full."""
        closed = self._closed
        if key in closed:
            del closed[key]
        elif len(closed) >= _CLOSED_MEMORY:
            closed.popitem(last=False)

    def _record(self, obs: SessionRecord) -> list[SensEvent]:
        events = self._record_rules(obs)
        if obs.event is not None:
            # A finished event (replay, publish) keeps its identity: emit it, not a rebuilt copy.
            return [obs.event if e.canonical_method is obs.method else e for e in events]
        return events

    def _record_rules(self, obs: SessionRecord) -> list[SensEvent]:
        method = obs.method
        info = obs.info
        key = self._key(obs.host, info)
        if method not in _SESSION_METHODS:
            # Network and power events are not about a session: passed through as they are.
            return [self._plain(info, method, obs)]
        if not is_user_session(info):
            return []
        s = self._open.get(key)
        if method is M.Logon:
            out: list[SensEvent] = []
            if s is not None:
                if s.logged_on and abs(obs.time - s.since) <= _DUPLICATE_WINDOW and _same_user(
                    s.info, info
                ):
                    s.info = _merge(s.info, info)
                    return []
                # A new logon on a line (or a reused session id) ends the session left open.
                out = self._logoff(key, s, obs.time, obs.source, "superseded", True)
            self._closed.pop(key, None)
            return out + self._logon(key, info, None, obs.time, obs.source, obs.post_shell)
        if s is None:
            if key in self._closed:
                return []  # a duplicate report of something already ended
            if method is M.Logoff:
                self._close(key)
                return [self._plain(info, method, obs)]
            # First seen in mid-life (the log began after its logon): adopt it as it must have
            # been just before this record, without inventing a Logon.
            s = OpenSession(
                host=key[0], source=obs.source, info=info, since=obs.time, logged_on=False,
                shell=False, connected=method is not M.SessionReconnect,
                locked=method is M.DisplayUnlock, saver=method is M.StopScreenSaver,
            )
            self._open[key] = s
        else:
            s.info = _merge(s.info, info)
            if method is M.SessionReconnect:
                # A reconnect is a new connection, perhaps from elsewhere (RDP, then the
                # console): its client fields replace the old ones, unknown ones included.
                s.info = replace(s.info, remote=info.remote, client_name=info.client_name,
                                 client_address=info.client_address)
        if method is M.Logoff:
            # raw: the logoff record's own fields, not the logon's
            return self._logoff(key, s, obs.time, obs.source, obs.reason, obs.synthesized, info)
        if method is M.PostShell:
            if s.shell:
                return []
            s.shell = True
        elif method in (M.SessionDisconnect, M.SessionReconnect):
            connected = method is M.SessionReconnect
            if s.connected == connected:
                return []
            s.connected = connected
        elif method in (M.DisplayLock, M.DisplayUnlock):
            return self._lock(s, method is M.DisplayLock, obs.time, obs.source)
        else:
            saver = method is M.StartScreenSaver
            if s.saver == saver:
                return []
            s.saver = saver
        return [self._event(s, method, obs.time, obs.source, reason=obs.reason,
                            synthesized=obs.synthesized, info=info)]

    def _reset(self, obs: HostReset) -> list[SensEvent]:
        host = obs.host or self.host
        out: list[SensEvent] = []
        for key, s in sorted(self._open.items(), key=lambda kv: kv[1].since):
            if key[0] == host:
                out.extend(self._logoff(key, s, obs.time, obs.source, obs.reason, True))
        # After a boot session ids and lines start over: forget what was closed on this host.
        for key in [k for k in self._closed if k[0] == host]:
            del self._closed[key]
        self._ignored = {k: v for k, v in self._ignored.items() if k[0] != host}
        return out

    # -- event construction ------------------------------------------------------------------

    def _event(
        self, s: OpenSession, method: Method, time: datetime, source: str, *,
        reason: str | None = None, synthesized: bool = False, info: SessionInfo | None = None,
    ) -> SensEvent:
        i = s.info
        raw = info.raw if info is not None else i.raw
        if time.tzinfo is None:  # what SensEvent(...) does with a naive time
            time = time.replace(tzinfo=UTC)
        sid = i.session_id
        if sid is not None and type(sid) is not str:
            sid = str(sid)
        # Everything here is already valid, so the checking constructor is not needed: the
        # tracker builds every event of a bulk import (hence the values by position too).
        return _trusted(
            method, time, self._clock(), s.host, source, i.user_name, sid, i.domain,
            i.session_name, i.session_type, i.tty, i.seat, i.remote, i.client_name,
            i.client_address, i.logon_id, reason, synthesized, raw,
        )

    def _plain(self, i: SessionInfo, method: Method, obs: SessionRecord) -> SensEvent:
        s = OpenSession(host=obs.host or self.host, source=obs.source, info=i, since=obs.time)
        return self._event(s, method, obs.time, obs.source, reason=obs.reason,
                           synthesized=obs.synthesized)


_INFO_FIELDS = frozenset(SessionInfo.__slots__)


def _known(changes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in changes.items() if k in _INFO_FIELDS}


def _same_user(a: SessionInfo, b: SessionInfo) -> bool:
    return fold_name(a.user_name) == fold_name(b.user_name)


def _merge(old: SessionInfo, new: SessionInfo) -> SessionInfo:
    """``old`` with every field ``new`` knows (not None) taken from ``new``."""
    changes = {
        f: getattr(new, f) for f in _INFO_FIELDS
        if f != "raw" and getattr(new, f) is not None and f != "remote"
    }
    if new.remote:
        changes["remote"] = True
    return replace(old, **changes)
