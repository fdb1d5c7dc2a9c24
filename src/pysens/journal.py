"""The journal: every event, once, in order, in SQLite (WAL).

Append is idempotent by event id and assigns ``seq``, the event's position on this host. Cursors
(one per persistent subscriber or forwarder) remember how far each reader has got. The schema
carries a version (``PRAGMA user_version``) and migrations run forward on open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import count
from pathlib import Path

from .events import SensEvent, json_texts

__all__ = [
    "MIGRATIONS",
    "AppendResult",
    "Journal",
    "JournalError",
    "JournalWriter",
    "default_journal_path",
]


class JournalError(RuntimeError):
    """The journal cannot be opened or written; the message names the file."""


#: Forward migrations; entry ``n`` brings a database from version ``n`` to ``n + 1``.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE events (
        seq        INTEGER PRIMARY KEY,
        id         TEXT NOT NULL UNIQUE,
        time_us    INTEGER NOT NULL,
        host       TEXT NOT NULL,
        method     TEXT NOT NULL,
        user_name  TEXT,
        session_id TEXT,
        body       TEXT NOT NULL
    );
    CREATE INDEX events_time ON events(time_us);
    CREATE TABLE cursors (
        name TEXT PRIMARY KEY,
        seq  INTEGER NOT NULL
    );
    """,
    # Persistent subscriptions (pysens.subscriptions); their cursors live in `cursors` as
    # 'subscription:<id>'. `history` holds the seqs of imported events that persistent
    # subscriptions must not be sent (`sens import` without --deliver).
    """
    CREATE TABLE subscriptions (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        event_class TEXT NOT NULL,
        method      TEXT,
        criteria    TEXT,
        enabled     INTEGER NOT NULL DEFAULT 1,
        per_user    INTEGER NOT NULL DEFAULT 0,
        owner       TEXT,
        parallel    INTEGER NOT NULL DEFAULT 0,
        sink        TEXT NOT NULL,
        settings    TEXT NOT NULL,
        state       TEXT NOT NULL DEFAULT 'ok',
        failures    INTEGER NOT NULL DEFAULT 0,
        last_error  TEXT,
        created     TEXT NOT NULL
    );
    CREATE TABLE history (
        seq INTEGER PRIMARY KEY
    );
    """,
]


def default_journal_path() -> Path:
    """``$SENS_JOURNAL``, else ``/var/lib/pysens/journal.db`` for root, else the XDG state dir."""
    env = os.environ.get("SENS_JOURNAL")
    if env:
        return Path(env)
    if os.name == "posix" and os.geteuid() == 0:
        return Path("/var/lib/pysens/journal.db")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "pysens" / "journal.db"


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
                f"SELECT id, seq FROM events WHERE id IN ({marks})", chunk
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
        after_seq: int | None = None,
        where: Callable[[SensEvent], bool] | None = None,
        limit: int | None = None,
        batch: int = 1000,
    ) -> Iterator[SensEvent]:
        """Events in ``seq`` order: time in ``[since, until)``, ``seq > after_seq``, and
        ``where(event)`` true (a compiled filter). Read in batches, so a huge journal streams."""
        clauses, params = [], []
        if since is not None:
            clauses.append("time_us >= ?")
            params.append(_us(since))
        if until is not None:
            clauses.append("time_us < ?")
            params.append(_us(until))
        last = after_seq or 0
        sent = 0
        while True:
            sql = "SELECT seq, body FROM events WHERE " + " AND ".join([*clauses, "seq > ?"])
            with self._guard("read"):
                rows = self._db.execute(
                    sql + " ORDER BY seq LIMIT ?", (*params, last, batch)
                ).fetchall()
            for row in rows:
                last = row[0]
                event = _load(row)
                if where is None or where(event):
                    yield event
                    sent += 1
                    if limit is not None and sent >= limit:
                        return
            if len(rows) < batch:
                return

    def session_events(
        self, methods: Iterable[str], since: datetime, until: datetime | None = None,
    ) -> Iterator[SensEvent]:
        """The events of ``methods`` (in ``seq`` order) a timeline of the window ``[since,
        until)`` needs, without decoding the rest of a long journal.

        Per (host, session id) with such an event in the window, or whose latest one before
        ``since`` is not a Logoff (open then): its events from its last Logoff before ``since``
        on (that Logoff closed everything before it; all of them when there is none). And
        every such event without a session id. The keys and bounds come from the columns, in
        SQL; only the bodies of the kept rows are decoded."""
        from .timeline import window_bounds, window_needs, window_queries

        names = sorted(set(methods))
        marks = ",".join("?" * len(names))
        lo, hi = _us(since), _us(until) if until is not None else None
        inside_sql, before_sql = window_queries("?", len(names), hi is not None)
        with self._guard("read"):
            inside = self._db.execute(
                inside_sql, (lo, *([hi] if hi is not None else []), *names)).fetchall()
            before = self._db.execute(before_sql, (lo, *names)).fetchall()
        bound = window_bounds(inside, before)
        # Which rows, from the columns alone (no body is read for a row left out) ...
        with self._guard("read"):
            rows = self._db.execute(
                f"SELECT seq, host, session_id, time_us FROM events WHERE method IN ({marks})"
                " ORDER BY seq", names).fetchall()
        kept = [seq for seq, host, sid, t in rows if window_needs(bound, host, sid, t)]
        del rows
        # ... then their bodies, in order.
        for n in range(0, len(kept), 500):
            chunk = kept[n:n + 500]
            with self._guard("read"):
                found = self._db.execute(
                    f"SELECT seq, body FROM events WHERE seq IN ({','.join('?' * len(chunk))})"
                    " ORDER BY seq", chunk).fetchall()
            for row in found:
                yield _load(row)

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


class JournalWriter:
    """Group commit for asyncio producers: concurrent :meth:`append` calls share a transaction.

    Each call returns once its event is committed. While one commit runs in a worker thread,
    new events queue up and go together in the next, so a burst costs a few commits, not one per
    event, and a lone event is committed at once (no timer adds latency).
    """

    def __init__(self, journal: Journal, *, max_batch: int = 5000) -> None:
        self.journal = journal
        self.max_batch = max_batch
        self._pending: list[tuple[SensEvent, asyncio.Future[AppendResult]]] = []
        self._task: asyncio.Task[None] | None = None

    async def append(self, event: SensEvent) -> AppendResult:
        """Journal ``event``; returns once it is committed."""
        fut: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._pending.append((event, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return await fut

    async def append_many(self, events: Iterable[SensEvent]) -> list[AppendResult]:
        """Journal several events; returns once all are committed."""
        return list(await asyncio.gather(*(self.append(e) for e in events)))

    async def _run(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            try:
                results = await asyncio.to_thread(
                    self.journal.append_many, [e for e, _ in batch]
                )
            except BaseException as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
