"""Events -> sessions: one :class:`SessionSpan` per session, with its connected / disconnected
intervals (``sens timeline``). Pure: no I/O.

The input is any iterable of :class:`~pysens.events.SensEvent` (the journal, the fleet's store, a
replay file, a tracker's output). A session instance is keyed like the tracker keys it: host plus
session id, else ``logon_id``, else domain and user; a Logon on a key that is still open starts a
new instance (the old one ends there, "superseded"). Only the ISensLogon2 methods shape the
intervals; the other session methods (DisplayLock, screen saver…) only reveal that a session
exists; network and power events are not about a session and are ignored.

Use::

    spans = build_timeline(events)
    for s in spans:
        print(s.user_name, s.logon, s.logoff, [(i.state, i.start, i.end) for i in s.intervals])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

from ..events import Method, SensEvent, format_time
from ..tracker import session_key as _key_of

__all__ = [
    "CONNECTED",
    "DISCONNECTED",
    "LANE_METHODS",
    "SESSION_METHODS",
    "Interval",
    "LogonPair",
    "SessionSpan",
    "build_timeline",
    "event_key",
    "format_duration",
    "overlaps",
    "pair_sessions",
]

#: The two interval states.
CONNECTED: Literal["connected"] = "connected"
DISCONNECTED: Literal["disconnected"] = "disconnected"

M = Method
#: The methods a timeline is built from (the others are not about a session).
SESSION_METHODS = frozenset({
    M.Logon, M.Logoff, M.SessionDisconnect, M.SessionReconnect, M.PostShell, M.DisplayLock,
    M.DisplayUnlock, M.StartScreenSaver, M.StopScreenSaver,
})
_SESSION_METHODS = SESSION_METHODS
#: The methods drawn in a host's network / power lane (above its sessions).
LANE_METHODS = frozenset({
    M.ConnectionMade, M.ConnectionMadeNoQOCInfo, M.ConnectionLost, M.DestinationReachable,
    M.DestinationReachableNoQOCInfo, M.OnACPower, M.OnBatteryPower, M.BatteryLow,
})


class Interval(NamedTuple):
    """One stretch of a session in one state. ``end`` is None while it lasts (session open).

    A connected interval carries the client it was connected from (a reconnect may come from
    another machine); a disconnected one has no client (both None).
    """

    start: datetime
    end: datetime | None
    state: Literal["connected", "disconnected"]
    client_name: str | None = None
    client_address: str | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"start", "end", "state", "client_name", "client_address"}`` (times as in the
        event JSON)."""
        return {
            "start": format_time(self.start),
            "end": None if self.end is None else format_time(self.end),
            "state": self.state,
            "client_name": self.client_name,
            "client_address": self.client_address,
        }


@dataclass(slots=True)
class SessionSpan:
    """One session instance from its logon to its logoff, as the events show it.

    ``logon`` is None when the events show the session only from mid-life (the journal began
    after its Logon); then ``start`` is the first event seen. ``logoff`` is None while it is
    open. ``intervals`` are contiguous and alternate between connected and disconnected, from
    ``start`` to ``logoff``; the last one has ``end=None`` while the session is open.
    """

    host: str
    user_name: str | None
    domain: str | None
    session_id: str | None
    tty: str | None
    start: datetime
    logon: datetime | None = None
    logoff: datetime | None = None
    logoff_reason: str | None = None
    #: True when the Logoff was inferred (reboot record, source gap, superseded), not observed.
    synthesized: bool = False
    remote: bool = False
    session_type: str | None = None
    logon_id: str | None = None
    source: str | None = None
    intervals: list[Interval] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        """(host, session key): what the tracker keys the session by (see :func:`event_key`)."""
        return (self.host, _key_of(self.session_id, self.logon_id, self.domain, self.user_name))

    @property
    def is_open(self) -> bool:
        """No Logoff seen yet."""
        return self.logoff is None

    @property
    def state(self) -> str:
        """``connected`` / ``disconnected`` (the last interval's), or ``closed`` after Logoff."""
        if self.logoff is not None or not self.intervals:
            return "closed"
        return self.intervals[-1].state

    @property
    def clients(self) -> list[str]:
        """Every distinct client (address, else name) it was connected from, in order."""
        seen: list[str] = []
        for i in self.intervals:
            c = i.client_address or i.client_name
            if c and c not in seen:
                seen.append(c)
        return seen

    def duration(self, now: datetime | None = None) -> timedelta | None:
        """``start`` .. ``logoff`` (or .. ``now`` while open; None when open and no ``now``)."""
        end = self.logoff or now
        return None if end is None else max(end - self.start, timedelta(0))

    def connected_time(self, now: datetime | None = None) -> timedelta:
        """The total of the connected intervals (an open one counted up to ``now``, if given)."""
        total = timedelta(0)
        for i in self.intervals:
            end = i.end or now
            if i.state == CONNECTED and end is not None:
                total += max(end - i.start, timedelta(0))
        return total

    def to_json(self) -> dict[str, Any]:
        """One JSON object (field names as in the event JSON; times ISO 8601 UTC; open = null)."""
        duration = self.duration()
        return {
            "host": self.host,
            "user_name": self.user_name,
            "domain": self.domain,
            "session_id": self.session_id,
            "tty": self.tty,
            "logon_id": self.logon_id,
            "session_type": self.session_type,
            "remote": self.remote,
            "source": self.source,
            "start": format_time(self.start),
            "logon": None if self.logon is None else format_time(self.logon),
            "logoff": None if self.logoff is None else format_time(self.logoff),
            "logoff_reason": self.logoff_reason,
            "synthesized": self.synthesized,
            "duration_seconds": None if duration is None else duration.total_seconds(),
            "clients": self.clients,
            "intervals": [i.to_json() for i in self.intervals],
        }


def event_key(event: SensEvent) -> tuple[str, str]:
    """The (host, key) a session event belongs to, as the tracker keys it
    (:func:`pysens.tracker.session_key`)."""
    return (event.host, _key_of(event.session_id, event.logon_id, event.domain, event.user_name))


def _method(e: SensEvent) -> Method:
    m = e.method
    return m if isinstance(m, Method) else e.canonical_method


class _Builder:
    """The open spans and where each one's current interval began."""

    def __init__(self, where: Callable[[SensEvent], bool] | None) -> None:
        self.where = where
        self.open: dict[tuple[str, str], SessionSpan] = {}
        self.last_closed: dict[tuple[str, str], SessionSpan] = {}
        self.done: list[SessionSpan] = []
        self.matched: set[int] = set()  # id() of spans one of whose events satisfied `where`

    def feed(self, e: SensEvent) -> None:
        method = _method(e)
        key = event_key(e)
        span = self.open.get(key)
        t = e.time
        if method is M.Logon:
            if span is not None:
                if span.logon is not None and span.logon == t:
                    self._note(span, e)  # one logon reported twice (two channels)
                    return
                self._close(key, span, t, "superseded", True)
            span = self._new(e, CONNECTED)
            span.logon = t
        elif span is None:
            last = self.last_closed.get(key)
            if last is not None and last.logoff == t:
                self._note(last, e)  # a late duplicate of the end already recorded
                return
            if method is M.Logoff:
                span = self._new(e, None)  # only its end is known
                self._note(span, e)
                self._close(key, span, t, e.reason, e.synthesized)
                return
            state = DISCONNECTED if method is M.SessionDisconnect else CONNECTED
            span = self._new(e, state)
        elif method is M.Logoff:
            self._note(span, e)
            self._close(key, span, t, e.reason, e.synthesized)
            return
        elif method is M.SessionDisconnect:
            self._switch(span, t, DISCONNECTED, None, None)
        elif method is M.SessionReconnect:
            self._switch(span, t, CONNECTED, e.client_name, e.client_address)
        self._note(span, e)

    def _new(self, e: SensEvent, state: Literal["connected", "disconnected"] | None) -> SessionSpan:
        span = SessionSpan(
            host=e.host, user_name=e.user_name, domain=e.domain, session_id=e.session_id,
            tty=e.tty, start=e.time, remote=e.remote, session_type=e.session_type,
            logon_id=e.logon_id, source=e.source,
        )
        if state == CONNECTED:
            span.intervals.append(Interval(e.time, None, CONNECTED, e.client_name,
                                           e.client_address))
        elif state == DISCONNECTED:
            span.intervals.append(Interval(e.time, None, DISCONNECTED))
        self.open[event_key(e)] = span
        return span

    def _note(self, span: SessionSpan, e: SensEvent) -> None:
        """Fill in what a later event knows that the span does not yet."""
        if self.where is not None and id(span) not in self.matched and self.where(e):
            self.matched.add(id(span))
        if span.user_name is None:
            span.user_name = e.user_name
        if span.domain is None:
            span.domain = e.domain
        if span.tty is None:
            span.tty = e.tty
        if span.session_type is None or e.session_type not in (None, "tty", "unspecified"):
            # logind: a graphical session starts as "unspecified" and then becomes x11/wayland
            span.session_type = e.session_type or span.session_type
        if span.logon_id is None:
            span.logon_id = e.logon_id
        span.remote = span.remote or e.remote
        if span.intervals and span.intervals[-1].state == CONNECTED:
            last = span.intervals[-1]
            if last.client_name is None and last.client_address is None and (
                    e.client_name or e.client_address) and _method(e) is not M.Logoff:
                span.intervals[-1] = last._replace(
                    client_name=e.client_name, client_address=e.client_address)

    @staticmethod
    def _switch(
        span: SessionSpan, t: datetime, state: Literal["connected", "disconnected"],
        client_name: str | None, client_address: str | None,
    ) -> None:
        last = span.intervals[-1] if span.intervals else None
        if last is not None and last.state == state:
            return  # a repeated report: the state did not change
        if last is not None:
            span.intervals[-1] = last._replace(end=t)
        span.intervals.append(Interval(t, None, state, client_name, client_address))

    def _close(
        self, key: tuple[str, str], span: SessionSpan, t: datetime, reason: str | None,
        synthesized: bool,
    ) -> None:
        if span.intervals and span.intervals[-1].end is None:
            span.intervals[-1] = span.intervals[-1]._replace(end=t)
        span.logoff = t
        span.logoff_reason = reason
        span.synthesized = synthesized
        del self.open[key]
        self.last_closed[key] = span
        self.done.append(span)

    def result(self) -> Iterator[SessionSpan]:
        for span in [*self.done, *self.open.values()]:
            if self.where is None or id(span) in self.matched:
                yield span


def build_timeline(
    events: Iterable[SensEvent], *, where: Callable[[SensEvent], bool] | None = None
) -> list[SessionSpan]:
    """One :class:`SessionSpan` per session instance in ``events``, ordered by start time.

    Events are taken in time order (a stable sort, so events of one instant keep their given
    order: a "superseded" Logoff before the Logon that caused it). Repeated reports of a state
    (two Disconnects in a row, a Logon seen twice at one instant, a Logoff after the Logoff)
    change nothing. With ``where`` (a compiled filter), only the sessions one of whose events
    satisfies it are kept -- whole, not cut down to the matching events.
    """
    builder = _Builder(where)
    ordered = sorted(
        (e for e in events if _method(e) in _SESSION_METHODS), key=lambda e: e.time
    )
    seen: set[str] = set()
    for e in ordered:
        if e.id in seen:
            continue
        seen.add(e.id)
        builder.feed(e)
    return sorted(builder.result(), key=lambda s: (s.start, s.host, s.session_id or ""))


def overlaps(span: SessionSpan, since: datetime | None, until: datetime | None) -> bool:
    """True when ``span`` was open at some time in ``[since, until)`` (an open one still is)."""
    if until is not None and span.start >= until:
        return False
    return since is None or span.logoff is None or span.logoff >= since


def format_duration(d: timedelta) -> str:
    """Compact: ``42s``, ``5m``, ``1h02m``, ``3d04h``."""
    s = int(d.total_seconds())
    if s < 60:
        return f"{s}s"
    m, _ = divmod(s, 60)
    if m < 60:
        return f"{m}m"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    days, h = divmod(h, 24)
    return f"{days}d{h:02d}h"


@dataclass(frozen=True, slots=True)
class LogonPair:
    """One Logon with its Logoff (``None``: still open at the end of the events)."""

    logon: SensEvent
    logoff: SensEvent | None = None

    @property
    def end(self) -> str:
        """How it ended: ``open``, ``logoff`` (observed), or the synthesized Logoff's reason."""
        if self.logoff is None:
            return "open"
        if not self.logoff.synthesized:
            return "logoff"
        return self.logoff.reason or "gone"


def pair_sessions(events: Iterable[SensEvent]) -> list[LogonPair]:
    """Each Logon in ``events`` (tracker output: per session Logon first, Logoff last) with its
    Logoff, in Logon order: what ``last`` lists. A Logoff without its Logon (the log began
    mid-session) is left out; :func:`build_timeline` keeps those, with their intervals."""
    done: list[tuple[int, LogonPair]] = []
    open_: dict[tuple[str, str], tuple[int, SensEvent]] = {}
    for n, e in enumerate(events):
        key = event_key(e)
        if e.method is M.Logon:
            open_[key] = (n, e)
        elif e.method is M.Logoff and key in open_:
            start, logon = open_.pop(key)
            done.append((start, LogonPair(logon, e)))
    done.extend((n, LogonPair(logon)) for n, logon in open_.values())
    return [s for _, s in sorted(done, key=lambda pair: pair[0])]
