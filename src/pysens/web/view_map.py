"""What the live page shows, kept up to date one event at a time. Pure: no I/O.

:class:`LiveView` holds the picture the browser draws, built with the rules the rest of pysens
already has rather than new ones:

* the open sessions: a :class:`~pysens.tracker.Tracker` (the daemon's and ``sens sessions
  --store``'s rules) fed each event as a record; a row is ``sens sessions --json``'s object
  plus an ``id``;
* the timeline: per session key its events, rebuilt by :func:`build_timeline` (``sens
  timeline``'s rules) whenever one of them arrives, so a row is exactly what the static page
  would draw;
* the network and power lanes: each host's latest ISensNetwork / ISensOnNow events;
* the latest events and, per host, how many sessions are open, disconnected and locked.

:meth:`LiveView.apply` takes one event and says what changed (a :class:`Change`), which is all
a page that already has the picture needs. Everything is bounded: recent events, lane events,
closed spans and the remembered event ids are capped.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..events import Method, SensEvent, format_time, parse_time
from ..observations import SessionInfo, SessionRecord
from ..timeline import LANE_METHODS, SESSION_METHODS, build_timeline, event_key
from ..timeline.html import lane_point, span_model
from ..tracker import Tracker, session_key

__all__ = ["LANE_METHODS", "Change", "LiveView", "row_id"]

M = Method
_SEP = "\x1f"  # cannot be typed into a host name or session id by accident


def row_id(host: str, key: str) -> str:
    """The id of a session row: its host and tracker key."""
    return f"{host}{_SEP}{key}"


@dataclass(slots=True)
class Change:
    """What one event changed: the event, session rows added or changed (``sessions``) and
    removed (``removed`` ids), timeline spans rebuilt, a lane point, the host's summary."""

    event: SensEvent
    sessions: list[dict[str, Any]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    spans: list[dict[str, Any]] = field(default_factory=list)
    lane: dict[str, Any] | None = None
    host: dict[str, Any] | None = None

    def common_json(self) -> dict[str, Any]:
        """Everything but the event itself (which a page's filter may hide)."""
        return {"s": self.sessions, "r": self.removed, "p": self.spans, "l": self.lane,
                "h": self.host}


def _method(e: SensEvent) -> Method:
    m = e.method
    return m if isinstance(m, Method) else e.canonical_method


class LiveView:
    """The page's picture (see the module docs). ``recent``: events kept for a page that
    opens now; ``lane_cap``: lane events kept per host; ``max_spans``: closed spans kept."""

    def __init__(self, *, recent: int = 300, lane_cap: int = 2000, max_spans: int = 50_000,
                 max_ids: int = 200_000) -> None:
        self.tracker = Tracker(host="-")
        self.rows: dict[str, dict[str, Any]] = {}
        self.recent: deque[SensEvent] = deque(maxlen=recent)
        self.lanes: dict[str, deque[dict[str, Any]]] = {}
        self.lane_cap = lane_cap
        self.spans: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.max_spans = max_spans
        self._by_key: dict[tuple[str, str], list[SensEvent]] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.max_ids = max_ids
        self.hosts: dict[str, dict[str, Any]] = {}

    # -- filling -----------------------------------------------------------------------------

    def seed_sessions(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Start the session table from a daemon's ``sessions`` answer (before any event)."""
        for row in rows:
            info = SessionInfo(
                session_id=_opt(row.get("session_id")), user_name=_opt(row.get("user_name")),
                domain=_opt(row.get("domain")), session_type=_opt(row.get("session_type")),
                session_class=_opt(row.get("session_class")), tty=_opt(row.get("tty")),
                seat=_opt(row.get("seat")), remote=bool(row.get("remote")),
                client_name=_opt(row.get("client_name")),
                client_address=_opt(row.get("client_address")),
            )
            host = str(row.get("host") or "-")
            source = str(row.get("source") or "daemon")
            since = parse_time(str(row.get("since")))
            self.tracker.feed(SessionRecord(since, source, M.Logon, info, host=host))
            state = row.get("state")
            if state == "disconnected":
                self.tracker.feed(SessionRecord(since, source, M.SessionDisconnect, info,
                                                host=host))
            elif state == "locked":
                self.tracker.feed(SessionRecord(since, source, M.DisplayLock, info, host=host))
            self._refresh_row(host, _row_key(info), None)

    def load(self, events: Iterable[SensEvent], *, table: bool = True) -> None:
        """Take history in time order (the journal's or the store's window). ``table``: feed
        the session table too (False when a daemon's table was seeded instead)."""
        events = sorted(events, key=lambda e: e.time)
        for e in events:
            if not self._remember(e.id):
                continue
            method = _method(e)
            if table and method in SESSION_METHODS:
                self.tracker.feed(SessionRecord.of_event(e))
            if method in SESSION_METHODS:
                self._by_key.setdefault(event_key(e), []).append(e)
            elif method in LANE_METHODS:
                self._lane(e)
            self.recent.append(e)
            self._host(e.host)["events"] += 1
            self._host(e.host)["last"] = _last(e)
        for span in build_timeline(e for evs in self._by_key.values() for e in evs):
            obj = span_model(span)
            self.spans[obj["id"]] = obj
        if table:
            for s in self.tracker.sessions:
                self._refresh_row(s.host, _row_key(s.info), None)
        self._trim_spans()

    def apply(self, e: SensEvent) -> Change | None:
        """One live event; what changed, or None when it was already seen (same id)."""
        if not self._remember(e.id):
            return None
        change = Change(e)
        method = _method(e)
        self.recent.append(e)
        h = self._host(e.host)
        h["events"] += 1
        h["last"] = _last(e)
        if method in SESSION_METHODS:
            key = event_key(e)
            before = self.rows.get(row_id(*key))
            self.tracker.feed(SessionRecord.of_event(e))
            changed = self._refresh_row(key[0], key[1], before)
            if changed is None:
                change.removed.append(row_id(*key))
            elif changed is not before:
                change.sessions.append(changed)
            change.spans = self._rebuild(key, e)
        elif method in LANE_METHODS:
            change.lane = self._lane(e)
        change.host = dict(h)
        return change

    # -- reading -----------------------------------------------------------------------------

    def snapshot(self, where: Callable[[SensEvent], bool] | None = None) -> dict[str, Any]:
        """The whole picture; ``where`` picks the recent events shown (a page's filter)."""
        return {
            "sessions": list(self.rows.values()),
            "spans": list(self.spans.values()),
            "lanes": [p for lane in self.lanes.values() for p in lane],
            "events": [e.to_json() for e in self.recent if where is None or where(e)],
            "hosts": [dict(h) for _, h in sorted(self.hosts.items())],
        }

    # -- inside ------------------------------------------------------------------------------

    def _remember(self, event_id: str) -> bool:
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > self.max_ids:
            self._seen.popitem(last=False)
        return True

    def _host(self, host: str) -> dict[str, Any]:
        h = self.hosts.get(host)
        if h is None:
            h = self.hosts[host] = {"host": host, "open": 0, "disconnected": 0, "locked": 0,
                                    "events": 0, "last": None}
        return h

    def _refresh_row(self, host: str, key: str,
                     before: dict[str, Any] | None) -> dict[str, Any] | None:
        """Bring the row of (host, key) in line with the tracker; the row now (``before``
        itself when nothing changed) or None when the session is gone."""
        rid = row_id(host, key)
        s = self.tracker.session(key, host=host)
        after = None if s is None else {"id": rid, **s.to_json()}
        if after == before:
            return before
        for row, sign in ((before, -1), (after, 1)):
            if row is not None:
                h = self._host(row["host"])
                h["open"] += sign
                if row["state"] in ("disconnected", "locked"):
                    h[row["state"]] += sign
        if after is None:
            self.rows.pop(rid, None)
        else:
            self.rows[rid] = after
        return after

    def _rebuild(self, key: tuple[str, str], e: SensEvent) -> list[dict[str, Any]]:
        evs = self._by_key.setdefault(key, [])
        if _method(e) is M.Logon and evs:
            last = build_timeline(evs)
            if last and not last[-1].is_open and e.time >= (last[-1].logoff or e.time):
                # The earlier instances are finished and drawn: a new logon starts afresh, so
                # a key reused all day does not rebuild its whole history each time.
                evs.clear()
        evs.append(e)
        out = []
        for span in build_timeline(evs):
            obj = span_model(span)
            if self.spans.get(obj["id"]) != obj:
                self.spans[obj["id"]] = obj
                out.append(obj)
        self._trim_spans()
        return out

    def _trim_spans(self) -> None:
        # The oldest closed spans go first; open ones stay whatever their age.
        if len(self.spans) <= self.max_spans:
            return
        for sid in [k for k, v in self.spans.items() if v["logoff"] is not None][
                :len(self.spans) - self.max_spans]:
            del self.spans[sid]

    def _lane(self, e: SensEvent) -> dict[str, Any]:
        point = lane_point(e)
        lane = self.lanes.get(e.host)
        if lane is None:
            lane = self.lanes[e.host] = deque(maxlen=self.lane_cap)
        lane.append(point)
        return point


def _opt(v: Any) -> str | None:
    return None if v is None else str(v)


def _row_key(i: SessionInfo) -> str:
    return session_key(i.session_id, i.logon_id, i.domain, i.user_name)


def _last(e: SensEvent) -> dict[str, Any]:
    return {"time": format_time(e.time), "method": str(e.method), "user_name": e.user_name}
