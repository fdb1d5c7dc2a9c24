"""A central store written by pysens 0.1 (schema 1: an events and a rejected table, nothing
else) is brought to this pysens's schema in place, on SQLite and on PostgreSQL: every event
kept, the sessions and hosts tables built from them, a version recorded, and nothing done twice.

The 0.1 store is made here with 0.1's own table definitions and insert, as 0.1 wrote them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from fleet_fixtures import pg_url, storm
from pysens.fleet.store import open_store
from pysens.fleet.stream import subject_for

__all__ = ["pg_url"]

# pysens 0.1's schema (src/pysens/store.py of that release), both dialects.
V1 = """
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
V1_INSERT = ("INSERT INTO events(id, host, time_us, method, user_name, session_id, seq, subject,"
             " body, published_us, stored_us) VALUES ({ph})")


def _rows() -> list[tuple[Any, ...]]:
    out = []
    events = storm("old01", 23) + storm("old02.example.com", 12)
    for seq, e in enumerate(events, 1):
        t = int(e.time.timestamp()) * 1_000_000 + e.time.microsecond
        body = e.evolve(seq=seq).to_json_text()
        out.append((e.id, e.host, t, str(e.method), e.user_name, e.session_id, seq,
                    subject_for(e.host, str(e.method)), body, t + 500, t + 900))
    return out


def _fill_sqlite(path: Path) -> list[tuple[Any, ...]]:
    rows = _rows()
    db = sqlite3.connect(path)
    db.executescript(V1.format(INT="INTEGER", BLOB="BLOB"))
    db.executemany(V1_INSERT.format(ph=", ".join("?" * 11)), rows)
    db.execute("INSERT INTO rejected VALUES ('SENS', 7, 'sens.x.Logon', 'not JSON', x'00', 1)")
    db.commit()
    db.close()
    return rows


def _fill_pg(url: str) -> list[tuple[Any, ...]]:
    import psycopg

    rows = _rows()
    with psycopg.connect(url, autocommit=True) as db:
        for statement in V1.format(INT="BIGINT", BLOB="BYTEA").split(";"):
            if statement.strip():
                db.execute(statement)
        with db.cursor() as cur:
            cur.executemany(V1_INSERT.format(ph=", ".join(["%s"] * 11)), rows)
        db.execute("INSERT INTO rejected VALUES ('SENS', 7, 'sens.x.Logon', 'not JSON', "
                   "'\\x00'::bytea, 1)")
    return rows


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_01_store_is_converted_in_place(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'fleet.db'}"
        rows = _fill_sqlite(tmp_path / "fleet.db")
    else:
        url = request.getfixturevalue("pg_url")
        rows = _fill_pg(url)
    with open_store(url) as store:
        assert store.count() == len(rows) == 35
        assert store.ids() == sorted(r[0] for r in rows)
        assert store.hosts() == ["old01", "old02.example.com"]
        assert [r.stream_seq for r in store.rejected()] == [7]
        # The projections were built from the old events: the same open sessions a replay of
        # the events gives.
        summaries = {s["host"]: s for s in store.host_summaries()}
        assert summaries["old01"]["events"] == 23 and summaries["old02.example.com"][
            "events"] == 12
        open_now = {(s.host, s.info.session_id) for s in store.open_sessions()}
        assert ("old01", "4") in open_now  # storm: session 4 logged on, not yet off
        assert ("old01", "0") not in open_now  # session 0 logged off
        got = {e.id: e for e in store.query()}
        assert got[rows[0][0]].seq == 1 and got[rows[-1][0]].host == "old02.example.com"
        # New columns are there and writable.
        assert store.gaps() == []
    # Opening it again converts nothing twice.
    with open_store(url) as again:
        assert again.count() == 35
        assert len(again.session_rows()) == len({(r[1], r[5]) for r in rows})
