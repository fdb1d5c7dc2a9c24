"""wtmpdb databases (Debian 13, openSUSE: ``/var/lib/wtmpdb/wtmp.db``) -> observations.

wtmpdb (thkukuk/wtmpdb, ``lib/sqlite.c``) keeps one row per login in SQLite::

    CREATE TABLE wtmp(ID INTEGER PRIMARY KEY, Type INTEGER, User TEXT NOT NULL,
                      Login INTEGER, Logout INTEGER, TTY TEXT, RemoteHost TEXT, Service TEXT)

with times in microseconds since the epoch and types ``BOOT_TIME 1, RUNLEVEL 2, USER_PROCESS 3``
(``include/wtmpdb.h``). A logout updates its login's row in place (``Logout``); a boot row's
``Logout`` is the shutdown that ended that boot. So the rows become a time-ordered stream of
log records: a login (Logon), its logout (Logoff), a boot (every session still open crashed), a
shutdown (every session still open ended with the system).

A row is one logon, so its ID is the session's ``logon_id`` and the session is keyed by it;
``session_id`` stays null (wtmpdb has none, and its TTY need not be unique: sshd sessions
without a pty share one), ``tty`` is the TTY.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..events import Method
from ..observations import HostReset, Observation, SessionInfo, SessionRecord
from . import HistoryKind, ReadError

__all__ = ["BOOT_TIME", "COLUMNS", "RUNLEVEL", "USER_PROCESS", "observations", "read_wtmpdb"]

BOOT_TIME, RUNLEVEL, USER_PROCESS = 1, 2, 3
#: The columns of upstream's ``wtmp`` table, in order.
COLUMNS = ("ID", "Type", "User", "Login", "Logout", "TTY", "RemoteHost", "Service")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# At one instant: a logout, then a shutdown, then a boot, then a login (a session that ends as
# another starts on its tty must be closed first). A zero-length session's logout sorts after
# its own login (rank 4).
_LOGOUT, _SHUTDOWN, _BOOT, _LOGIN, _LOGOUT_SAME_TIME = range(5)


def _time(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _check_schema(db: sqlite3.Connection, path: str) -> None:
    try:
        cols = tuple(row[1] for row in db.execute("PRAGMA table_info(wtmp)"))
    except sqlite3.DatabaseError as e:
        raise ReadError(f"{path} is not an SQLite database ({e})") from None
    if not cols:
        raise ReadError(f"{path} is not a wtmpdb database: it has no table 'wtmp'")
    missing = [c for c in COLUMNS if c.lower() not in {x.lower() for x in cols}]
    if missing:
        raise ReadError(
            f"{path} is not a wtmpdb database: its table 'wtmp' has columns "
            f"{', '.join(cols)}, not {', '.join(COLUMNS)} (missing {', '.join(missing)})"
        )


def _info(row: sqlite3.Row) -> SessionInfo:
    tty = row["TTY"] or None
    host = row["RemoteHost"] or None
    raw: dict[str, Any] = {k: row[k] for k in COLUMNS}
    return SessionInfo(
        session_id=None, user_name=row["User"], tty=tty, client_name=host,
        remote=bool(host) and not str(host).startswith(":"), logon_id=str(row["ID"]),
        session_type="x11" if tty and tty.startswith(":") else ("tty" if tty else None),
        since=_time(row["Login"]), raw=raw,
    )


def observations(
    rows: Iterator[sqlite3.Row], path: str, on_error: Callable[[str], None],
    source: str = "wtmpdb",
) -> list[Observation]:
    """The time-ordered observations of wtmpdb ``rows``; a row that cannot be one goes to
    ``on_error`` (naming its ID) and is skipped."""
    timeline: list[tuple[int, int, int, Observation]] = []
    for row in rows:
        rid, typ, login, logout = row["ID"], row["Type"], row["Login"], row["Logout"]
        where = f"{path}: row ID {rid}"
        if not isinstance(login, int):
            on_error(f"{where}: Login {login!r} is not a time in microseconds; skipped")
            continue
        if logout is not None and not isinstance(logout, int):
            on_error(f"{where}: Logout {logout!r} is not a time in microseconds; skipped")
            continue
        if typ == BOOT_TIME:
            t = _time(login)
            timeline.append((login, _BOOT, rid, HostReset(t, source, "crash")))
            if logout is not None:
                timeline.append((logout, _SHUTDOWN, rid,
                                 HostReset(_time(logout), source, "shutdown")))
        elif typ == USER_PROCESS:
            if not row["User"]:
                on_error(f"{where}: a login without a user name; skipped")
                continue
            info = _info(row)
            timeline.append((login, _LOGIN, rid, SessionRecord(
                _time(login), source, Method.Logon, info, post_shell=True)))
            if logout is not None:
                rank = _LOGOUT if logout > login else _LOGOUT_SAME_TIME
                end = max(logout, login)
                timeline.append((end, rank, rid, SessionRecord(
                    _time(end), source, Method.Logoff, info)))
        elif typ == RUNLEVEL:
            continue  # wtmpdb writes none today; a run-level change ends no session
        else:
            on_error(f"{where}: Type {typ!r} is not a wtmpdb record type; skipped")
    timeline.sort(key=lambda item: item[:3])
    return [obs for *_, obs in timeline]


def read_wtmpdb(path: str, on_error: Callable[[str], None]) -> Iterator[Observation]:
    """The observations of the wtmpdb database at ``path`` (``sens import wtmpdb``).

    Opened read-only. Raises :class:`~pysens.sources.ReadError` for a missing file, a file
    that is not SQLite, or a database whose ``wtmp`` table is not wtmpdb's.
    """
    if not Path(path).is_file():
        raise ReadError(f"cannot read {path}: no such file")
    try:
        db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise ReadError(f"cannot open {path}: {e}") from None
    with closing(db):
        db.row_factory = sqlite3.Row
        _check_schema(db, path)
        try:
            rows = db.execute(
                "SELECT ID, Type, User, Login, Logout, TTY, RemoteHost, Service FROM wtmp "
                "ORDER BY Login, ID"
            )
            result = observations(rows, path, on_error)
        except sqlite3.DatabaseError as e:
            raise ReadError(f"cannot read {path}: {e}") from None
    yield from result


#: The registry's entry (``sens import wtmpdb``).
HISTORY = HistoryKind(read_wtmpdb)
