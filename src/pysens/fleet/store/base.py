"""The central store: what both back ends share — reading (it is an
:class:`~pysens.journal.EventReader` like a journal), the shape of a commit, and the session
and host projections (:mod:`pysens.fleet.projection`) kept in the same transaction.

The collector writes here; ``sens history|sessions|timeline --store URL`` and ``sens web``
read from here. A URL picks the back end:

* ``sqlite:///PATH`` (``sqlite:////abs/path`` or ``sqlite:///rel/path``), WAL mode;
* ``postgresql://user@host:port/db`` (psycopg 3, imported only then; the schema can be
  chosen with ``?options=-csearch_path%3Dname``).

Insertion is idempotent by event id, so a message delivered twice (a collector killed between
its commit and its ack) is stored once, and only the events that were new move the hosts'
counts and the sessions' state. Messages on the stream that are not pysens events go to a
``rejected`` table (subject, reason, raw bytes), keyed by their stream position.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from ...events import EventError, SensEvent
from ...journal.window import window_keys
from ...tracker import OpenSession
from ..projection import SessionRow, fold_hosts, fold_sessions, open_session, row_of
from ..urls import redact_url
from .schema import EVENT_COLUMNS, OPEN, SESSION_COLUMNS
from .window import store_window_keys

__all__ = ["CollectorMark", "Gap", "Rejected", "Store", "StoreError", "StoredEvent", "now_us",
           "open_store", "time_us"]


class StoreError(RuntimeError):
    """The store cannot be opened or written; the message names it and says why."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event ready for the store: its checked JSON text and the columns taken from it."""

    id: str
    host: str
    time_us: int
    method: str
    user_name: str | None
    session_id: str | None
    seq: int | None
    subject: str
    body: str
    published_us: int | None = None
    source: str | None = None
    domain: str | None = None
    logon_id: str | None = None
    session_type: str | None = None
    tty: str | None = None
    seat: str | None = None
    remote: bool = False
    client_name: str | None = None
    client_address: str | None = None
    connection: str | None = None
    connection_type: int | None = None
    destination: str | None = None
    battery_percent: int | None = None

    def row(self, stored_us: int) -> tuple[Any, ...]:
        """The events table's values, in :data:`~pysens.fleet.store.schema.EVENT_COLUMNS`
        order."""
        return (self.id, self.host, self.time_us, self.method, self.user_name,
                self.session_id, self.seq, self.subject, self.body, self.published_us,
                stored_us, self.connection, self.connection_type, self.destination,
                self.battery_percent)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message on the stream that is not a pysens event, kept aside with the reason."""

    stream: str
    stream_seq: int
    subject: str
    reason: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class Gap:
    """Stream sequences lost before any collector stored them (a replica lost with its disk,
    retention that ran first): ``lost`` messages from ``first_seq`` to ``last_seq``."""

    stream: str
    first_seq: int
    last_seq: int
    lost: int
    reason: str
    detected_us: int


@dataclass(frozen=True, slots=True)
class CollectorMark:
    """What the collectors of one durable consumer have seen of their stream: its creation
    time (another value: the stream was made anew), the highest stream sequence they stored
    and the stream's highest sequence they knew of. All zero (and None) at first."""

    created: str | None = None
    floor_seq: int = 0
    last_seq: int = 0


def now_us() -> int:
    """The wall clock in microseconds since the epoch."""
    return time.time_ns() // 1000


def time_us(t: datetime) -> int:
    """A datetime in microseconds since the epoch (exact, no float rounding)."""
    return int(t.timestamp()) * 1_000_000 + t.microsecond


# The order events are read in: by time, and one host's events at one instant in its journal's
# order (a Logoff and the Logon it made way for mean something else the other way round).
_ORDER = "time_us, host, coalesce(seq, 0), id"
_SESSION_SELECT = ", ".join(SESSION_COLUMNS)
# A session is open when its latest Logon is newer than its latest Logoff (or, seen only from
# mid-life, it has no Logoff): the sessions_is_open index is on that very text.
_OPEN = OPEN


class Store:
    """A central store (use :func:`open_store`). Thread-safe: one connection behind a lock."""

    url: str
    #: Whether the SQL may say LATERAL (a join the planner must run pair by pair).
    _lateral = False
    #: Whether events are looked up by id alone (SQLite: its primary key; a row-value IN list
    #: of (time_us, id) makes it scan the whole table, 2 s for 3 rows of 1M).
    _by_id = False

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()

    # -- writing (the back ends) -------------------------------------------------------------

    def commit(self, events: Sequence[StoredEvent], rejected: Sequence[Rejected] = ()) -> int:
        """Store ``events`` (those already there are left alone), their sessions' and hosts'
        projections and ``rejected``, in one transaction; the number of events that were new."""
        raise NotImplementedError

    def record_gap(self, gap: Gap) -> bool:
        """Keep ``gap`` (once: the same first sequence again is the same loss); True when it
        was new."""
        raise NotImplementedError

    def collector_mark(self, stream: str, durable: str) -> CollectorMark:
        """What the collectors of ``durable`` last saw of ``stream`` (see
        :class:`CollectorMark`)."""
        rows = self._select(
            f"SELECT created, floor_seq, last_seq FROM collectors WHERE stream = {self._ph()}"  # noqa: S608 - placeholders only; the SQL text is this module's own
            f" AND durable = {self._ph()}", (stream, durable))
        if not rows:
            return CollectorMark()
        return CollectorMark(rows[0][0], int(rows[0][1]), int(rows[0][2]))

    def set_collector_mark(self, stream: str, durable: str, mark: CollectorMark) -> None:
        """Remember what a collector of ``durable`` has seen: for the same stream the higher
        sequences win (several collectors share a durable); a stream made anew starts over."""
        ph = self._ph()
        self._write(
            "INSERT INTO collectors (stream, durable, created, floor_seq, last_seq) VALUES"  # noqa: S608 - placeholders only
            f" ({ph}, {ph}, {ph}, {ph}, {ph}) ON CONFLICT (stream, durable) DO UPDATE SET"
            " floor_seq = CASE WHEN collectors.created = excluded.created THEN"
            f" {self._greatest}(collectors.floor_seq, excluded.floor_seq)"
            " ELSE excluded.floor_seq END,"
            " last_seq = CASE WHEN collectors.created = excluded.created THEN"
            f" {self._greatest}(collectors.last_seq, excluded.last_seq)"
            " ELSE excluded.last_seq END,"
            " created = excluded.created",
            (stream, durable, mark.created, mark.floor_seq, mark.last_seq))

    #: the SQL function of the larger of two values (max in SQLite, greatest in PostgreSQL)
    _greatest = "max"

    def _write(self, sql: str, params: Sequence[Any]) -> int:
        """Run one write statement in its own transaction; the rows it changed."""
        raise NotImplementedError

    def expire(self, before_us: int) -> int:
        """Drop the events older than ``before_us`` (retention); how many went. The hosts'
        counts follow, and the rows of closed sessions whose every event went are dropped
        (see :func:`prune_projections`)."""
        raise NotImplementedError

    def partitions(self) -> list[tuple[int, int]] | None:
        """The (year, month) partitions the events are in, oldest first; None for a store
        without partitions (SQLite)."""
        return None

    @staticmethod
    def _projections(new: Sequence[StoredEvent]) -> tuple[list[SessionRow], list[Any]]:
        return list(fold_sessions(new).values()), list(fold_hosts(new).values())

    # -- reading -----------------------------------------------------------------------------

    def _select(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _ph(self) -> str:
        return "?"

    def count(self, host: str | None = None) -> int:
        """How many events the store holds (on ``host``, when given)."""
        if host is None:
            return int(self._select("SELECT coalesce(sum(events), 0) FROM hosts", ())[0][0])
        rows = self._select(f"SELECT events FROM hosts WHERE host = {self._ph()}", (host,))  # noqa: S608 - placeholders only; the SQL text is this module's own
        return int(rows[0][0]) if rows else 0

    def ids(self) -> list[str]:
        """Every stored event id (tests and audits: compare against the journals)."""
        return [r[0] for r in self._select("SELECT id FROM events ORDER BY id", ())]

    def hosts(self) -> list[str]:
        """The hosts that have events here, sorted."""
        return [r[0] for r in self._select("SELECT host FROM hosts ORDER BY host", ())]

    def host_summaries(self) -> list[dict[str, Any]]:
        """Per host: its events' span and count, and its open and disconnected sessions (the
        fleet overview), by host."""
        counts = {h: (int(o), int(d)) for h, o, d in self._select(
            "SELECT host, count(*), sum(CASE WHEN (disconnect_us, disconnect_seq) >"  # noqa: S608 - placeholders only; the SQL text is this module's own
            " (reconnect_us, reconnect_seq) AND (disconnect_us, disconnect_seq) >"
            f" (logon_us, logon_seq) THEN 1 ELSE 0 END) FROM sessions WHERE {_OPEN}"
            " GROUP BY host", ())}
        return [{"host": h, "first_us": int(f), "last_us": int(la), "events": int(n),
                 "open": counts.get(h, (0, 0))[0], "disconnected": counts.get(h, (0, 0))[1]}
                for h, f, la, n in self._select(
                    "SELECT host, first_us, last_us, events FROM hosts ORDER BY host", ())]

    def open_sessions(self, hosts: Sequence[str] = ()) -> list[OpenSession]:
        """The sessions open now (as the stored events leave them), by host and start."""
        p = self._ph()
        where = _OPEN + (f" AND host IN ({', '.join([p] * len(hosts))})" if hosts else "")
        rows = [row_of(r) for r in self._select(
            f"SELECT {_SESSION_SELECT} FROM sessions WHERE {where}", tuple(hosts))]  # noqa: S608 - placeholders only; the SQL text is this module's own
        return sorted((open_session(r) for r in rows),
                      key=lambda s: (s.host, s.since, s.info.session_id or ""))

    def session_rows(self) -> list[SessionRow]:
        """Every session row (tests: compare with the events)."""
        return [row_of(r) for r in self._select(
            f"SELECT {_SESSION_SELECT} FROM sessions ORDER BY host, skey", ())]  # noqa: S608 - placeholders only; the SQL text is this module's own

    def rejected(self) -> list[Rejected]:
        """The messages kept aside, in stream order."""
        rows = self._select(
            "SELECT stream, stream_seq, subject, reason, raw FROM rejected"
            " ORDER BY stream, stream_seq", (),
        )
        return [Rejected(r[0], int(r[1]), r[2], r[3], bytes(r[4])) for r in rows]

    def gaps(self) -> list[Gap]:
        """The losses recorded, in stream order."""
        return [Gap(r[0], int(r[1]), int(r[2]), int(r[3]), r[4], int(r[5])) for r in self._select(
            "SELECT stream, first_seq, last_seq, lost, reason, detected_us FROM gaps"
            " ORDER BY stream, first_seq", ())]

    def lags_us(self) -> list[int]:
        """``stored - published`` per event, in microseconds (benchmarks)."""
        rows = self._select(
            "SELECT stored_us - published_us FROM events WHERE published_us IS NOT NULL", ()
        )
        return [int(r[0]) for r in rows]

    def query(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        hosts: Sequence[str] = (),
        where: Callable[[SensEvent], bool] | None = None,
        limit: int | None = None,
        on_bad: Callable[[str], None] | None = None,
        batch: int = 2000,
    ) -> Iterator[SensEvent]:
        """Events in time order (then host, and one host's in its journal's order): time in
        ``[since, until)``, host among ``hosts`` (all when empty), and ``where(event)`` true.
        A stored body that no longer reads as an event is reported to ``on_bad`` (one
        sentence naming its id) and skipped."""
        p = self._ph()
        clauses: list[str] = []
        params: list[Any] = []
        if since is not None:
            clauses.append(f"time_us >= {p}")
            params.append(time_us(since))
        if until is not None:
            clauses.append(f"time_us < {p}")
            params.append(time_us(until))
        if hosts:
            clauses.append(f"host IN ({', '.join([p] * len(hosts))})")
            params.extend(hosts)
        # Keyset pagination on the order (_ORDER): a huge store streams in batches. Both
        # databases seek the time index by the row comparison's first column (measured on
        # 10M events: page 2,500 as fast as page 1), so no index on the whole expression.
        last: tuple[int, str, int, str] | None = None
        sent = 0
        while True:
            page = list(clauses)
            page_params = list(params)
            if last is not None:
                page.append(f"({_ORDER}) > ({p}, {p}, {p}, {p})")
                page_params.extend(last)
            sql = "SELECT time_us, host, id, seq, body FROM events"
            if page:
                sql += " WHERE " + " AND ".join(page)
            sql += f" ORDER BY {_ORDER} LIMIT {int(batch)}"
            rows = self._select(sql, page_params)
            for t, host, event_id, seq, body in rows:
                last = (int(t), host, int(seq or 0), event_id)
                event = self._event(event_id, seq, body, on_bad)
                if event is None:
                    continue
                if where is None or where(event):
                    yield event
                    sent += 1
                    if limit is not None and sent >= limit:
                        return
            if len(rows) < batch:
                return

    def _event(self, event_id: str, seq: int | None, body: str,
               on_bad: Callable[[str], None] | None) -> SensEvent | None:
        """The event a stored body holds, or None (told to ``on_bad``) when it cannot be read."""
        try:
            obj = json.loads(body)
            obj["seq"] = seq
            return SensEvent.from_stored(obj, seq)
        except (EventError, ValueError, TypeError) as e:
            if on_bad is not None:
                on_bad(f"{self.url}: stored event {event_id} cannot be read: {e}")
            return None

    def session_events(
        self, methods: Iterable[str], since: datetime, until: datetime | None = None, *,
        hosts: Sequence[str] = (), on_bad: Callable[[str], None] | None = None,
    ) -> Iterator[SensEvent]:
        """What :meth:`pysens.journal.Journal.session_events` is for a journal: the session
        events (of ``methods``, on ``hosts`` when given) a timeline of ``[since, until)``
        needs, in time order, without reading every body in the store."""
        p = self._ph()
        lo, hi = time_us(since), time_us(until) if until is not None else None
        # From the sessions table when it can stand in (the session methods, Logoff among
        # them: what the timeline asks); else the journal's way, over every session event.
        kept = store_window_keys(self._select, p, methods, lo, hi, hosts=hosts,
                                 lateral=self._lateral)
        if kept is None:
            kept = window_keys(self._select, p, methods, lo, hi, hosts=hosts,
                               key="time_us, id", order=_ORDER)
        for n in range(0, len(kept), 500):
            chunk = kept[n:n + 500]
            values: list[Any]
            if self._by_id:
                marks = ", ".join([p] * len(chunk))
                where, values = f"id IN ({marks})", [k[1] for k in chunk]
            else:
                # By (time, id): the partitioned table's own key, so each partition is looked up.
                marks = ", ".join([f"({p}, {p})"] * len(chunk))
                where, values = f"(time_us, id) IN ({marks})", [v for k in chunk for v in k]
            found = self._select(
                f"SELECT id, seq, body FROM events WHERE {where} ORDER BY {_ORDER}", values)  # noqa: S608 - placeholders only; the SQL text is this module's own
            for event_id, seq, body in found:
                event = self._event(event_id, seq, body, on_bad)
                if event is not None:
                    yield event

    def newer(self, mark: int | None, limit: int = 5000) -> tuple[list[SensEvent], int]:
        """The events stored since ``mark`` (what an earlier call returned; None: from now on,
        none yet) and the mark to pass next time; for a live view that follows the store.
        The mark is a storage time: an event stored late with an old time is not missed."""
        p = self._ph()
        if mark is None:
            row = self._select("SELECT coalesce(max(stored_us), 0) FROM events", ())
            return [], int(row[0][0])
        rows = self._select(f"SELECT stored_us, id, seq, body FROM events WHERE stored_us > {p}"  # noqa: S608 - placeholders only; the SQL text is this module's own
                            f" ORDER BY stored_us, {_ORDER} LIMIT {int(limit)}", (mark,))
        out = [e for _, i, q, b in rows if (e := self._event(i, q, b, None)) is not None]
        return out, max([mark, *(int(r[0]) for r in rows)])

    def close(self) -> None:
        """Close the connection."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def session_upsert(ph: str) -> str:
    """The statement that merges one folded :class:`SessionRow` into ``sessions``: the same
    merge as :meth:`SessionRow.merge`, in SQL, so that concurrent commits of one session in
    any order give one row (``ph``: the driver's placeholder)."""
    newer = "(excluded.info_us, excluded.info_seq) > (sessions.info_us, sessions.info_seq)"

    def pick(key: str, cols: Sequence[str], smaller: bool = False) -> list[str]:
        a = f"(excluded.{key}_us, excluded.{key}_seq)"
        b = f"(sessions.{key}_us, sessions.{key}_seq)"
        if smaller:  # the earliest, where -1 means "none yet"
            cond = (f"(sessions.{key}_us = -1 OR (excluded.{key}_us <> -1 AND {a} < {b}))")
        else:
            cond = f"{a} > {b}"
        return [f"{c} = CASE WHEN {cond} THEN excluded.{c} ELSE sessions.{c} END" for c in cols]

    sets = [f"{c} = CASE WHEN {newer} THEN excluded.{c} ELSE sessions.{c} END" for c in
            ("user_name", "domain", "session_id", "logon_id", "session_type", "tty", "seat")]
    sets += pick("client", ("remote", "client_name", "client_address"))
    sets += pick("logon", ("source",))
    sets += pick("first", ("first_source", "first_us", "first_seq"), smaller=True)
    for key in ("info", "client", "logon", "logoff", "disconnect", "reconnect", "lock",
                "unlock", "last"):
        sets += pick(key, (f"{key}_seq", f"{key}_us"))
    marks = ", ".join([ph] * len(SESSION_COLUMNS))
    return (f"INSERT INTO sessions ({_SESSION_SELECT}) VALUES ({marks})"  # noqa: S608 - placeholders only; the SQL text is this module's own
            " ON CONFLICT (host, skey) DO UPDATE SET " + ", ".join(sets))


def host_upsert(ph: str) -> str:
    """The statement that adds one host's newly stored events to ``hosts``."""
    return (f"INSERT INTO hosts (host, first_us, last_us, events) VALUES ({ph}, {ph}, {ph},"  # noqa: S608 - placeholders only; the SQL text is this module's own
            f" {ph}) ON CONFLICT (host) DO UPDATE SET first_us = CASE WHEN excluded.first_us"
            " < hosts.first_us THEN excluded.first_us ELSE hosts.first_us END, last_us ="
            " CASE WHEN excluded.last_us > hosts.last_us THEN excluded.last_us ELSE"
            " hosts.last_us END, events = hosts.events + excluded.events")


def prune_projections(ph: str, cut_us: int, gone: dict[str, int], *, counted: bool = False
                      ) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The statements (each with its rows of parameters, for ``executemany``) that bring
    ``hosts`` and ``sessions`` along after retention removed every event before ``cut_us``
    (``gone``: how many of each host's): those hosts' counts and first times (a host with
    none left goes), and the rows of closed sessions whose last event was before the cut. An
    open one stays (it is still open as far as the store knows); a closed one goes only with
    its last event, since ``sens timeline --since`` looks sessions up by these rows.
    ``counted``: the counts were taken off already (batch by batch)."""
    hosts = sorted(gone)
    return [
        (f"UPDATE hosts SET events = events - {ph} WHERE host = {ph}",  # noqa: S608 - placeholders only; the SQL text is this module's own
         [] if counted else [(gone[h], h) for h in hosts]),
        ("UPDATE hosts SET first_us = coalesce((SELECT min(e.time_us) FROM events e WHERE"  # noqa: S608 - placeholders only; the SQL text is this module's own
         f" e.host = hosts.host), first_us) WHERE host = {ph}", [(h,) for h in hosts]),
        *((sql, [params]) for sql, params in prune_rest(ph, cut_us)),
    ]


def prune_rest(ph: str, cut_us: int) -> list[tuple[str, tuple[Any, ...]]]:
    """The part of :func:`prune_projections` that needs no per-host values: the hosts with no
    event left, and the closed sessions whose last event was before ``cut_us``."""
    return [("DELETE FROM hosts WHERE events <= 0", ()),
            (f"DELETE FROM sessions WHERE last_us < {ph} AND NOT {_OPEN}", (cut_us,))]  # noqa: S608 - placeholders only; the SQL text is this module's own


def event_insert_columns() -> str:
    """The events columns, comma-separated."""
    return ", ".join(EVENT_COLUMNS)



def open_store(url: str) -> Store:
    """The store at ``url`` (``sqlite:///PATH`` or ``postgresql://…``), created if absent (and
    an older one brought to this pysens's schema).

    Raises :class:`StoreError` with one sentence when the URL is wrong or the store cannot be
    opened.
    """
    scheme = url.partition(":")[0].lower()
    if scheme == "sqlite":
        if not url.startswith("sqlite:///"):
            raise StoreError(f"cannot read the store URL {url!r}: write sqlite:///PATH")
        path = unquote(url[len("sqlite:///"):].split("?", 1)[0])
        if not path:
            raise StoreError(f"the store URL {url!r} names no file: write sqlite:///PATH")
        from .sqlite import SqliteStore

        return SqliteStore(url, path)
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresStore

        return PostgresStore(url)
    raise StoreError(
        f"unknown store URL {redact_url(url)!r}: use sqlite:///PATH or postgresql://user@host/db"
    )
