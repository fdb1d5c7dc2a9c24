"""The journal's schema: its tables, their migrations, and where the file lives by default.

The schema carries a version (``PRAGMA user_version``); entry ``n`` of :data:`MIGRATIONS`
brings a database from version ``n`` to ``n + 1``, and :class:`~pysens.journal.Journal` runs
them forward on open.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "LAST_SEQ", "MIGRATIONS", "TABLES", "JournalError", "JournalFull", "default_journal_path",
]


class JournalError(RuntimeError):
    """The journal cannot be opened or written; the message names the file."""


class JournalFull(JournalError):
    """The journal's disk (or its quota) is full: nothing of the failed write was stored, and
    writing works again once there is room."""


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
    # Lean storage (see pysens.journal.rows): each field once, as a column; repeated texts as
    # codes of `names`, a raw's keys once in `shapes`; the history marks a flag bit (the
    # `history` view keeps the old name readable); per cursor, how many events retention
    # deleted before its reader had them. The old rows are converted by
    # pysens.journal.migrate in the same transaction (CONVERSIONS), then the old tables go. Seqs
# are AUTOINCREMENT now: retention deletes events, and a seq must never come back.
    """
    ALTER TABLE events RENAME TO events_v2;
    DROP INDEX events_time;
    ALTER TABLE history RENAME TO history_v2;
    CREATE TABLE names (
        code INTEGER PRIMARY KEY,
        text TEXT NOT NULL UNIQUE
    );
    CREATE TABLE shapes (
        code INTEGER PRIMARY KEY,
        keys TEXT NOT NULL UNIQUE
    );
    CREATE TABLE events (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        id              BLOB NOT NULL,
        time_us         INTEGER NOT NULL,
        observed        INTEGER NOT NULL,
        host            INTEGER NOT NULL,
        method          INTEGER NOT NULL,
        source          INTEGER NOT NULL,
        flags           INTEGER NOT NULL,
        user_name       INTEGER,
        domain          INTEGER,
        session_id      TEXT,
        session_name    TEXT,
        session_type    INTEGER,
        tty             TEXT,
        seat            INTEGER,
        client_name     TEXT,
        client_address  TEXT,
        logon_id        TEXT,
        reason          INTEGER,
        connection      INTEGER,
        connection_type INTEGER,
        qoc_flags       INTEGER,
        qoc_in          INTEGER,
        qoc_out         INTEGER,
        destination     TEXT,
        battery_percent INTEGER,
        raw_shape       INTEGER,
        raw             TEXT
    );
    CREATE UNIQUE INDEX events_id ON events(id);
    CREATE INDEX events_time ON events(time_us);
    CREATE TABLE unreadable (
        seq  INTEGER PRIMARY KEY,
        id   TEXT,
        body TEXT
    );
    CREATE VIEW history AS SELECT seq FROM events WHERE flags & 4;
    CREATE VIEW event_keys AS
        SELECT e.seq AS seq, e.time_us AS time_us, h.text AS host, m.text AS method,
               e.session_id AS session_id
        FROM events e JOIN names h ON h.code = e.host JOIN names m ON m.code = e.method;
    ALTER TABLE cursors ADD COLUMN lost INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE cursors ADD COLUMN lost_at TEXT
    """,
]

#: The highest seq ever given (AUTOINCREMENT keeps it): a seq is never handed out twice, even
#: once retention has deleted the newest events' predecessors or every event.
LAST_SEQ = "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)"

#: The tables a journal of the current version has (``sens journal verify`` checks them).
TABLES = ("names", "shapes", "events", "unreadable", "cursors", "subscriptions")


def default_journal_path() -> Path:
    """``$SENS_JOURNAL``, else ``/var/lib/pysens/journal.db`` for root, else the XDG state dir."""
    env = os.environ.get("SENS_JOURNAL")
    if env:
        return Path(env)
    if os.name == "posix" and os.geteuid() == 0:
        return Path("/var/lib/pysens/journal.db")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "pysens" / "journal.db"
