"""The journal: every event, once, in order, in SQLite (WAL).

Append is idempotent by event id and assigns ``seq``, the event's position on this host. Cursors
(one per persistent subscriber or forwarder) remember how far each reader has got. The schema
carries a version (``PRAGMA user_version``) and migrations run forward on open.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..events import EventError, SensEvent
from .migrate import CONVERSIONS
from .reader import OnBad
from .rows import COLUMNS, FLAG_HISTORY, Row, RowCodec, id_key, id_text, keys_not_after, time_us
from .rowtext import RowText
from .schema import LAST_SEQ, MIGRATIONS, JournalError, JournalFull, default_journal_path
from .window import window_keys

__all__ = ["AppendResult", "Journal"]

log = logging.getLogger("pysens.journal")

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM events"  # noqa: S608 - the SQL text is this module's own
_INSERT = (f"INSERT INTO events({', '.join(COLUMNS)}) VALUES "  # noqa: S608 - placeholders only; the SQL text is this module's own
           f"({', '.join('?' * len(COLUMNS))})")
# The -wal file is cut back to this after a checkpoint (else it keeps its largest size: a
# burst or a vacuum would leave it big on a full disk).
_WAL_LIMIT = 16 * 1024 * 1024


# Free space above which a journal that found its disk full writes as usual again.
_ROOMY = 4 * _WAL_LIMIT


def _free_bytes(path: Path) -> int:
    """Free bytes on the journal's file system (unknown: plenty)."""
    try:
        st = os.statvfs(path.parent)
    except (OSError, AttributeError):  # no statvfs on Windows
        return 1 << 62
    return st.f_bavail * st.f_frsize


def _us(t: datetime) -> int:
    return time_us(t)


def full_disk(e: sqlite3.Error) -> bool:
    """Whether an SQLite error says the disk (or the database's size limit) is full."""
    return getattr(e, "sqlite_errorcode", None) == 13 or "disk is full" in str(e)  # SQLITE_FULL


@dataclass(frozen=True, slots=True)
class AppendResult:
    """An appended event (with its ``seq``) and whether it was new (False: already there)."""

    event: SensEvent
    inserted: bool


class Journal:
    """A journal file. Thread-safe: one connection guarded by a lock.

    ``durable=True`` makes every commit reach the disk before returning (``synchronous=FULL``);
    the default ``NORMAL`` in WAL mode survives a process crash (kill -9) without an fsync per
    commit, and loses at most the last commits on power loss.

    ``readonly=True`` opens an existing journal for reading only, as someone who may read the
    file but not write beside it (an admin reading the daemon's journal); writes then fail
    with a :class:`JournalError`.

    A write that finds the disk full raises :class:`JournalFull` and stores nothing of itself;
    what was committed before stays, and writes work again once there is room.
    """

    def __init__(self, path: str | Path | None = None, *, durable: bool = False,
                 readonly: bool = False) -> None:
        self.path = Path(path) if path is not None else default_journal_path()
        self.readonly = readonly
        self._codec = RowCodec()
        self._text = RowText(self._codec)
        self._tight = False  # the disk has been full: keep the -wal file small
        self._lock = threading.RLock()
        if readonly:
            self._open_readonly()
            return
        try:
            if str(self.path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(self.path), check_same_thread=False, isolation_level=None, timeout=30
            )
            # Before the first table exists (a new file; else it changes nothing): freed pages
            # can then be given back to the file system a few at a time (retention).
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._db.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT}")
            converted = self._migrate()
            self._learn()
        except sqlite3.DatabaseError as e:
            raise JournalError(f"cannot open the journal {self.path}: {e}{self._hint(e)}"
                               ) from None
        except OSError as e:
            raise JournalError(f"cannot open the journal {self.path}: {e.strerror}") from None
        if converted:
            self._compact_after_conversion()

    def _open_readonly(self) -> None:
        uri = self.path.absolute().as_uri()
        wal = Path(f"{self.path}-wal")
        try:
            if not self.path.is_file():
                raise JournalError(f"there is no journal at {self.path}")
            try:
                self._db = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False,
                                           isolation_level=None, timeout=30)
                version = self.version
            except sqlite3.OperationalError:
                # A WAL database wants its -shm writable, or creatable, even to read. With no
                # -wal file there is nothing beyond the main file to miss: read it as it is.
                if wal.exists():
                    raise
                self._db = sqlite3.connect(f"{uri}?immutable=1", uri=True,
                                           check_same_thread=False, isolation_level=None)
                version = self.version
            if version == len(MIGRATIONS):
                self._learn()
        except sqlite3.DatabaseError as e:
            raise JournalError(f"cannot open the journal {self.path} for reading: {e}") from None
        if version != len(MIGRATIONS):
            self._db.close()
            raise JournalError(
                f"the journal {self.path} has schema version {version} and this pysens reads "
                f"version {len(MIGRATIONS)}: open it once as its owner (or upgrade pysens)")

    # -- schema ------------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """The schema version of the open file."""
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> bool:
        """Run the migrations forward; whether existing events were converted."""
        with self._lock:
            current = self.version
            if current > len(MIGRATIONS):
                raise JournalError(
                    f"the journal {self.path} has schema version {current}, newer than this "
                    f"pysens knows ({len(MIGRATIONS)}); upgrade pysens"
                )
            converted = False
            for n in range(current, len(MIGRATIONS)):
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in MIGRATIONS[n].split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                    conversion = CONVERSIONS.get(n)
                    if conversion is not None:
                        if n == current and current > 0:
                            log.warning("converting the journal %s to schema version %d",
                                        self.path, n + 1)
                            converted = True
                        conversion(self._db)
                    self._db.execute(f"PRAGMA user_version={n + 1}")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            return converted

    def _compact_after_conversion(self) -> None:
        """Give the space the old format took back to the file system (VACUUM, which also
        turns on incremental vacuuming for retention). Not needed for anything else: on
        failure (too little room for the copy) the journal works as it is."""
        try:
            with self._lock:
                self._db.execute("VACUUM")
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.DatabaseError as e:
            log.warning("the journal %s was converted but not compacted (%s); it works as it "
                        "is, `sens journal vacuum` compacts it later", self.path, e)

    def _learn(self) -> None:
        """Read the names and shapes beyond those known (another process may add some)."""
        names, shapes = self._codec.known
        db = self._db
        self._codec.learn(
            db.execute("SELECT code, text FROM names WHERE code > ?", (names,)).fetchall(),
            db.execute("SELECT code, keys FROM shapes WHERE code > ?", (shapes,)).fetchall())

    @contextlib.contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """Hold the lock; an SQLite failure becomes a JournalError naming the file (a damaged
        page shows up only when a query reaches it, not at open), JournalFull for a full disk."""
        with self._lock:
            try:
                yield
            except sqlite3.DatabaseError as e:
                if full_disk(e):
                    raise JournalFull(f"cannot {doing} the journal {self.path}: the disk is "
                                      "full") from None
                raise JournalError(f"cannot {doing} the journal {self.path}: {e}"
                                   f"{self._hint(e)}") from None

    def _hint(self, e: sqlite3.Error) -> str:
        """What to do about a damaged file (nothing to add for other errors)."""
        if "malformed" not in str(e) and "not a database" not in str(e):
            return ""
        return (f" (damaged: `sqlite3 {self.path} .recover | sqlite3 {self.path}.recovered` "
                "saves what can be read)")

    def quick_check(self, limit: int = 3) -> list[str]:
        """SQLite's quick check of every page (not the indexes): [] when sound, else what it
        found (at most ``limit`` lines)."""
        try:
            with self._lock:
                found = [" ".join(str(r[0]).split())
                         for r in self._db.execute(f"PRAGMA quick_check({limit})")]
        except sqlite3.DatabaseError as e:
            return [str(e)]
        return [] if found == ["ok"] else found

    # -- writing -----------------------------------------------------------------------------

    def append(self, event: SensEvent) -> AppendResult:
        """Add ``event`` unless its id is there already; either way, the stored event."""
        return self.append_many([event])[0]

    def append_many(
        self, events: Sequence[SensEvent], *, history: bool = False
    ) -> list[AppendResult]:
        """Add many events in one transaction (one commit, one fsync at most).

        ``history``: the new ones are imported history, which persistent subscriptions are not
        sent — marked in the same transaction, so no delivery can see them unmarked."""
        last, seqs = self._append(events, history)
        out: list[AppendResult] = []
        seen: set[str] = set()
        for e, seq in zip(events, seqs, strict=True):
            new = seq > last and e.id not in seen
            seen.add(e.id)
            out.append(AppendResult(e.with_seq(seq), new))
        return out

    def append_count(self, events: Sequence[SensEvent], *, history: bool = False) -> int:
        """:meth:`append_many` for a caller that needs only how many of ``events`` were new
        (a bulk import): the stored copies with their ``seq`` are not built."""
        return self._append(events, history, with_seqs=False)[1][0]

    def _append(
        self, events: Sequence[SensEvent], history: bool, with_seqs: bool = True
    ) -> tuple[int, list[int]]:
        """Insert the events whose ids are new; the last seq before, and each event's seq
        (``with_seqs``) or only the number of new events. On a full disk, the -wal file is
        folded into the journal and cut back (it holds many copies of the same pages), and
        the write tried once more."""
        if self._tight:
            self._fold_wal()
        try:
            done = self._append_once(events, history, with_seqs)
        except JournalFull:
            # Until the disk has room to spare, the -wal file is folded in after every commit
            # (not every thousand pages): on a nearly full disk it would take the room.
            self._tight = True
            self._fold_wal()
            done = self._append_once(events, history, with_seqs)
        if self._tight:
            self._fold_wal()
            self._tight = _free_bytes(self.path) < _ROOMY
        return done

    def _fold_wal(self) -> None:
        """Copy the -wal file into the journal and cut it to nothing, if it can be done now
        (the disk may have no room even for that: then it stays as it is)."""
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _append_once(
        self, events: Sequence[SensEvent], history: bool, with_seqs: bool
    ) -> tuple[int, list[int]]:
        keys = [id_key(e.id) for e in events]
        codec = self._codec
        with self._guard("write to"):
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                self._learn()
                (last,) = db.execute(LAST_SEQ).fetchone()
                known = self._known(keys)
                fresh: dict[bytes | str, int] = {}
                todo: list[SensEvent] = []
                for e, k in zip(events, keys, strict=True):
                    if k in known or k in fresh:
                        continue  # already journaled: not even encoded
                    fresh[k] = last + 1 + len(todo)
                    todo.append(e)
                rows = codec.encode(todo, last + 1, history, list(fresh))  # fresh: todo's keys
                if codec.new_names:
                    db.executemany("INSERT INTO names(code, text) VALUES (?, ?)",
                                   codec.new_names)
                if codec.new_shapes:
                    db.executemany("INSERT INTO shapes(code, keys) VALUES (?, ?)",
                                   codec.new_shapes)
                if rows:
                    db.executemany(_INSERT, rows)
                db.execute("COMMIT")
                codec.committed()
            except BaseException:
                codec.forget()
                with contextlib.suppress(sqlite3.Error):  # the first failure is the one to tell
                    db.execute("ROLLBACK")
                raise
        if not with_seqs:
            return last, [len(rows)]
        return last, [fresh[k] if k in fresh else known[k] for k in keys]

    def _known(self, keys: list[bytes | str]) -> dict[bytes | str, int]:
        """id key -> seq of those of ``keys`` already journaled (inside the write
        transaction)."""
        (top,) = self._db.execute("SELECT max(id) FROM events").fetchone()
        if top is None:
            return {}
        # Ids begin with their time: events newer than everything journaled (a live event, a
        # history import in time order) need no lookup at all.
        maybe = keys_not_after(keys, top)
        found: dict[bytes | str, int] = {}
        for n in range(0, len(maybe), 500):
            chunk = maybe[n : n + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self._db.execute(
                f"SELECT id, seq FROM events WHERE id IN ({marks})", chunk  # noqa: S608 - placeholders only; the SQL text is this module's own
            ).fetchall())
        return found

    def mark_history(self, seqs: Iterable[int]) -> None:
        """Record that these journaled events are history (imported), which persistent
        subscriptions are not sent. ``append_many(events, history=True)`` does it in the
        append's own transaction; this is for events journaled before."""
        with self._guard("write to"):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("UPDATE events SET flags = flags | ? WHERE seq = ?",
                                     [(FLAG_HISTORY, s) for s in seqs])
                self._db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise

    # -- reading -----------------------------------------------------------------------------

    def _shape_text(self, code: int) -> str | None:
        row = self._db.execute("SELECT keys FROM shapes WHERE code = ?", (code,)).fetchone()
        return None if row is None else str(row[0])

    def _decode(self, row: Row, seq: bool = True) -> SensEvent:
        """The event of a row; names added by another process since are read first."""
        try:
            return self._codec.decode(row, self._shape_text, seq)
        except KeyError:
            with self._lock:
                self._learn()
            return self._codec.decode(row, self._shape_text, seq)

    def _load(self, row: Row, on_bad: OnBad | None, seq: bool = True) -> SensEvent | None:
        try:
            return self._decode(row, seq)
        except (EventError, ValueError, TypeError, KeyError, OverflowError) as e:
            why = f"unknown code {e}" if isinstance(e, KeyError) else str(e)
            message = f"{self.path}: journaled event at seq {row[0]} cannot be read: {why}"
            if on_bad is None:
                raise JournalError(message) from None
            on_bad(message)
            return None

    def get(self, event_id: str) -> SensEvent | None:
        """The journaled event with this id."""
        with self._guard("read"):
            row = self._db.execute(_SELECT + " WHERE id = ?", (id_key(event_id),)).fetchone()
        return None if row is None else self._load(row, None)

    def rows_after(self, after: int, limit: int) -> list[tuple[int, str, str, str, str]]:
        """``(seq, id, host, method, JSON text)`` of up to ``limit`` events after ``after``, in
        order: what a forwarder ships (the text has no ``seq``). A row that no longer reads as
        an event comes with an empty text (the forwarder sets it aside, naming it)."""
        with self._guard("read"):
            rows = self._db.execute(_SELECT + " WHERE seq > ? ORDER BY seq LIMIT ?",
                                    (after, limit)).fetchall()
        out: list[tuple[int, str, str, str, str]] = []
        text = self._text.text
        for row in rows:
            try:
                try:
                    out.append((row[0], *text(row, self._shape_text)))
                except KeyError:  # a name another process added since
                    with self._lock:
                        self._learn()
                    out.append((row[0], *text(row, self._shape_text)))
            except (EventError, ValueError, TypeError, KeyError, OverflowError):
                key = row[1]
                out.append((row[0], key if isinstance(key, str) else id_text(bytes(key)), "?",
                            "?", ""))
        return out

    def last_seq(self) -> int:
        """The highest ``seq`` (0 when empty)."""
        with self._guard("read"):
            return int(self._db.execute(LAST_SEQ).fetchone()[0])

    def count(self) -> int:
        """How many events the journal holds."""
        with self._guard("read"):
            return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])

    def query(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        hosts: Sequence[str] = (),
        where: Callable[[SensEvent], bool] | None = None,
        limit: int | None = None,
        on_bad: OnBad | None = None,
        after_seq: int | None = None,
        batch: int = 1000,
    ) -> Iterator[SensEvent]:
        """Events in ``seq`` order: time in ``[since, until)``, host among ``hosts`` (all when
        empty), ``seq > after_seq``, and ``where(event)`` true (a compiled filter). Read in
        batches, so a huge journal streams. A row that no longer reads as an event is told to
        ``on_bad`` and skipped (without ``on_bad``: a :class:`JournalError`)."""
        where_sql = self._where(since, until, hosts)
        if where_sql is None:
            return
        clauses, params = where_sql
        last = after_seq or 0
        sent = 0
        sql = _SELECT + " WHERE " + " AND ".join([*clauses, "seq > ?"]) + " ORDER BY seq LIMIT ?"
        while True:
            with self._guard("read"):
                rows = self._db.execute(sql, (*params, last, batch)).fetchall()
            for row in rows:
                last = row[0]
                event = self._load(row, on_bad)
                if event is None:
                    continue
                if where is None or where(event):
                    yield event
                    sent += 1
                    if limit is not None and sent >= limit:
                        return
            if len(rows) < batch:
                return

    def _where(self, since: datetime | None, until: datetime | None,
               hosts: Sequence[str]) -> tuple[list[str], list[object]] | None:
        """The SQL conditions of a query; None when it can match nothing (no such host)."""
        clauses: list[str] = []
        params: list[object] = []
        if since is not None:
            clauses.append("time_us >= ?")
            params.append(_us(since))
        if until is not None:
            clauses.append("time_us < ?")
            params.append(_us(until))
        if hosts:
            with self._guard("read"):
                self._learn()
            codes = [c for c in (self._codec.names.get(h) for h in hosts) if c is not None]
            if not codes:
                return None
            clauses.append(f"host IN ({','.join('?' * len(codes))})")
            params.extend(codes)
        return clauses, params

    def hosts(self) -> list[str]:
        """The hosts that have events here, sorted."""
        with self._guard("read"):
            rows = self._db.execute(
                "SELECT text FROM names WHERE code IN (SELECT DISTINCT host FROM events) "
                "ORDER BY text").fetchall()
        return [r[0] for r in rows]

    def session_events(
        self, methods: Iterable[str], since: datetime, until: datetime | None = None, *,
        hosts: Sequence[str] = (), on_bad: OnBad | None = None,
    ) -> Iterator[SensEvent]:
        """The events of ``methods`` (in ``seq`` order, on ``hosts`` when given) a timeline of
        the window ``[since, until)`` needs, without decoding the rest of a long journal (see
        :func:`pysens.journal.window.window_keys`)."""
        def select(sql: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
            with self._guard("read"):
                return self._db.execute(sql, tuple(params)).fetchall()

        kept = window_keys(select, "?", methods, _us(since),
                           _us(until) if until is not None else None, hosts=hosts,
                           table="event_keys")
        for n in range(0, len(kept), 500):
            chunk = kept[n:n + 500]
            for row in select(f"{_SELECT} WHERE seq IN "
                              f"({','.join('?' * len(chunk))}) ORDER BY seq", chunk):
                event = self._load(row, on_bad)
                if event is not None:
                    yield event

    # -- cursors -----------------------------------------------------------------------------

    def cursor(self, name: str) -> int:
        """The ``seq`` the reader ``name`` has finished with (0: nothing yet)."""
        with self._guard("read"):
            row = self._db.execute("SELECT seq FROM cursors WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

    def cursors(self) -> dict[str, tuple[int, int, str | None]]:
        """Every reader: name -> (its seq, how many events retention deleted before it had
        them, and when it last did)."""
        with self._guard("read"):
            rows = self._db.execute("SELECT name, seq, lost, lost_at FROM cursors").fetchall()
        return {r[0]: (int(r[1]), int(r[2]), r[3]) for r in rows}

    def set_cursor(self, name: str, seq: int) -> None:
        """Record that ``name`` has finished with everything up to ``seq``."""
        with self._guard("write to"):
            self._db.execute(
                "INSERT INTO cursors(name, seq) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET seq = excluded.seq",
                (name, seq),
            )

    def delete_cursor(self, name: str) -> None:
        """Forget the reader ``name``."""
        with self._guard("write to"):
            self._db.execute("DELETE FROM cursors WHERE name = ?", (name,))

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
