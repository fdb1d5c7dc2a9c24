"""The central store in one SQLite file (WAL): for a small fleet, tests, and a look at home."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..projection import fold_hosts, fold_sessions, row_values
from .base import (
    Gap,
    Rejected,
    Store,
    StoredEvent,
    StoreError,
    event_insert_columns,
    host_upsert,
    now_us,
    prune_projections,
    session_upsert,
)
from .migrate import backfill, meta_version
from .schema import EVENT_COLUMNS, LATEST, sqlite_tables

__all__ = ["SqliteStore"]

T = TypeVar("T")

_INSERT_EVENTS = (f"INSERT OR IGNORE INTO events ({event_insert_columns()}) VALUES "  # noqa: S608 - placeholders only; the SQL text is this module's own
                  f"({', '.join('?' * len(EVENT_COLUMNS))})")


class SqliteStore(Store):
    """The store in one SQLite file (WAL)."""

    _by_id = True

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
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot open the store {path}: {e}") from None
        except OSError as e:
            raise StoreError(f"cannot open the store {path}: {e.strerror}") from None

    def _migrate(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            version = meta_version(lambda sql: db.execute(sql).fetchall())
            if version == 1:
                # pysens 0.1's events table: the new columns, then the projections of what it
                # holds (from the bodies).
                for column, kind in (("connection", "TEXT"), ("connection_type", "INTEGER"),
                                     ("destination", "TEXT"), ("battery_percent", "INTEGER")):
                    db.execute(f"ALTER TABLE events ADD COLUMN {column} {kind}")
            # One statement at a time: executescript would commit the transaction first.
            for statement in sqlite_tables().split(";"):
                if statement.strip():
                    db.execute(statement)
            if version == 1:
                backfill(self._backfill_rows, self._write_projections)
            if version < LATEST:
                db.execute("INSERT OR REPLACE INTO pysens_meta (key, value) VALUES "
                           "('schema', ?)", (str(LATEST),))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _backfill_rows(self, after: int, limit: int) -> list[tuple[Any, ...]]:
        return self._db.execute(
            "SELECT rowid, body, subject, published_us FROM events WHERE rowid > ? ORDER BY"
            " rowid LIMIT ?", (after, limit)).fetchall()

    def _write_projections(self, events: Sequence[StoredEvent]) -> None:
        db = self._db
        sessions, hosts = fold_sessions(events), fold_hosts(events)
        db.executemany(session_upsert("?"), [row_values(r) for r in sessions.values()])
        db.executemany(host_upsert("?"), [(h.host, h.first_us, h.last_us, h.events)
                                          for h in hosts.values()])
        for e in events:  # the columns 0.1 did not have
            if e.connection is not None or e.destination is not None \
                    or e.battery_percent is not None:
                db.execute("UPDATE events SET connection = ?, connection_type = ?,"
                           " destination = ?, battery_percent = ? WHERE id = ?",
                           (e.connection, e.connection_type, e.destination, e.battery_percent,
                            e.id))

    def commit(self, events: Sequence[StoredEvent], rejected: Sequence[Rejected] = ()) -> int:
        """See :meth:`Store.commit`."""
        stored = now_us()
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                known = self._known([e.id for e in events])
                new: list[StoredEvent] = []
                seen: set[str] = set()
                for e in events:
                    if e.id not in known and e.id not in seen:
                        seen.add(e.id)
                        new.append(e)
                db.executemany(_INSERT_EVENTS, [e.row(stored) for e in new])
                sessions, hosts = fold_sessions(new), fold_hosts(new)
                db.executemany(session_upsert("?"),
                               [row_values(r) for r in sessions.values()])
                db.executemany(host_upsert("?"), [(h.host, h.first_us, h.last_us, h.events)
                                                  for h in hosts.values()])
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
        return len(new)

    def _known(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for n in range(0, len(ids), 500):
            chunk = ids[n:n + 500]
            found.update(r[0] for r in self._db.execute(
                f"SELECT id FROM events WHERE id IN ({','.join('?' * len(chunk))})", chunk))  # noqa: S608 - placeholders only; the SQL text is this module's own
        return found

    def _write(self, sql: str, params: Sequence[Any]) -> int:
        with self._lock:
            try:
                return self._db.execute(sql, tuple(params)).rowcount
            except sqlite3.Error as e:
                raise StoreError(f"cannot write to the store {self.path}: {e}") from None

    def record_gap(self, gap: Gap) -> bool:
        """See :meth:`Store.record_gap`."""
        return self._write(
            "INSERT OR IGNORE INTO gaps (stream, first_seq, last_seq, lost, reason,"
            " detected_us) VALUES (?, ?, ?, ?, ?, ?)",
            (gap.stream, gap.first_seq, gap.last_seq, gap.lost, gap.reason,
             gap.detected_us)) > 0

    def expire(self, before_us: int) -> int:
        """See :meth:`Store.expire`: deleted in small batches (each with its hosts' counts),
        so a commit waits little."""
        gone: dict[str, int] = {}
        while True:
            with self._lock:
                rows = self._in_transaction(self._expire_batch, before_us)
            for host in rows:
                gone[host] = gone.get(host, 0) + 1
            if len(rows) < 5000:
                break
        if gone:
            def prune() -> None:
                for sql, params in prune_projections("?", before_us, gone, counted=True):
                    self._db.executemany(sql, params)

            with self._lock:
                self._in_transaction(prune)
        return sum(gone.values())

    def _expire_batch(self, before_us: int) -> list[str]:
        rows = self._db.execute("SELECT rowid, host FROM events WHERE time_us < ? LIMIT 5000",
                                (before_us,)).fetchall()
        self._db.executemany("DELETE FROM events WHERE rowid = ?", [(r[0],) for r in rows])
        counts: dict[str, int] = {}
        for _, host in rows:
            counts[host] = counts.get(host, 0) + 1
        self._db.executemany("UPDATE hosts SET events = events - ? WHERE host = ?",
                             [(n, h) for h, n in counts.items()])
        return [h for _, h in rows]

    def _in_transaction(self, work: Callable[..., T], *args: Any) -> T:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            out = work(*args)
            db.execute("COMMIT")
            return out
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):  # a closed database cannot even say
                if db.in_transaction:
                    db.execute("ROLLBACK")
            raise StoreError(f"cannot expire events in {self.path}: {e}") from None

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

