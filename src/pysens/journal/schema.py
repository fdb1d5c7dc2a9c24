"""The journal's schema: its tables, their migrations, and where the file lives by default.

The schema carries a version (``PRAGMA user_version``); entry ``n`` of :data:`MIGRATIONS`
brings a database from version ``n`` to ``n + 1``, and :class:`~pysens.journal.Journal` runs
them forward on open.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MIGRATIONS", "JournalError", "default_journal_path"]


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
