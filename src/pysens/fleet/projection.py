"""What the central store keeps beside the events so that an admin's questions about a fleet
of 10,000 hosts are one indexed read: each session's last known state, and each host's counts.
Pure: no I/O (:mod:`pysens.fleet.store` writes and reads the rows).

The events are tracker output (the rules already hold), so a session's state follows from the
latest event of each kind: open when its latest Logon is newer than its latest Logoff (or, seen
only from mid-life, when it has no Logoff); disconnected when its
latest SessionDisconnect is newer than its latest Reconnect and Logon; locked likewise. Each of
those is a *maximum* of an order key ``(time_us, seq)``, so folding events in any order, or
twice, gives the same row: several collectors committing one host's batches out of order, or a
batch delivered again, change nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from ..events import Method
from ..observations import SessionInfo
from ..timeline import SESSION_METHODS
from ..tracker import OpenSession, session_key

__all__ = ["NEVER", "HostRow", "SessionRow", "fold_hosts", "fold_sessions", "open_session"]

M = Method
#: The order key of "no such event yet".
NEVER = (-1, -1)
Key = tuple[int, int]

#: The descriptive fields of a session, taken from its latest event.
INFO_FIELDS = ("user_name", "domain", "session_id", "logon_id", "session_type", "tty", "seat")


@dataclass(slots=True)
class SessionRow:
    """One session key of one host, as the store keeps it (see the module text)."""

    host: str
    skey: str
    user_name: str | None = None
    domain: str | None = None
    session_id: str | None = None
    logon_id: str | None = None
    session_type: str | None = None
    tty: str | None = None
    seat: str | None = None
    info: Key = NEVER
    remote: bool = False
    client_name: str | None = None
    client_address: str | None = None
    client: Key = NEVER
    source: str | None = None
    logon: Key = NEVER
    logoff: Key = NEVER
    disconnect: Key = NEVER
    reconnect: Key = NEVER
    lock: Key = NEVER
    unlock: Key = NEVER
    first: Key = NEVER
    last: Key = NEVER
    first_source: str | None = None

    @property
    def is_open(self) -> bool:
        """No Logoff after its latest Logon; seen only from mid-life, no Logoff at all (after a
        Logoff only a Logon opens a key again, as the tracker's replay of the events has it)."""
        if self.logon != NEVER:
            return self.logon > self.logoff
        return self.logoff == NEVER

    @property
    def connected(self) -> bool:
        """Not disconnected since it last connected."""
        return self.disconnect <= max(self.reconnect, self.logon)

    @property
    def locked(self) -> bool:
        """Locked since it last logged on or unlocked."""
        return self.lock > max(self.unlock, self.logon)

    def merge(self, other: SessionRow) -> SessionRow:
        """Both rows' knowledge in one (order does not matter)."""
        # The newest event's description whole: the tracker puts a session's merged info in
        # every event, so the newest knows the most (and a key reused by a new session is
        # that session's). Taking each field's newest non-empty value instead would depend on
        # the order the events are folded in.
        newer = other if other.info > self.info else self
        info = {f: getattr(newer, f) for f in INFO_FIELDS}
        client = other if other.client > self.client else self
        logon = other if other.logon > self.logon else self
        first = other if other.first != NEVER and (self.first == NEVER
                                                   or other.first < self.first) else self
        return replace(
            self, **info, info=max(self.info, other.info), remote=client.remote,
            client_name=client.client_name, client_address=client.client_address,
            client=client.client, source=logon.source, logon=logon.logon,
            logoff=max(self.logoff, other.logoff), disconnect=max(self.disconnect,
                                                                 other.disconnect),
            reconnect=max(self.reconnect, other.reconnect), lock=max(self.lock, other.lock),
            unlock=max(self.unlock, other.unlock), first=first.first,
            first_source=first.first_source, last=max(self.last, other.last))


#: The SessionRow columns the store keeps, in order (an order key is two columns: _us, _seq).
KEYS = ("info", "client", "logon", "logoff", "disconnect", "reconnect", "lock", "unlock",
        "first", "last")
COLUMNS = tuple(
    c for f in fields(SessionRow) for c in (
        (f"{f.name}_us", f"{f.name}_seq") if f.name in KEYS else (f.name,)))


def row_values(row: SessionRow) -> tuple[Any, ...]:
    """``row`` as the store's column values, in :data:`COLUMNS` order."""
    out: list[Any] = []
    for f in fields(SessionRow):
        value = getattr(row, f.name)
        out.extend(value if f.name in KEYS else (value,))
    return tuple(out)


def row_of(values: Iterable[Any]) -> SessionRow:
    """The row the store's column values (in :data:`COLUMNS` order) describe."""
    it = iter(values)
    kw: dict[str, Any] = {}
    for f in fields(SessionRow):
        if f.name in KEYS:
            kw[f.name] = (int(next(it)), int(next(it)))
        else:
            kw[f.name] = next(it)
    kw["remote"] = bool(kw["remote"])
    return SessionRow(**kw)


def session_row(event: Any) -> SessionRow | None:
    """The row one session event (a :class:`~pysens.fleet.store.StoredEvent`) says, alone;
    None for an event that is not about a session."""
    method = event.method
    if method not in _SESSION_NAMES:
        return None
    key = (event.time_us, event.seq if event.seq is not None else -1)
    row = SessionRow(
        event.host, session_key(event.session_id, event.logon_id, event.domain,
                                event.user_name),
        **{f: getattr(event, f) for f in INFO_FIELDS}, info=key, first=key, last=key,
        first_source=event.source)
    if method == "Logon":
        row.logon, row.source = key, event.source
    if method in ("Logon", "SessionReconnect"):
        # A reconnect is a new connection, perhaps from elsewhere: its client replaces the old.
        row.client, row.remote = key, bool(event.remote)
        row.client_name, row.client_address = event.client_name, event.client_address
    attr = _KEY_OF.get(method)
    if attr is not None:
        setattr(row, attr, key)
    return row


_SESSION_NAMES = frozenset(str(m) for m in SESSION_METHODS)
_KEY_OF = {"Logoff": "logoff", "SessionDisconnect": "disconnect",
           "SessionReconnect": "reconnect", "DisplayLock": "lock", "DisplayUnlock": "unlock"}


def fold_sessions(events: Iterable[Any]) -> dict[tuple[str, str], SessionRow]:
    """Each (host, session key) the events touch, with what they say of it together."""
    out: dict[tuple[str, str], SessionRow] = {}
    for event in events:
        row = session_row(event)
        if row is None:
            continue
        known = out.get((row.host, row.skey))
        out[(row.host, row.skey)] = row if known is None else known.merge(row)
    return out


@dataclass(slots=True)
class HostRow:
    """One host: when its events begin and end, and how many the store holds."""

    host: str
    first_us: int
    last_us: int
    events: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def fold_hosts(events: Iterable[Any]) -> dict[str, HostRow]:
    """Each host the (newly stored) events belong to: their time span and count."""
    out: dict[str, HostRow] = {}
    for e in events:
        row = out.get(e.host)
        if row is None:
            out[e.host] = HostRow(e.host, e.time_us, e.time_us, 1)
        else:
            row.first_us = min(row.first_us, e.time_us)
            row.last_us = max(row.last_us, e.time_us)
            row.events += 1
    return out


def _time(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)


def open_session(row: SessionRow) -> OpenSession:
    """The session a row describes, as ``sens sessions`` shows it (the row must be open)."""
    info = SessionInfo(
        session_id=row.session_id, user_name=row.user_name, domain=row.domain,
        session_type=row.session_type, tty=row.tty, seat=row.seat, remote=row.remote,
        client_name=row.client_name, client_address=row.client_address,
        logon_id=row.logon_id)
    since = row.logon if row.logon != NEVER else row.first
    return OpenSession(  # noqa: S604 - 'shell' is PostShell seen, no subprocess
        host=row.host, source=row.source or row.first_source or "", info=info,
        since=_time(since[0]), logged_on=row.logon != NEVER, shell=True,
        connected=row.connected, locked=row.locked)
