"""wtmp history: pysens reading + pairing vs util-linux ``last`` on the same file.

Builds a wtmp of RECORDS records with the real ``utmpdump -r`` (boots, shutdowns, crashes,
logins with their logouts, logins superseded on their line), then times, best of REPEAT runs:

* ``last -f FILE -x > /dev/null`` (the peer: reads and pairs the same records);
* pysens reading the records only, and turning them into observations;
* pysens reading + pairing (records -> observations -> tracker -> SENS events);
* the same through the importer, each batch's journal rows built but not stored;
* ``sens import wtmp FILE`` into a fresh journal, and again into the same journal (nothing new);
* the floor under any importer that keeps this journal: the rows that import writes, built
  beforehand (by the journal's own encoder), inserted the way the journal inserts them (its
  schema, made by ``Journal``; its settings and transactions), by Python's ``sqlite3`` and by
  ``sqlite_floor.c`` (compiled here with gcc; needs the SQLite headers, Debian's
  libsqlite3-dev), which has no Python in it at all;
* the journal's size on disk after a checkpoint, per event.

Run: ``python bench/bench_wtmp.py [RECORDS]`` (default 200,000).
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import REPEAT, best  # bench/ is sys.path[0] when run as a script
from pysens.cli import main as sens_main
from pysens.events import SensEvent
from pysens.importer import Importer
from pysens.journal import Journal
from pysens.journal.rows import COLUMNS, Row, RowCodec
from pysens.journal.schema import LAST_SEQ
from pysens.sources.utmprecord import LAYOUTS
from pysens.sources.wtmp import read_records, read_wtmp
from pysens.tracker import Tracker


def _line(type_: int, user: str, line: str, t: datetime, pid: int, ident: str,
          host: str = "", addr: str = "0.0.0.0") -> str:
    stamp = t.strftime("%Y-%m-%dT%H:%M:%S") + f",{t.microsecond:06d}+00:00"
    return (f"[{type_}] [{pid:05d}] [{ident:<4.4}] [{user:<8}] [{line:<12}] [{host:<20}] "
            f"[{addr:<15}] [{stamp}]")


def build_text(records: int, seed: int = 7) -> str:
    """utmpdump text of a busy server's wtmp: ``records`` records in time order."""
    rnd = random.Random(seed)
    users = [f"user{i:02d}" for i in range(40)]
    t = datetime(2020, 1, 1, tzinfo=UTC)
    out: list[str] = []
    open_lines: dict[str, int] = {}
    pid = 1000
    while len(out) < records:
        t += timedelta(seconds=rnd.randint(1, 90), microseconds=rnd.randint(0, 999_999))
        r = rnd.random()
        if r < 0.002:  # a boot, after a clean shutdown two times in three, else a crash
            if rnd.random() < 0.66:
                out.append(_line(1, "shutdown", "~", t, 0, "~~", "6.1.0-bench"))
                t += timedelta(seconds=30)
            out.append(_line(2, "reboot", "~", t, 0, "~~", "6.1.0-bench"))
            out.append(_line(1, "runlevel", "~", t + timedelta(seconds=5), 53, "~~",
                             "6.1.0-bench"))
            open_lines.clear()
        elif open_lines and (r < 0.5 or len(open_lines) > 30):
            line = rnd.choice(list(open_lines))
            out.append(_line(8, "", line, t, open_lines.pop(line), line[-4:]))
        else:
            line = f"pts/{rnd.randint(0, 40)}"
            pid += 1
            host = f"10.0.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}"
            # A line still open gets a new login now and then: the old one is superseded.
            out.append(_line(7, rnd.choice(users), line, t, pid, line[-4:], host, host))
            open_lines[line] = pid
    return "\n".join(out[:records]) + "\n"


_BATCH = 5_000  # the importer's batch: one transaction each


@dataclass
class Rows:
    """What ``sens import`` writes for a file into a fresh journal: the event rows (exactly as
    ``Journal`` encodes them) and the dictionary entries they use."""

    events: list[Row]
    names: list[tuple[int, str]]
    shapes: list[tuple[int, str]]


def journal_rows(wtmp: Path) -> Rows:
    """The rows ``sens import`` writes for ``wtmp`` into a fresh journal, in order."""
    events: list[SensEvent] = []
    Importer(None, on_events=events.extend).import_files("wtmp", [str(wtmp)])
    codec = RowCodec()
    rows: list[Row] = []
    for n in range(0, len(events), _BATCH):
        rows += codec.encode(events[n:n + _BATCH], n + 1, history=True)
    return Rows(rows, list(codec.new_names), list(codec.new_shapes))


def _fresh(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


_INSERT = (f"INSERT INTO events({', '.join(COLUMNS)}) VALUES "
           f"({', '.join('?' * len(COLUMNS))})")


def python_floor(rows: Rows, journal: Path) -> Callable[[], int]:
    """The rows inserted with Python's sqlite3 alone into the journal's own schema (made by
    ``Journal``), transaction by transaction as ``Journal`` inserts them."""
    def go() -> int:
        _fresh(journal)
        Journal(journal).close()  # the schema, the pragmas: the journal's own
        db = sqlite3.connect(journal, isolation_level=None)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO names(code, text) VALUES (?, ?)", rows.names)
        db.executemany("INSERT INTO shapes(code, keys) VALUES (?, ?)", rows.shapes)
        db.execute("COMMIT")
        events = rows.events
        for n in range(0, len(events), _BATCH):
            db.execute("BEGIN IMMEDIATE")
            db.execute("SELECT code, text FROM names WHERE code > ?", (len(rows.names),))
            db.execute("SELECT code, keys FROM shapes WHERE code > ?", (len(rows.shapes),))
            db.execute(LAST_SEQ).fetchone()
            db.execute("SELECT max(id) FROM events").fetchone()
            db.executemany(_INSERT, events[n:n + _BATCH])
            db.execute("COMMIT")
        db.close()
        return len(events)
    return go


def _value(v: object) -> bytes:
    if v is None:
        return b"\0"
    if isinstance(v, int):
        return b"\1" + struct.pack("=q", v)
    data = v if isinstance(v, bytes) else str(v).encode()
    return (b"\3" if isinstance(v, bytes) else b"\2") + struct.pack("=I", len(data)) + data


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def c_floor(rows: Rows, tmp: Path) -> Callable[[], float] | None:
    """The rows inserted from C (``sqlite_floor.c``) into the journal's own schema; None when
    it cannot be built here. The callable returns the program's own timing (loading the rows
    into memory excluded)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    program = tmp / "sqlite_floor"
    source = Path(__file__).with_name("sqlite_floor.c")
    built = subprocess.run([gcc, "-O2", "-o", str(program), str(source), "-lsqlite3"],
                           capture_output=True, text=True)
    if built.returncode != 0:
        print(f"sqlite_floor.c not built (libsqlite3-dev missing?): {built.stderr.strip()}")
        return None
    data = tmp / "rows.bin"
    with data.open("wb") as out:
        for row in rows.events:
            out.write(struct.pack("=I", len(row)) + b"".join(map(_value, row)))
    # The schema as a fresh journal has it (the migrations' result), and its dictionaries.
    model = tmp / "model.db"
    _fresh(model)
    Journal(model).close()
    with sqlite3.connect(model) as db:
        ddl = [sql for (sql,) in db.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'"
            " ORDER BY rowid")]
    inserts = [f"INSERT INTO names(code, text) VALUES ({c}, {_sql_text(t)})"
               for c, t in rows.names]
    inserts += [f"INSERT INTO shapes(code, keys) VALUES ({c}, {_sql_text(k)})"
                for c, k in rows.shapes]
    schema = tmp / "schema.sql"
    schema.write_text(";\n".join(ddl + inserts) + ";\n")
    journal = tmp / "floor-c.db"

    def go() -> float:
        _fresh(journal)
        done = subprocess.run([str(program), str(journal), str(data), str(schema), str(_BATCH),
                               _INSERT], capture_output=True, text=True, check=True)
        return float(done.stdout)
    return go


def bytes_per_event(journal: Path) -> tuple[int, int]:
    """The journal's file size after a checkpoint (indexes included) and its event count."""
    with closing(sqlite3.connect(journal)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (n,) = db.execute("SELECT count(*) FROM events").fetchone()
    return journal.stat().st_size, int(n)


def main() -> None:
    records = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    with tempfile.TemporaryDirectory() as tmp:
        wtmp = Path(tmp) / "wtmp"
        subprocess.run(["utmpdump", "-r", "-o", str(wtmp)], input=build_text(records).encode(),
                       check=True, capture_output=True)
        size = wtmp.stat().st_size
        assert size == records * 384, size

        def run_last() -> None:
            with open(os.devnull, "w") as null:
                subprocess.run(["last", "-f", str(wtmp), "-x"], stdout=null, check=True,
                               env={"TZ": "UTC", "LC_ALL": "C", "PATH": os.environ["PATH"]})

        def read_only() -> int:
            return sum(1 for _ in read_records(str(wtmp), print))

        def read_floor() -> int:
            # The least Python can do with the file: unpack each record and decode its three
            # strings and its time; nothing checked, no objects (what "within 2x of last" is
            # up against, last being C).
            codec = LAYOUTS[0].codec  # the 384-byte little-endian record
            n = 0
            for (_t, _pid, line, _id, user, host, *_, sec, usec, _a0, _a1, _a2, _a3,
                 _u) in codec.iter_unpack(wtmp.read_bytes()):
                _ = (line.rstrip(b"\0").decode(), user.rstrip(b"\0").decode(),
                     host.rstrip(b"\0").decode(), sec + usec / 1e6)
                n += 1
            return n

        def read_observations() -> int:
            return sum(1 for _ in read_wtmp(str(wtmp), print))

        def read_and_pair() -> int:
            tracker = Tracker(host="bench")
            return sum(len(tracker.feed(obs)) for obs in read_wtmp(str(wtmp), print))

        def pair_and_encode() -> int:
            codec = RowCodec()
            sizes: list[int] = []
            Importer(None, host="bench", on_events=lambda evs: sizes.append(
                len(codec.encode(evs, 1, True)))).import_files("wtmp", [str(wtmp)])
            return sum(sizes)

        def sens_import(journal: Path) -> Callable[[], int]:
            def go() -> int:
                journal.unlink(missing_ok=True)
                return sens_main(["--journal", str(journal), "import", "wtmp", str(wtmp)])
            return go

        t_last, _ = best(run_last)
        t_read, n = best(read_only)
        t_read_floor, _ = best(read_floor)
        t_obs, _ = best(read_observations)
        t_pair, events = best(read_and_pair)
        t_encode, encoded = best(pair_and_encode)
        journal = Path(tmp) / "journal.db"
        t_import, _ = best(sens_import(journal))
        size_on_disk, stored = bytes_per_event(journal)
        start = time.perf_counter()
        sens_main(["--journal", str(journal), "import", "wtmp", str(wtmp)])
        t_again = time.perf_counter() - start
        rows = journal_rows(wtmp)
        t_floor_py, _ = best(python_floor(rows, Path(tmp) / "floor-py.db"))
        floor_c = c_floor(rows, Path(tmp))
        t_floor_c = min(floor_c() for _ in range(REPEAT)) if floor_c is not None else None

    print(f"wtmp: {records:,} records ({size / 1e6:.1f} MB), {events:,} SENS events; "
          f"best of {REPEAT}, wall time")
    print(f"{'run':<46}{'seconds':>9}{'records/s':>12}{'vs last':>9}")
    lines = [
        ("last -f FILE -x > /dev/null", t_last),
        ("pysens: read records", t_read),
        ("pysens: read -> observations", t_obs),
        ("pysens: read + pair (tracker -> events)", t_pair),
        ("pysens: read + pair + journal rows, no SQLite", t_encode),
        ("sens import (fresh journal)", t_import),
        ("sens import again (all already journaled)", t_again),
        ("floor: the same rows, sqlite3 (Python) alone", t_floor_py),
        ("floor: reading, struct.iter_unpack + 3 strings", t_read_floor),
    ]
    if t_floor_c is not None:
        lines.append(("floor: the same rows, from C (sqlite_floor.c)", t_floor_c))
    for name, secs in lines:
        print(f"{name:<46}{secs:>9.3f}{records / secs:>12,.0f}{secs / t_last:>8.2f}x")
    print(f"sens import vs the Python floor: {t_import / t_floor_py:.2f}x, vs its own pipeline "
          f"+ that floor: {t_import / (t_encode + t_floor_py):.2f}x; read records vs last: "
          f"{t_read / t_last:.2f}x, vs the Python reading floor: {t_read / t_read_floor:.2f}x")
    print(f"journal on disk after a checkpoint: {size_on_disk:,} bytes for {stored:,} events, "
          f"{size_on_disk / stored:.0f} bytes per event")
    assert n == records and encoded == events == len(rows.events) == stored


if __name__ == "__main__":
    main()
