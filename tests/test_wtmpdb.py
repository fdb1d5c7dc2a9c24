"""wtmpdb databases: built with upstream's exact schema and statements (Debian 12 has no
``wtmpdb`` package: ``apt-cache policy wtmpdb`` is empty), read back into sessions."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pysens.events import Method
from pysens.sources import ReadError
from pysens.sources.wtmpdb import read_wtmpdb
from pysens.timeline import pair_sessions
from wtmp_fixtures import parse_last, read_events, run_last, utmpdump_line, write_wtmp

# The table exactly as upstream creates it (thkukuk/wtmpdb lib/sqlite.c); a login inserts a
# row without Logout, a logout sets Logout on that row.
CREATE = ("CREATE TABLE IF NOT EXISTS wtmp(ID INTEGER PRIMARY KEY, Type INTEGER, User TEXT NOT "
          "NULL, Login INTEGER, Logout INTEGER, TTY TEXT, RemoteHost TEXT, Service TEXT) STRICT")
INSERT = ("INSERT INTO wtmp (Type, User, Login, TTY, RemoteHost, Service) "
          "VALUES (?, ?, ?, ?, ?, ?)")
LOGOUT = "UPDATE wtmp SET Logout = ? WHERE ID = ?"
BOOT, USER = 1, 3
T0 = datetime(2025, 6, 1, 8, tzinfo=UTC)


def us(t: datetime) -> int:
    return (t - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


class WtmpDb:
    """A wtmpdb file written the way libwtmpdb writes it: a row per login, logout in place."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path)
        self.db.execute(CREATE)

    def login(self, type: int, user: str, at: datetime, tty: str | None = None,
              rhost: str | None = None, service: str | None = None) -> int:
        cur = self.db.execute(INSERT, (type, user, us(at), tty, rhost, service))
        self.db.commit()
        assert cur.lastrowid is not None
        return cur.lastrowid

    def logout(self, row: int, at: datetime) -> None:
        assert self.db.execute(LOGOUT, (us(at), row)).rowcount == 1
        self.db.commit()

    def close(self) -> None:
        self.db.close()


def h(n: float) -> datetime:
    return T0 + timedelta(hours=n)


def sessions(path: Path) -> list[tuple[str | None, str | None, datetime, str, datetime | None]]:
    events, errors = read_events("wtmpdb", path)
    assert errors == []
    return [(s.logon.user_name, s.logon.tty, s.logon.time, s.end,
             s.logoff.time if s.logoff else None) for s in pair_sessions(events)]


def test_logins_logouts_boots_and_shutdowns(tmp_path: Path) -> None:
    w = WtmpDb(tmp_path / "wtmp.db")
    boot1 = w.login(BOOT, "reboot", h(0), "~", "6.12.0-amd64")
    a = w.login(USER, "alice", h(1), "pts/0", "192.0.2.5", "sshd")
    b = w.login(USER, "bob", h(1.5), "tty1", None, "login")
    w.logout(a, h(2))
    c = w.login(USER, "carol", h(2.5), "pts/0", "192.0.2.7", "sshd")  # open at shutdown
    w.logout(boot1, h(3))  # `wtmpdb shutdown` closes the boot row
    w.login(BOOT, "reboot", h(4), "~", "6.12.0-amd64")
    d = w.login(USER, "dave", h(5), "pts/1", "192.0.2.9", "sshd")  # open at a crash
    w.login(BOOT, "reboot", h(6), "~", "6.12.0-amd64")
    e = w.login(USER, "erin", h(7), ":0", None, "gdm-password")  # still logged in
    w.close()
    assert (b, c, d, e) == (3, 4, 6, 8)
    assert sessions(tmp_path / "wtmp.db") == [
        ("alice", "pts/0", h(1), "logoff", h(2)),
        ("bob", "tty1", h(1.5), "shutdown", h(3)),
        ("carol", "pts/0", h(2.5), "shutdown", h(3)),
        ("dave", "pts/1", h(5), "crash", h(6)),
        ("erin", ":0", h(7), "open", None),
    ]


def test_event_fields_and_stable_ids(tmp_path: Path) -> None:
    w = WtmpDb(tmp_path / "wtmp.db")
    a = w.login(USER, "alice", h(1), "pts/0", "192.0.2.5", "sshd")
    w.logout(a, h(2))
    w.close()
    events, _ = read_events("wtmpdb", tmp_path / "wtmp.db")
    assert [str(e.method) for e in events] == ["Logon", "PostShell", "Logoff"]
    logon = events[0]
    assert (logon.source, logon.logon_id, logon.session_id, logon.tty) == (
        "wtmpdb", "1", None, "pts/0")
    assert logon.remote and logon.client_name == "192.0.2.5"
    assert logon.raw["Service"] == "sshd"
    assert events[2].time == h(2) and not events[2].synthesized
    again, _ = read_events("wtmpdb", tmp_path / "wtmp.db")
    assert [e.id for e in again] == [e.id for e in events]


def test_sessions_sharing_a_tty_stay_apart(tmp_path: Path) -> None:
    # sshd without a pty: several sessions at once under one TTY value.
    w = WtmpDb(tmp_path / "wtmp.db")
    a = w.login(USER, "alice", h(1), "ssh", "192.0.2.5", "sshd")
    b = w.login(USER, "alice", h(1) + timedelta(seconds=2), "ssh", "192.0.2.5", "sshd")
    w.logout(b, h(2))
    w.logout(a, h(3))
    w.close()
    got = sessions(tmp_path / "wtmp.db")
    assert [(s[2], s[3], s[4]) for s in got] == [
        (h(1), "logoff", h(3)), (h(1) + timedelta(seconds=2), "logoff", h(2))]


def test_same_history_as_wtmp_gives_the_sessions_last_prints(tmp_path: Path) -> None:
    w = WtmpDb(tmp_path / "wtmp.db")
    text = []
    w.login(BOOT, "reboot", h(0), "~", "6.1.0")
    text.append(utmpdump_line(2, "reboot", "~", h(0), id="~~", host="6.1.0"))
    a = w.login(USER, "alice", h(1), "pts/0", "10.0.0.5", "sshd")
    text.append(utmpdump_line(7, "alice", "pts/0", h(1), pid=100, id="ts/0", host="10.0.0.5"))
    w.login(USER, "bob", h(1.5), "tty2")
    text.append(utmpdump_line(7, "bob", "tty2", h(1.5), pid=101, id="tty2"))
    w.logout(a, h(2))
    text.append(utmpdump_line(8, "", "pts/0", h(2), pid=100, id="ts/0"))
    w.login(BOOT, "reboot", h(3), "~", "6.1.0")
    text.append(utmpdump_line(2, "reboot", "~", h(3), id="~~", host="6.1.0"))
    w.close()
    oracle = parse_last(run_last(write_wtmp(tmp_path / "wtmp", text)))
    fmt = "%Y-%m-%dT%H:%M:%S+00:00"
    ours = sorted(
        (u or "", tty or "", t.strftime(fmt), end if end != "logoff" else off.strftime(fmt))
        for u, tty, t, end, off in sessions(tmp_path / "wtmp.db") if off is not None
    )
    assert ours == [(u, line, t, end) for u, line, _host, t, end in oracle]


def test_another_schema_is_one_clear_error(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE wtmp(id INTEGER PRIMARY KEY, user TEXT, at INTEGER)")
    with pytest.raises(ReadError, match=r"other.db is not a wtmpdb database: .*missing Type"):
        list(read_wtmpdb(str(other), lambda _m: None))
    empty = tmp_path / "empty.db"
    with closing(sqlite3.connect(empty)) as db:
        db.execute("CREATE TABLE lastlog(x)")
    with pytest.raises(ReadError, match=r"has no table 'wtmp'"):
        list(read_wtmpdb(str(empty), lambda _m: None))
    text = tmp_path / "text.db"
    text.write_text("hello, not a database\n" * 100)
    with pytest.raises(ReadError, match=r"text.db is not an SQLite database"):
        list(read_wtmpdb(str(text), lambda _m: None))
    with pytest.raises(ReadError, match=r"cannot read .*nothere.db"):
        list(read_wtmpdb(str(tmp_path / "nothere.db"), lambda _m: None))


def test_bad_rows_are_named_and_skipped(tmp_path: Path) -> None:
    w = WtmpDb(tmp_path / "wtmp.db")
    w.login(USER, "alice", h(1), "pts/0")
    w.db.execute("INSERT INTO wtmp (Type,User,Login,TTY) VALUES (3, 'bob', NULL, 'pts/1')")
    w.db.execute("INSERT INTO wtmp (Type,User,Login,TTY) VALUES (9, 'carol', 5, 'pts/2')")
    w.db.commit()
    w.close()
    events, errors = read_events("wtmpdb", tmp_path / "wtmp.db")
    assert [e.user_name for e in events if e.method is Method.Logon] == ["alice"]
    assert len(errors) == 2
    assert "row ID 2: Login None is not a time" in errors[0]
    assert "row ID 3: Type 9 is not a wtmpdb record type" in errors[1]
