"""The fleet's central store: every host's events, once each, in SQLite or PostgreSQL.

The collector (:mod:`pysens.fleet.collector`) writes here; ``sens history|sessions|timeline
--store URL`` read from here. A URL picks the back end:

* ``sqlite:///PATH`` (``sqlite:////abs/path`` or ``sqlite:///rel/path``), WAL mode;
* ``postgresql://user@host:port/db`` (psycopg 3, imported only here and only then; the schema
  can be chosen with ``?options=-csearch_path%3Dname``).

Insertion is idempotent by event id (``ON CONFLICT DO NOTHING``), so a message delivered twice
(a collector killed between its commit and its ack) is stored once. Messages on the stream that
are not pysens events go to a ``rejected`` table (subject, reason, raw bytes), keyed by their
stream position so a redelivered one is kept once too.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from ..events import EventError, SensEvent
from ..journal.window import window_keys
from .urls import redact_url

__all__ = [
    "Rejected",
    "Store",
    "StoreError",
    "StoredEvent",
    "open_store",
]


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


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message on the stream that is not a pysens event, kept aside with the reason."""

    stream: str
    stream_seq: int
    subject: str
    reason: str
    raw: bytes


def now_us() -> int:
    """The wall clock in microseconds since the epoch."""
    return time.time_ns() // 1000


def time_us(t: datetime) -> int:
    """A datetime in microseconds since the epoch (exact, no float rounding)."""
    return int(t.timestamp()) * 1_000_000 + t.microsecond


# One schema, two dialects: SQLite's INTEGER / BLOB are PostgreSQL's BIGINT / BYTEA.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    time_us      {INT} NOT NULL,
    method       TEXT NOT NULL,
    user_name    TEXT,
    session_id   TEXT,
    seq          {INT},
    subject      TEXT NOT NULL,
    body         TEXT NOT NULL,
    published_us {INT},
    stored_us    {INT} NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events(time_us);
CREATE INDEX IF NOT EXISTS events_host ON events(host, time_us);
CREATE TABLE IF NOT EXISTS rejected (
    stream      TEXT NOT NULL,
    stream_seq  {INT} NOT NULL,
    subject     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    raw         {BLOB} NOT NULL,
    received_us {INT} NOT NULL,
    PRIMARY KEY (stream, stream_seq)
);
"""
_SQLITE_SCHEMA = _SCHEMA.format(INT="INTEGER", BLOB="BLOB")
_PG_SCHEMA = _SCHEMA.format(INT="BIGINT", BLOB="BYTEA")

_COLUMNS = "id, host, time_us, method, user_name, session_id, seq, subject, body, published_us"
# The order events are read in: by time, and one host's events at one instant in its journal's
# order (a Logoff and the Logon it made way for mean something else the other way round).
_ORDER = "time_us, host, coalesce(seq, 0), id"


class Store:
    """A central store (use :func:`open_store`). Thread-safe: one connection behind a lock."""

    url: str

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()

    # -- writing -----------------------------------------------------------------------------

    def commit(self, events: Sequence[StoredEvent], rejected: Sequence[Rejected] = ()) -> int:
        """Store ``events`` (those already there are left alone) and ``rejected`` in one
        transaction; the number of events that were new."""
        raise NotImplementedError

    # -- reading -----------------------------------------------------------------------------

    def _select(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _ph(self) -> str:
        return "?"

    def count(self, host: str | None = None) -> int:
        """How many events the store holds (on ``host``, when given)."""
        if host is None:
            return int(self._select("SELECT count(*) FROM events", ())[0][0])
        p = self._ph()
        return int(self._select(f"SELECT count(*) FROM events WHERE host = {p}", (host,))[0][0])  # noqa: S608 - placeholders only; the SQL text is this module's own

    def ids(self) -> list[str]:
        """Every stored event id (tests and audits: compare against the journals)."""
        return [r[0] for r in self._select("SELECT id FROM events ORDER BY id", ())]

    def hosts(self) -> list[str]:
        """The hosts that have events here, sorted."""
        return [r[0] for r in self._select("SELECT DISTINCT host FROM events ORDER BY host", ())]

    def rejected(self) -> list[Rejected]:
        """The messages kept aside, in stream order."""
        rows = self._select(
            "SELECT stream, stream_seq, subject, reason, raw FROM rejected"
            " ORDER BY stream, stream_seq", (),
        )
        return [Rejected(r[0], int(r[1]), r[2], r[3], bytes(r[4])) for r in rows]

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
        ``[since, until)``, host among
        ``hosts`` (all when empty), and ``where(event)`` true. A stored body that no longer
        reads as an event is reported to ``on_bad`` (one sentence naming its id) and skipped."""
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
        # Keyset pagination on the order (_ORDER): a huge store streams in batches.
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
            return SensEvent.from_json(obj)
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
        kept = window_keys(self._select, p, methods, time_us(since),
                           time_us(until) if until is not None else None, hosts=hosts,
                           key="id", order=_ORDER)
        for n in range(0, len(kept), 500):
            chunk = kept[n:n + 500]
            found = self._select(
                f"SELECT id, seq, body FROM events WHERE id IN ({', '.join([p] * len(chunk))})"  # noqa: S608 - placeholders only; the SQL text is this module's own
                f" ORDER BY {_ORDER}", chunk)
            for event_id, seq, body in found:
                event = self._event(event_id, seq, body, on_bad)
                if event is not None:
                    yield event

    def newer(self, mark: int | None, limit: int = 5000) -> tuple[list[SensEvent], int]:
        """The events stored since ``mark`` (what an earlier call returned; None: from now on,
        none yet) and the mark to pass next time; for a live view that follows the store.

        Here (PostgreSQL) the mark is an event time: the events of the minute before it are
        read again (the caller drops the ids it has), and one stored late with an older time
        is missed. :class:`SqliteStore` follows the insertion order instead and misses none."""
        p = self._ph()
        if mark is None:
            row = self._select("SELECT coalesce(max(time_us), 0) FROM events", ())
            return [], int(row[0][0])
        rows = self._select(f"SELECT time_us, id, seq, body FROM events WHERE time_us >= {p}"  # noqa: S608 - placeholders only; the SQL text is this module's own
                            f" ORDER BY {_ORDER} LIMIT {int(limit)}", (mark - 60_000_000,))
        out = [e for _, i, q, b in rows if (e := self._event(i, q, b, None)) is not None]
        return out, max([mark, *(int(r[0]) for r in rows)])

    def close(self) -> None:
        """Close the connection."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SqliteStore(Store):
    """The store in one SQLite file (WAL)."""

    def __init__(self, url: str, path: str) -> None:
        super().__init__(url)
        self.path = path
        try:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SQLITE_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot open the store {path}: {e}") from None
        except OSError as e:
            raise StoreError(f"cannot open the store {path}: {e.strerror}") from None

    def commit(self, events: Sequence[StoredEvent], rejected: Sequence[Rejected] = ()) -> int:
        """See :meth:`Store.commit`."""
        stored = now_us()
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                before = db.total_changes
                db.executemany(
                    f"INSERT OR IGNORE INTO events({_COLUMNS}, stored_us)"  # noqa: S608 - placeholders only; the SQL text is this module's own
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(e.id, e.host, e.time_us, e.method, e.user_name, e.session_id, e.seq,
                      e.subject, e.body, e.published_us, stored) for e in events],
                )
                inserted = db.total_changes - before
                db.executemany(
                    "INSERT OR IGNORE INTO rejected(stream, stream_seq, subject, reason, raw,"
                    " received_us) VALUES (?, ?, ?, ?, ?, ?)",
                    [(r.stream, r.stream_seq, r.subject, r.reason, r.raw, stored)
                     for r in rejected],
                )
                db.execute("COMMIT")
            except sqlite3.Error as e:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise StoreError(f"cannot write to the store {self.path}: {e}") from None
        return inserted

    def newer(self, mark: int | None, limit: int = 5000) -> tuple[list[SensEvent], int]:
        """See :meth:`Store.newer`; here the mark is the last row read (insertion order)."""
        if mark is None:
            return [], int(self._select("SELECT coalesce(max(rowid), 0) FROM events", ())[0][0])
        rows = self._select("SELECT rowid, id, seq, body FROM events WHERE rowid > ?"  # noqa: S608 - placeholders only; the SQL text is this module's own
                            f" ORDER BY rowid LIMIT {int(limit)}", (mark,))
        out = [e for _, i, q, b in rows if (e := self._event(i, q, b, None)) is not None]
        return out, int(rows[-1][0]) if rows else mark

    def _select(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as e:
                raise StoreError(f"cannot read the store {self.path}: {e}") from None

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()


class PostgresStore(Store):
    """The store in a PostgreSQL database (psycopg 3)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        try:
            import psycopg
        except ImportError:
            raise StoreError(
                "a postgresql:// store needs psycopg 3: pip install 'pysens[postgres]'"
            ) from None
        self._psycopg = psycopg
        try:
            self._db = psycopg.connect(url, autocommit=False, connect_timeout=10)
            with self._db.transaction():
                # Two collectors starting at once must not race on CREATE TABLE.
                self._db.execute("SELECT pg_advisory_xact_lock(7365736)")
                self._db.execute(_PG_SCHEMA)
                # This session's staging table for commit(): COPY into it, then one INSERT …
                # ON CONFLICT into events. Rows vanish at each commit.
                self._db.execute("CREATE TEMP TABLE IF NOT EXISTS pysens_incoming"
                                 " (LIKE events) ON COMMIT DELETE ROWS")
        except psycopg.Error as e:
            raise StoreError(f"cannot open the store {redact_url(url)}: {_one_line(e)}") from None

    def _ph(self) -> str:
        return "%s"

    def commit(self, events: Sequence[StoredEvent], rejected: Sequence[Rejected] = ()) -> int:
        """See :meth:`Store.commit`."""
        stored = now_us()
        with self._lock:
            try:
                with self._db.transaction():
                    inserted = 0
                    if events:
                        # COPY (rows formatted in psycopg's C code) then one INSERT: an order
                        # of magnitude less client CPU than binding arrays for unnest().
                        cur = self._db.cursor()
                        with cur.copy(f"COPY pysens_incoming ({_COLUMNS}, stored_us)"
                                      " FROM STDIN") as copy:
                            write = copy.write_row
                            for e in events:
                                write((e.id, e.host, e.time_us, e.method, e.user_name,
                                       e.session_id, e.seq, e.subject, e.body, e.published_us,
                                       stored))
                        cur.execute(
                            f"INSERT INTO events({_COLUMNS}, stored_us)"  # noqa: S608 - placeholders only; the SQL text is this module's own
                            f" SELECT {_COLUMNS}, stored_us FROM pysens_incoming"
                            " ON CONFLICT (id) DO NOTHING"
                        )
                        inserted = max(cur.rowcount, 0)
                    for r in rejected:
                        self._db.execute(
                            "INSERT INTO rejected(stream, stream_seq, subject, reason, raw,"
                            " received_us) VALUES (%s, %s, %s, %s, %s, %s)"
                            " ON CONFLICT DO NOTHING",
                            (r.stream, r.stream_seq, r.subject, r.reason, r.raw, stored),
                        )
            except self._psycopg.Error as e:
                raise StoreError(
                    f"cannot write to the store {redact_url(self.url)}: {_one_line(e)}"
                ) from None
        return inserted

    def _select(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                with self._db.transaction():
                    return self._db.execute(sql, tuple(params)).fetchall()
            except self._psycopg.Error as e:
                raise StoreError(
                    f"cannot read the store {redact_url(self.url)}: {_one_line(e)}"
                ) from None

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def open_store(url: str) -> Store:
    """The store at ``url`` (``sqlite:///PATH`` or ``postgresql://…``), created if absent.

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
        return SqliteStore(url, path)
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(url)
    raise StoreError(
        f"unknown store URL {redact_url(url)!r}: use sqlite:///PATH or postgresql://user@host/db"
    )
