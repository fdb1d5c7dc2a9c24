"""The journal: every event, once, in order, in SQLite (WAL).

Append is idempotent by event id and assigns ``seq``, the event's position on this host. Cursors
(one per persistent subscriber or forwarder) remember how far each reader has got. The schema
carries a version (``PRAGMA user_version``) and migrations run forward on open.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import count
from pathlib import Path

from ..events import EventError, SensEvent, json_texts
from .reader import OnBad
from .schema import MIGRATIONS, JournalError, default_journal_path
from .window import window_keys

__all__ = ["AppendResult", "Journal"]




def _us(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000 + t.microsecond


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
    """

    def __init__(self, path: str | Path | None = None, *, durable: bool = False,
                 readonly: bool = False) -> None:
        self.path = Path(path) if path is not None else default_journal_path()
        self.readonly = readonly
        if readonly:
            self._open_readonly()
            return
        try:
            if str(self.path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(self.path), check_same_thread=False, isolation_level=None, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._lock = threading.RLock()
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise JournalError(f"cannot open the journal {self.path}: {e}") from None
        except OSError as e:
            raise JournalError(f"cannot open the journal {self.path}: {e.strerror}") from None

    def _open_readonly(self) -> None:
        uri = self.path.absolute().as_uri()
        wal = Path(f"{self.path}-wal")
        self._lock = threading.RLock()
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

    def _migrate(self) -> None:
        with self._lock:
            current = self.version
            if current > len(MIGRATIONS):
                raise JournalError(
                    f"the journal {self.path} has schema version {current}, newer than this "
                    f"pysens knows ({len(MIGRATIONS)}); upgrade pysens"
                )
            for n in range(current, len(MIGRATIONS)):
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in MIGRATIONS[n].split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version={n + 1}")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    @contextlib.contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """Hold the lock; an SQLite failure becomes a JournalError naming the file (a damaged
        page shows up only when a query reaches it, not at open)."""
        with self._lock:
            try:
                yield
            except sqlite3.DatabaseError as e:
                hint = (f" (damaged: `sqlite3 {self.path} .recover` saves what can be read)"
                        if "malformed" in str(e) else "")
                raise JournalError(f"cannot {doing} the journal {self.path}: {e}{hint}") from None

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
        (``with_seqs``) or only the number of new events."""
        ids = [e.id for e in events]
        with self._guard("write to"):
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                (last,) = db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
                known = self._known(ids)
                fresh: dict[str, int] = {}
                todo: list[SensEvent] = []
                for e in events:
                    i = e.id
                    if i in known or i in fresh:
                        continue  # already journaled: not even encoded
                    fresh[i] = last + 1 + len(todo)
                    todo.append(e)
                rows = [(seq, e.id, int(e.time.timestamp()) * 1_000_000 + e.time.microsecond,
                         e.host, str(e.method), e.user_name, e.session_id, body)
                        for seq, e, body in zip(count(last + 1), todo, json_texts(todo))]
                if rows:
                    db.executemany(
                        "INSERT INTO events(seq, id, time_us, host, method, user_name,"
                        " session_id, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        rows,
                    )
                    if history:
                        db.executemany("INSERT OR IGNORE INTO history(seq) VALUES (?)",
                                       [(r[0],) for r in rows])
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # the first failure is the one to tell
                    db.execute("ROLLBACK")
                raise
        if not with_seqs:
            return last, [len(rows)]
        return last, [fresh[i] if i in fresh else known[i] for i in ids]

    def _known(self, ids: list[str]) -> dict[str, int]:
        """id -> seq of those of ``ids`` already journaled (inside the write transaction)."""
        (top,) = self._db.execute("SELECT max(id) FROM events").fetchone()
        if top is None:
            return {}
        # Ids begin with their time: events newer than everything journaled (a live event, a
        # history import in time order) need no lookup at all.
        maybe = [i for i in ids if i <= top]
        found: dict[str, int] = {}
        for n in range(0, len(maybe), 500):
            chunk = maybe[n : n + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self._db.execute(
                f"SELECT id, seq FROM events WHERE id IN ({marks})", chunk  # noqa: S608 - placeholders only; the SQL text is this module's own
            ).fetchall())
        return found

    # -- reading -----------------------------------------------------------------------------

    def get(self, event_id: str) -> SensEvent | None:
        """The journaled event with this id."""
        with self._guard("read"):
            row = self._db.execute(
                "SELECT seq, body FROM events WHERE id = ?", (event_id,)
            ).fetchone()
        return None if row is None else _load(row)

    def rows_after(self, after: int, limit: int) -> list[tuple[int, str, str, str, str]]:
        """``(seq, id, host, method, JSON text)`` of up to ``limit`` events after ``after``, in
        order: what a forwarder ships as it is, without building events (the text has no
        ``seq``; pysens 0.1 journals may hold ``"seq": null``)."""
        with self._guard("read"):
            return self._db.execute(
                "SELECT seq, id, host, method, body FROM events WHERE seq > ? ORDER BY seq "
                "LIMIT ?", (after, limit)).fetchall()

    def last_seq(self) -> int:
        """The highest ``seq`` (0 when empty)."""
        with self._guard("read"):
            return int(self._db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])

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
        clauses, params = self._where(since, until, hosts)
        last = after_seq or 0
        sent = 0
        while True:
            sql = "SELECT seq, body FROM events WHERE " + " AND ".join([*clauses, "seq > ?"])  # noqa: S608 - placeholders only; the SQL text is this module's own
            with self._guard("read"):
                rows = self._db.execute(
                    sql + " ORDER BY seq LIMIT ?", (*params, last, batch)
                ).fetchall()
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

    @staticmethod
    def _where(since: datetime | None, until: datetime | None,
               hosts: Sequence[str]) -> tuple[list[str], list[object]]:
        clauses: list[str] = []
        params: list[object] = []
        if since is not None:
            clauses.append("time_us >= ?")
            params.append(_us(since))
        if until is not None:
            clauses.append("time_us < ?")
            params.append(_us(until))
        if hosts:
            clauses.append(f"host IN ({','.join('?' * len(hosts))})")
            params.extend(hosts)
        return clauses, params

    def hosts(self) -> list[str]:
        """The hosts that have events here, sorted."""
        with self._guard("read"):
            rows = self._db.execute("SELECT DISTINCT host FROM events ORDER BY host").fetchall()
        return [r[0] for r in rows]

    def session_events(
        self, methods: Iterable[str], since: datetime, until: datetime | None = None, *,
        hosts: Sequence[str] = (), on_bad: OnBad | None = None,
    ) -> Iterator[SensEvent]:
        """The events of ``methods`` (in ``seq`` order, on ``hosts`` when given) a timeline of
        the window ``[since, until)`` needs, without decoding the rest of a long journal (see
        :func:`pysens.journal.window.window_keys`)."""
        def select(sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
            with self._guard("read"):
                return self._db.execute(sql, tuple(params)).fetchall()

        kept = window_keys(select, "?", methods, _us(since),
                           _us(until) if until is not None else None, hosts=hosts)
        for n in range(0, len(kept), 500):
            chunk = kept[n:n + 500]
            for row in select(f"SELECT seq, body FROM events WHERE seq IN "  # noqa: S608 - placeholders only; the SQL text is this module's own
                              f"({','.join('?' * len(chunk))}) ORDER BY seq", chunk):
                event = self._load(row, on_bad)  # type: ignore[arg-type]
                if event is not None:
                    yield event

    def _load(self, row: tuple[int, str], on_bad: OnBad | None) -> SensEvent | None:
        try:
            return _load(row)
        except (EventError, ValueError, TypeError) as e:
            message = f"{self.path}: journaled event at seq {row[0]} cannot be read: {e}"
            if on_bad is None:
                raise JournalError(message) from None
            on_bad(message)
            return None

    def mark_history(self, seqs: Iterable[int]) -> None:
        """Record that these journaled events are history (imported), which persistent
        subscriptions are not sent. ``append_many(events, history=True)`` does it in the
        append's own transaction; this is for events journaled before."""
        with self._guard("write to"):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR IGNORE INTO history(seq) VALUES (?)",
                                     [(s,) for s in seqs])
                self._db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise

    # -- cursors -----------------------------------------------------------------------------

    def cursor(self, name: str) -> int:
        """The ``seq`` the reader ``name`` has finished with (0: nothing yet)."""
        with self._guard("read"):
            row = self._db.execute("SELECT seq FROM cursors WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

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


def _load(row: tuple[int, str]) -> SensEvent:
    return SensEvent.from_stored(json.loads(row[1]), row[0])
