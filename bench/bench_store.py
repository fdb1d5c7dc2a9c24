"""The central store for years: 10 million events from 10,000 hosts, and what an admin asks.

Fills a private PostgreSQL schema with a year of a fleet's events (bench/_store_data.py:
sessions with logons, shells, locks, disconnects and logoffs, a few hundred still open, and
network and power events), COPYing the rows straight into the partitioned events table and
the session and host projections (folded with pysens.fleet.projection, as commits do) with
the indexes built after; then times the commands an admin runs, each as ``sens`` runs it
(``pysens.cli.main`` in this process, output counted and thrown away; best of 3, warm), the
fleet overview of ``sens web`` (``Store.host_summaries``), and retention of the oldest month:
``Store.expire`` (the partition dropped) beside a row DELETE of the same month (rolled back).
A small SQLite store (1M events) is filled and timed beside it.

Run: ``python bench/bench_store.py [--events N] [--hosts H]`` (default 10,000,000 / 10,000:
~17 min here, 14 of them filling, most of that making the events in Python; ``--quick``: 1M
events from 1,000 hosts, ~1 min).
Needs the PostgreSQL of the tests (SENS_TEST_PG, default postgres@127.0.0.1:5432/test).
``--schema S --keep`` keeps the filled schema, ``--reuse`` times an already filled one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from _common import best  # bench/ is sys.path[0] when run as a script
from _store_data import DAY, Host, fleet_days, make_hosts, now_floor
from pysens.cli import main as sens_main
from pysens.fleet.projection import SessionRow, fold_sessions, row_values
from pysens.fleet.store import Store, StoredEvent, open_store
from pysens.fleet.store.intake import check_message
from pysens.fleet.store.schema import EVENT_COLUMNS, SESSION_COLUMNS

PG_BASE = os.environ.get("SENS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


class Counter:
    """A stdout that counts the lines written and keeps nothing."""

    def __init__(self) -> None:
        self.lines = 0

    def write(self, text: str) -> int:
        self.lines += text.count("\n")
        return len(text)

    def flush(self) -> None:
        pass


def run_cli(argv: list[str]) -> int:
    """``sens ARGV`` in this process; the number of lines it printed (``--json``: rows)."""
    out = Counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(Counter()):
        rc = sens_main(argv)
    assert rc == 0, f"sens {' '.join(argv)} exited {rc}"
    return out.lines


# -- filling ---------------------------------------------------------------------------------


class Fill:
    """What a fill made and how long it took."""

    def __init__(self) -> None:
        self.events = 0
        self.sessions = 0
        self.steps: list[tuple[str, float]] = []

    def step(self, name: str, seconds: float) -> None:
        self.steps.append((name, seconds))
        print(f"  {name}: {seconds:.1f} s", flush=True)


def _days(hosts: list[Host], events: int, now: int, fill: Fill,
          sessions: dict[tuple[str, str], SessionRow]) -> Iterator[list[StoredEvent]]:
    """The fleet's days, each folded into ``sessions`` as a commit would fold it."""
    checked = 0
    for day in fleet_days(hosts, events, now):
        for key, row in fold_sessions(day).items():
            known = sessions.get(key)
            sessions[key] = row if known is None else known.merge(row)
        fill.events += len(day)
        if day and checked < 50:  # the columns are what the collector would take
            e = day[len(day) // 2]
            assert check_message(e.subject, e.body.encode(), e.id, e.published_us) == e, e
            checked += 1
        yield day


def fill_pg(url: str, hosts: list[Host], events: int, now: int) -> Fill:
    """Create the store at ``url`` and fill it (indexes dropped during the COPY, rebuilt)."""
    import psycopg

    fill = Fill()
    with open_store(url) as store:
        db = store._db  # type: ignore[attr-defined]
        with db.transaction():
            store._create_months(now - 365 * DAY, now + DAY)  # type: ignore[attr-defined]
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("SET synchronous_commit = off")
        db.execute("SET maintenance_work_mem = '1GB'")
        pkey = db.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE"
                          " conrelid = 'events'::regclass AND contype = 'p'").fetchall()
        indexes = db.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname ="
                             " current_schema() AND tablename = 'events'").fetchall()
        for name, _ in indexes:
            if name not in {p[0] for p in pkey}:
                db.execute(f"DROP INDEX {name}")
        for name, _ in pkey:
            db.execute(f"ALTER TABLE events DROP CONSTRAINT {name}")
        sessions: dict[tuple[str, str], SessionRow] = {}
        start = time.perf_counter()
        cols = ", ".join(EVENT_COLUMNS)
        with db.cursor() as cur, cur.copy(f"COPY events ({cols}) FROM STDIN") as copy:
            write = copy.write_row
            for day in _days(hosts, events, now, fill, sessions):
                for e in day:
                    write(e.row(e.time_us + 60_000))
        fill.step(f"make and COPY {fill.events:,} events", time.perf_counter() - start)
        start = time.perf_counter()
        with db.cursor() as cur:
            with cur.copy(f"COPY sessions ({', '.join(SESSION_COLUMNS)}) FROM STDIN") as copy:
                for row in sessions.values():
                    copy.write_row(row_values(row))
            with cur.copy("COPY hosts (host, first_us, last_us, events) FROM STDIN") as copy:
                for h in hosts:
                    if h.events:
                        copy.write_row((h.name, h.first_us, h.last_us, h.events))
        fill.sessions = len(sessions)
        fill.step(f"COPY {len(sessions):,} session rows and {len(hosts):,} hosts",
                  time.perf_counter() - start)
        start = time.perf_counter()
        for name, definition in pkey:
            db.execute(f"ALTER TABLE events ADD CONSTRAINT {name} {definition}")
        for name, definition in indexes:
            if name not in {p[0] for p in pkey}:
                db.execute(definition.replace(" ON ONLY ", " ON "))
        fill.step("build the indexes (every partition)", time.perf_counter() - start)
        start = time.perf_counter()
        db.execute("VACUUM ANALYZE events")
        db.execute("VACUUM ANALYZE sessions")
        db.execute("ANALYZE hosts")
        fill.step("VACUUM ANALYZE", time.perf_counter() - start)
    return fill


def fill_sqlite(url: str, hosts: list[Host], events: int, now: int) -> Fill:
    """The same for a SQLite store (executemany; secondary indexes built after)."""
    import sqlite3

    fill = Fill()
    store = open_store(url)
    path = store.path  # type: ignore[attr-defined]
    store.close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    indexes = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND"
                         " tbl_name = 'events' AND sql IS NOT NULL").fetchall()
    for name, _ in indexes:
        db.execute(f"DROP INDEX {name}")
    sessions: dict[tuple[str, str], SessionRow] = {}
    start = time.perf_counter()
    marks = ", ".join("?" * len(EVENT_COLUMNS))
    db.execute("BEGIN")
    for day in _days(hosts, events, now, fill, sessions):
        db.executemany(f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({marks})",
                       [e.row(e.time_us + 60_000) for e in day])
    db.executemany(f"INSERT INTO sessions ({', '.join(SESSION_COLUMNS)}) VALUES"
                   f" ({', '.join('?' * len(SESSION_COLUMNS))})",
                   [row_values(r) for r in sessions.values()])
    db.executemany("INSERT INTO hosts (host, first_us, last_us, events) VALUES (?, ?, ?, ?)",
                   [(h.name, h.first_us, h.last_us, h.events) for h in hosts if h.events])
    db.execute("COMMIT")
    fill.sessions = len(sessions)
    fill.step(f"make and insert {fill.events:,} events, {len(sessions):,} session rows",
              time.perf_counter() - start)
    start = time.perf_counter()
    for _, sql in indexes:
        db.execute(sql)
    db.execute("ANALYZE")
    db.close()
    fill.step("build the indexes, ANALYZE", time.perf_counter() - start)
    return fill


# -- the admin's questions -------------------------------------------------------------------


def pick(store: Store, now: int) -> tuple[str, str]:
    """A host with a session open now and events today (the most events of those), and a
    user of it."""
    rows = store._select(  # the bench's own look: not a CLI question
        "SELECT h.host FROM hosts h JOIN sessions s ON s.host = h.host WHERE"
        f" h.last_us > {now - DAY} AND (s.logon_us, s.logon_seq) > (s.logoff_us,"
        " s.logoff_seq) ORDER BY h.events DESC, h.host LIMIT 1", ()) or store._select(
        "SELECT host FROM hosts ORDER BY last_us DESC LIMIT 1", ())  # a small fleet
    host = rows[0][0]
    user = store._select(f"SELECT user_name FROM events WHERE host = {store._ph()} AND"
                         " user_name IS NOT NULL AND time_us > 0 LIMIT 1", (host,))[0][0]
    return host, user


def questions(url: str, host: str, user: str) -> list[tuple[str, float, Callable[[], int]]]:
    """(what, goal in seconds, run it: the rows out)."""
    s = ["--store", url]
    h = ["--host", host]

    def cli(*argv: str) -> Callable[[], int]:
        return lambda: run_cli(list(argv))

    def overview() -> int:
        with open_store(url) as store:
            return len(store.host_summaries())

    return [
        ("sens history --host H --since -1d", 1, cli("history", "--json", *s, *h, "--since=-1d")),
        ("sens history --since -1h (all hosts)", 3, cli("history", "--json", *s, "--since=-1h")),
        (f"sens history --host H --filter \"bstrUserName = '{user}'\" (a year)", 1,
         cli("history", "--json", *s, *h, "--filter", f"bstrUserName = '{user}'")),
        ("sens sessions (all open)", 3, cli("sessions", "--json", *s)),
        ("sens sessions --host H", 1, cli("sessions", "--json", *s, *h)),
        ("sens timeline --host H --since -7d", 1, cli("timeline", "--json", *s, *h, "--since=-7d")),
        ("sens timeline --since -1h (all hosts)", 3, cli("timeline", "--json", *s, "--since=-1h")),
        ("Store.host_summaries() (sens web's overview)", 3, overview),
    ]


def time_questions(url: str, now: int) -> list[tuple[str, int, float, float]]:
    """Each question: (what, rows out, best of 3 seconds, goal)."""
    with open_store(url) as store:  # opened once first: a new index is built here, not timed
        host, user = pick(store, now)
    print(f"  H = {host}, u = {user}", flush=True)
    out = []
    for what, goal, fn in questions(url, host, user):
        seconds, rows = best(fn)
        assert isinstance(rows, int)
        out.append((what, rows, seconds, goal))
        print(f"  {what}: {rows} rows, {seconds:.3f} s", flush=True)
    return out


def time_expire_pg(url: str) -> list[tuple[str, int, float, float]]:
    """Retention of a month both ways, each with its commit and from a CHECKPOINT (neither
    pays the other's WAL): Store.expire of the oldest month (the partition dropped), then a
    row DELETE of the next one (a month of about the same size), and the VACUUM it leaves."""
    import psycopg

    from pysens.fleet.store.postgres import month_bounds

    with open_store(url) as store:
        months = store.partitions() or []
    names = [f"{y:04d}-{m:02d}" for y, m in months[:2]]
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CHECKPOINT")
    with open_store(url) as store:
        start = time.perf_counter()
        gone = store.expire(month_bounds(*months[0])[1])
        t_drop = time.perf_counter() - start
    lo, hi = month_bounds(*months[1])
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CHECKPOINT")
        start = time.perf_counter()
        n = db.execute("DELETE FROM events WHERE time_us >= %s AND time_us < %s",
                       (lo, hi)).rowcount
        t_delete = time.perf_counter() - start
        start = time.perf_counter()
        db.execute(f"VACUUM events_y{months[1][0]:04d}m{months[1][1]:02d}")
        t_vacuum = time.perf_counter() - start
    return [(f"Store.expire(): the month {names[0]} dropped (hosts, sessions kept in step)",
             gone, t_drop, 1),
            (f"peer: DELETE FROM events, the month {names[1]} (committed)", n, t_delete, 0),
            (f"peer: the VACUUM that DELETE leaves ({names[1]})", 0, t_vacuum, 0)]


def time_expire_sqlite(url: str, now: int) -> list[tuple[str, int, float, float]]:
    """SQLite has only row deletes: Store.expire of the oldest 30 days."""
    with open_store(url) as store:
        start = time.perf_counter()
        gone = store.expire(now - 335 * DAY)
        return [("Store.expire() of the oldest 30 days (row deletes)", gone,
                 time.perf_counter() - start, 0)]


def table(rows: list[tuple[str, int, float, float]]) -> str:
    """The Markdown table."""
    lines = ["| query | rows out | seconds | goal |", "|---|---:|---:|---|"]
    for what, n, seconds, goal in rows:
        lines.append(f"| `{what}` | {n:,} | {seconds:.3f} | "
                     f"{f'< {goal:g} s' if goal else '—'} "
                     f"{'' if not goal else ('met' if seconds < goal else 'MISSED')} |")
    return "\n".join(lines)


def run_pg(args: argparse.Namespace, schema: str, url: str, now: int) -> None:
    """Fill (unless --reuse) and time the PostgreSQL store."""
    import psycopg

    if not args.reuse:
        with psycopg.connect(PG_BASE, autocommit=True) as db:
            db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            db.execute(f'CREATE SCHEMA "{schema}"')
    try:
        if not args.reuse:
            print(f"PostgreSQL: {args.events:,} events from {args.hosts:,} hosts over a year"
                  f" into schema {schema}", flush=True)
            fill = fill_pg(url, make_hosts(args.hosts, args.seed), args.events, now)
            total = sum(s for _, s in fill.steps)
            print(f"  filled in {total:.0f} s ({fill.events / total:,.0f} events/s)")
        with psycopg.connect(url) as db:
            size = db.execute("SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits"
                              " WHERE inhparent = 'events'::regclass").fetchone()
        print(f"  events with their indexes: {int(size[0] if size else 0) / 1e9:.2f} GB")
        rows = time_questions(url, now)
        if not args.no_expire:
            rows += time_expire_pg(url)
        print("\nPostgreSQL\n" + table(rows), flush=True)
    finally:
        if not args.keep:
            with psycopg.connect(PG_BASE, autocommit=True) as db:
                db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000,
                        help="the PostgreSQL store's (0: none)")
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--sqlite-events", type=int, default=1_000_000,
                        help="the SQLite store beside (0: none)")
    parser.add_argument("--sqlite-hosts", type=int, default=1_000)
    parser.add_argument("--schema", help="the PostgreSQL schema (default: a new one)")
    parser.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    parser.add_argument("--reuse", action="store_true",
                        help="the schema is filled already: time the questions only")
    parser.add_argument("--no-expire", action="store_true",
                        help="leave the oldest month (a schema kept for another run)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true",
                        help="1,000,000 events from 1,000 hosts, SQLite 100,000 (~1 min)")
    args = parser.parse_args()
    if args.quick:
        args.events, args.hosts, args.sqlite_events, args.sqlite_hosts = (
            1_000_000, 1_000, 100_000, 100)
    schema = args.schema or f"sens_bench_{os.getpid()}"
    url = f"{PG_BASE}?options=-csearch_path%3D{schema}"
    now = now_floor()
    begun = time.perf_counter()
    if args.events:
        run_pg(args, schema, url, now)
    if args.sqlite_events:
        with tempfile.TemporaryDirectory() as tmp:
            lite = f"sqlite:///{Path(tmp) / 'fleet.db'}"
            print(f"\nSQLite: {args.sqlite_events:,} events from {args.sqlite_hosts:,} hosts",
                  flush=True)
            fill_sqlite(lite, make_hosts(args.sqlite_hosts, args.seed + 1), args.sqlite_events,
                        now)
            rows = time_questions(lite, now) + time_expire_sqlite(lite, now)
            print("\nSQLite\n" + table(rows), flush=True)
    print(f"\n(ran {time.perf_counter() - begun:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
