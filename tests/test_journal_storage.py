"""The journal's lean storage (schema 3): every kind of event reads back as appended, the
forwarder's texts are the events' own, and a version-2 journal converts in place, losing
nothing."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pysens.events import SensEvent
from pysens.journal import Journal, SubscriptionStore
from pysens.journal.rows import id_key, id_text

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def every_kind() -> list[SensEvent]:
    """Events of every class, with every field set somewhere, odd values included."""
    wtmp_raw = {"ut_type": "USER_PROCESS", "ut_pid": 1001, "ut_line": "pts/3", "ut_id": "ts/3",
                "ut_user": "alice", "ut_host": "10.0.0.7", "ut_session": 0,
                "ut_addr": "10.0.0.7", "offset": 384}
    return [
        SensEvent("Logon", user_name="alice", session_id="pts/3", tty="pts/3", time=T0,
                  observed=T0 + timedelta(microseconds=5), host="web01", source="wtmp",
                  session_type="tty", remote=True, client_name="10.0.0.7",
                  client_address="10.0.0.7", raw=wtmp_raw),
        SensEvent("PostShell", user_name="alice", session_id="pts/3", tty="pts/3", time=T0,
                  observed=T0, host="web01", source="wtmp", session_type="tty", remote=True,
                  client_name="10.0.0.7", client_address="10.0.0.7", raw=wtmp_raw),
        SensEvent("Logoff", user_name="alice", session_id="pts/3", tty="pts/3",
                  time=T0 + timedelta(hours=1), observed=T0 + timedelta(hours=2),
                  host="web01", source="wtmp", reason="superseded", synthesized=True,
                  raw=wtmp_raw),
        SensEvent("SessionReconnect", user_name="bob", domain="CORP", session_id="3",
                  session_name="RDP-Tcp#4", session_type="rdp", seat="seat0",
                  client_name="LAPTOP", client_address="192.0.2.1", logon_id="0x3e7a1",
                  time=T0, observed=T0 - timedelta(seconds=3), host="DC1", source="evtx",
                  raw={"EventID": 4778, "nested": {"a": [1, 2.5, None, True], "b": "CORP"},
                       "Logon ID": "0x3e7a1", "empty": {}, "list": ["x", {"y": "z"}],
                       "unicode": "žluť 🐍", "ctl": "tab\there\nnl \"q\" \\ \x01 \x00",
                       "big": 2**70, "neg": -5, "f": 1e-7}),
        SensEvent("ConnectionMade", connection="eth0", connection_type=0,
                  qoc={"flags": 1, "in_speed": 10**9, "out_speed": 10**9}, time=T0,
                  host="web01", source="netlink", raw={"ifindex": 2, "name": "eth0"}),
        SensEvent("ConnectionMadeNoQOCInfo", connection="wwan0", connection_type=1, time=T0,
                  host="web01", source="networkmanager"),
        SensEvent("ConnectionLost", connection="eth0", connection_type=0, time=T0,
                  host="web01", source="netlink"),
        SensEvent("DestinationReachable", destination="nats.example", connection="eth0",
                  connection_type=0, qoc={"flags": 1, "in_speed": 0, "out_speed": 0},
                  time=T0, host="web01", source="destinations"),
        SensEvent("OnBatteryPower", battery_percent=57, time=T0, host="laptop",
                  source="upower", raw={"percentage": 57.0, "state": "discharging"}),
        SensEvent("BatteryLow", battery_percent=4, time=T0, host="laptop", source="upower"),
        SensEvent("OnACPower", time=T0, host="laptop", source="power_supply"),
        # Ids a publisher chose: not ULIDs (stay text), one that looks like a lowercase ULID.
        SensEvent("Logon", id="my-own-id:42", user_name="carol", session_id="c1", time=T0,
                  host="web01", source="publish"),
        SensEvent("Logon", id="01dxf6f3zhcaesjq7hzxxgskvb", user_name="carol",
                  session_id="c2", time=T0, host="web01", source="publish"),
        SensEvent("Logoff", id="8ZZZZZZZZZZZZZZZZZZZZZZZZZ", user_name="carol",
                  session_id="c2", time=T0, host="web01", source="publish"),
        # Before 1970, far ahead, no user at all, a raw key like a column's value.
        SensEvent("DisplayLock", user_name="dave", time=datetime(1969, 12, 31, 23, 59, 59,
                  500000, tzinfo=UTC), observed=datetime(2999, 1, 1, tzinfo=UTC),
                  host="old", source="api", raw={"host": "old", "user": "dave"}),
        SensEvent("StopScreenSaver", user_name=None, time=T0, host="h2", source="api",
                  raw={"k": ""}),
    ]


def test_every_kind_of_event_reads_back_as_appended(tmp_path: Path) -> None:
    events = every_kind()
    with Journal(tmp_path / "j.db") as j:
        results = j.append_many(events)
        assert [r.event.seq for r in results] == list(range(1, len(events) + 1))
        back = list(j.query())
        assert [e.to_json() for e in back] == [r.event.to_json() for r in results]
        assert [e.to_json_text() for e in back] == [r.event.to_json_text() for r in results]
        # The forwarder's texts: the events' own, without their seq.
        rows = j.rows_after(0, 100)
        assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
            (e.seq, e.id, e.host, str(e.method)) for e in back]
        assert [r[4] for r in rows] == [e.to_json_text() for e in events]
        for e in events:
            got = j.get(e.id)
            assert got is not None and got.evolve(seq=None).to_json() == e.to_json()
        # Appending again adds nothing, whatever the kind of id.
        assert not any(r.inserted for r in j.append_many(events))
        assert j.count() == len(events)
    # Another connection (another process) reads the names it did not add.
    with Journal(tmp_path / "j.db") as again:
        assert [e.to_json() for e in again.query()] == [e.to_json() for e in back]
        assert again.hosts() == ["DC1", "h2", "laptop", "old", "web01"]
        assert [e.seq for e in again.query(hosts=["laptop"])] == [9, 10, 11]
        assert list(again.query(hosts=["nowhere"])) == []
        before = list(again.query(until=datetime(1970, 1, 1, tzinfo=UTC)))
        assert [e.method for e in before] == ["DisplayLock"]


def test_names_added_by_another_writer_are_learned(tmp_path: Path) -> None:
    a, b = Journal(tmp_path / "j.db"), Journal(tmp_path / "j.db")
    try:
        a.append(SensEvent("Logon", user_name="u1", session_id="1", host="ha", time=T0))
        b.append(SensEvent("Logon", user_name="u2", session_id="2", host="hb", time=T0,
                           raw={"x": 1}))
        a.append(SensEvent("Logon", user_name="u3", session_id="3", host="hc", time=T0,
                           raw={"y": 2}))
        for j in (a, b):
            assert [(e.host, e.user_name, dict(e.raw)) for e in j.query()] == [
                ("ha", "u1", {}), ("hb", "u2", {"x": 1}), ("hc", "u3", {"y": 2})]
            assert [r[2] for r in j.rows_after(0, 10)] == ["ha", "hb", "hc"]
    finally:
        a.close()
        b.close()


def test_ids_are_stored_as_their_128_bits_or_as_text() -> None:
    ulid = "01DXF6F3ZHCAESJQ7HZXXGSKVB"
    key = id_key(ulid)
    assert isinstance(key, bytes) and len(key) == 16 and id_text(key) == ulid
    assert id_key("7ZZZZZZZZZZZZZZZZZZZZZZZZZ") == b"\xff" * 16
    for other in ("01dxf6f3zhcaesjq7hzxxgskvb", "8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
                  "01DXF6F3ZHCAESJQ7HZXXGSKVI", "short", "01DXF6F3ZHCAESJQ7HZXXGSKVBX"):
        assert id_key(other) == other
    # Blob order is text order: the journal's "newer than everything" shortcut holds.
    a, b = "01DXF6F3ZHCAESJQ7HZXXGSKVB", "01DXF6F3ZJ0000000000000000"
    ka, kb = id_key(a), id_key(b)
    assert isinstance(ka, bytes) and isinstance(kb, bytes) and (ka < kb) == (a < b)


# -- the version-2 journal, written as pysens wrote it before the lean storage --------------

V1 = """
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
"""
V2 = """
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
"""


def _us(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def write_v2(path: Path, events: list[SensEvent]) -> None:
    """A version-2 journal of ``events`` (seq 1, 2, …), as `Journal` wrote it then."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(V1 + V2)
    db.execute("PRAGMA user_version=2")
    db.execute("BEGIN")
    for seq, e in enumerate(events, 1):
        body = e.to_json_text()
        if seq == 3:  # a body as pysens 0.1 wrote it: with "seq": null at the end
            obj = json.loads(body)
            body = json.dumps(obj | {"seq": None}, ensure_ascii=False)
        db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (seq, e.id, _us(e.time), e.host, str(e.method), e.user_name, e.session_id,
                    body))
    db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (len(events) + 1, "01DAMAGED", 0, "h", "Logon", None, None, "not json"))
    db.executemany("INSERT INTO history VALUES (?)", [(1,), (2,), (3,)])
    db.execute("INSERT INTO cursors VALUES ('forward:nats://n:4222', 5)")
    db.execute("INSERT INTO cursors VALUES ('subscription:s1', 7)")
    db.execute(
        "INSERT INTO subscriptions(id, name, event_class, method, criteria, enabled, per_user, "
        "owner, parallel, sink, settings, state, failures, last_error, created) VALUES "
        "('s1', 'audit', 'ISensLogon', 'Logon', 'bstrUserName = ''alice''', 1, 0, NULL, 0, "
        "'jsonl', '{\"path\": \"/tmp/a.jsonl\"}', 'failing', 5, 'boom', '2026-01-01T00:00Z')")
    db.execute("COMMIT")
    db.close()


def test_a_version_2_journal_is_converted_in_place_losing_nothing(tmp_path: Path) -> None:
    events = every_kind()
    path = tmp_path / "old.db"
    write_v2(path, events)
    with Journal(path) as j:
        assert j.version == 3
        back = list(j.query())
        assert [e.seq for e in back] == list(range(1, len(events) + 1))
        assert [e.to_json() for e in back] == [
            e.with_seq(n).to_json() for n, e in enumerate(events, 1)]
        assert [r[4] for r in j.rows_after(0, 100)[:len(events)]] == [
            e.to_json_text() for e in events]
        assert j.cursor("forward:nats://n:4222") == 5 and j.cursor("subscription:s1") == 7
        # The damaged row is kept aside, not an event; its seq is not given again.
        assert j.count() == len(events) and j.last_seq() == len(events) + 1
        store = SubscriptionStore(j)
        sub = store.get("audit")
        assert (sub.id, sub.method, sub.criteria, sub.state, sub.failures, sub.last_error,
                dict(sub.settings)) == ("s1", "Logon", "bstrUserName = 'alice'", "failing", 5,
                                        "boom", {"path": "/tmp/a.jsonl"})
        assert store.history_seqs(0, 100) == {1, 2, 3}
        store.close()
        # New events go on from there.
        new = j.append(SensEvent("Logoff", user_name="zed", session_id="9", host="web01",
                                 time=T0))
        assert new.inserted and new.event.seq == len(events) + 2
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT seq, id, body FROM unreadable").fetchall() == [
            (len(events) + 1, "01DAMAGED", "not json")]
        assert {r[0] for r in db.execute("SELECT seq FROM history")} == {1, 2, 3}
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        assert not {"events_v2", "history_v2"} & tables
        # Compacted (nothing of the old format left as free pages), and ready for retention
        # to hand pages back (incremental vacuum).
        assert db.execute("PRAGMA freelist_count").fetchone()[0] == 0
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
