"""wtmp history: pysens reading + pairing vs util-linux ``last`` on the same file.

Builds a wtmp of RECORDS records with the real ``utmpdump -r`` (boots, shutdowns, crashes,
logins with their logouts, logins superseded on their line), then times, best of REPEAT runs:

* ``last -f FILE -x > /dev/null`` (the peer: reads and pairs the same records);
* pysens reading the records only, and turning them into observations;
* pysens reading + pairing (records -> observations -> tracker -> SENS events);
* the same through the importer, each batch's journal bodies (JSON) built but not stored;
* ``sens import wtmp FILE`` into a fresh journal, and again into the same journal (nothing new);
* the floor under any importer that keeps this journal: the rows that import writes, built
  beforehand, inserted the way the journal inserts them (same schema, settings, transactions),
  by Python's ``sqlite3`` and by ``sqlite_floor.c`` (compiled here with gcc; needs the SQLite
  headers, Debian's libsqlite3-dev), which has no Python in it at all.

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
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import REPEAT, best  # bench/ is sys.path[0] when run as a script
from pysens.cli import main as sens_main
from pysens.events import SensEvent, json_texts
from pysens.importer import Importer
from pysens.journal import MIGRATIONS
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


Row = tuple[int, str, int, str, str, str | None, str | None, str]
_BATCH = 5_000  # the importer's batch: one transaction each


def journal_rows(wtmp: Path) -> list[Row]:
    """The rows ``sens import`` writes for ``wtmp`` into a fresh journal, in order."""
    events: list[SensEvent] = []
    Importer(None, on_events=events.extend).import_files("wtmp", [str(wtmp)])
    return [(seq, e.id, int(e.time.timestamp()) * 1_000_000 + e.time.microsecond, e.host,
             str(e.method), e.user_name, e.session_id, body)
            for seq, (e, body) in enumerate(zip(events, json_texts(events), strict=True), 1)]


def _fresh(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def python_floor(rows: list[Row], journal: Path) -> Callable[[], int]:
    """The rows inserted with Python's sqlite3 alone, as ``Journal`` inserts them."""
    def go() -> int:
        _fresh(journal)
        db = sqlite3.connect(journal, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript("".join(MIGRATIONS))
        for n in range(0, len(rows), _BATCH):
            chunk = rows[n:n + _BATCH]
            db.execute("BEGIN IMMEDIATE")
            db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
            db.executemany("INSERT INTO events(seq, id, time_us, host, method, user_name,"
                           " session_id, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", chunk)
            db.executemany("INSERT OR IGNORE INTO history(seq) VALUES (?)",
                           [(r[0],) for r in chunk])
            db.execute("COMMIT")
        db.close()
        return len(rows)
    return go


def _text(value: str | None) -> bytes:
    if value is None:
        return struct.pack("=I", 0xFFFFFFFF)
    data = value.encode()
    return struct.pack("=I", len(data)) + data


#: The least an idempotent SQLite journal of these events could be: the columns and the unique
#: id (re-importing must add nothing), the history marks; no body, no time index.
LEAN_SCHEMA = """
CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, time_us INTEGER NOT NULL,
    host TEXT NOT NULL, method TEXT NOT NULL, user_name TEXT, session_id TEXT, body TEXT NOT NULL);
CREATE TABLE history (seq INTEGER PRIMARY KEY);
"""


def c_floor(rows: list[Row], tmp: Path, *, lean: bool = False) -> Callable[[], float] | None:
    """The rows inserted from C (``sqlite_floor.c``); None when it cannot be built here. The
    callable returns the program's own timing (loading the rows into memory excluded).

    ``lean``: into :data:`LEAN_SCHEMA`, every body empty."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    program = tmp / "sqlite_floor"
    tag = "-lean" if lean else ""
    source = Path(__file__).with_name("sqlite_floor.c")
    built = subprocess.run([gcc, "-O2", "-o", str(program), str(source), "-lsqlite3"],
                           capture_output=True, text=True)
    if built.returncode != 0:
        print(f"sqlite_floor.c not built (libsqlite3-dev missing?): {built.stderr.strip()}")
        return None
    data = tmp / f"rows{tag}.bin"
    with data.open("wb") as out:
        for seq, id_, time_us, host, method, user, session, body in rows:
            out.write(struct.pack("=qq", seq, time_us))
            out.write(b"".join(map(_text, (id_, host, method, user, session,
                                           "" if lean else body))))
    schema = tmp / f"schema{tag}.sql"
    schema.write_text(LEAN_SCHEMA if lean else "".join(MIGRATIONS))
    journal = tmp / f"floor-c{tag}.db"

    def go() -> float:
        _fresh(journal)
        done = subprocess.run([str(program), str(journal), str(data), str(schema), str(_BATCH)],
                              capture_output=True, text=True, check=True)
        return float(done.stdout)
    return go


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

        def read_observations() -> int:
            return sum(1 for _ in read_wtmp(str(wtmp), print))

        def read_and_pair() -> int:
            tracker = Tracker(host="bench")
            return sum(len(tracker.feed(obs)) for obs in read_wtmp(str(wtmp), print))

        def pair_and_encode() -> int:
            sizes: list[int] = []
            Importer(None, host="bench", on_events=lambda evs: sizes.append(
                len(json_texts(evs)))).import_files("wtmp", [str(wtmp)])
            return sum(sizes)

        def sens_import(journal: Path) -> Callable[[], int]:
            def go() -> int:
                journal.unlink(missing_ok=True)
                return sens_main(["--journal", str(journal), "import", "wtmp", str(wtmp)])
            return go

        t_last, _ = best(run_last)
        t_read, n = best(read_only)
        t_obs, _ = best(read_observations)
        t_pair, events = best(read_and_pair)
        t_encode, encoded = best(pair_and_encode)
        journal = Path(tmp) / "journal.db"
        t_import, _ = best(sens_import(journal))
        start = time.perf_counter()
        sens_main(["--journal", str(journal), "import", "wtmp", str(wtmp)])
        t_again = time.perf_counter() - start
        rows = journal_rows(wtmp)
        t_floor_py, _ = best(python_floor(rows, Path(tmp) / "floor-py.db"))
        floor_c = c_floor(rows, Path(tmp))
        t_floor_c = min(floor_c() for _ in range(REPEAT)) if floor_c is not None else None
        lean_c = c_floor(rows, Path(tmp), lean=True)
        t_lean_c = min(lean_c() for _ in range(REPEAT)) if lean_c is not None else None

    print(f"wtmp: {records:,} records ({size / 1e6:.1f} MB), {events:,} SENS events; "
          f"best of {REPEAT}, wall time")
    print(f"{'run':<46}{'seconds':>9}{'records/s':>12}{'vs last':>9}")
    lines = [
        ("last -f FILE -x > /dev/null", t_last),
        ("pysens: read records", t_read),
        ("pysens: read -> observations", t_obs),
        ("pysens: read + pair (tracker -> events)", t_pair),
        ("pysens: read + pair + JSON bodies, no SQLite", t_encode),
        ("sens import (fresh journal)", t_import),
        ("sens import again (all already journaled)", t_again),
        ("floor: the same rows, sqlite3 (Python) alone", t_floor_py),
    ]
    if t_floor_c is not None:
        lines.append(("floor: the same rows, from C (sqlite_floor.c)", t_floor_c))
    if t_lean_c is not None:
        lines.append(("floor, lean: id+columns only, from C", t_lean_c))
    for name, secs in lines:
        print(f"{name:<46}{secs:>9.3f}{records / secs:>12,.0f}{secs / t_last:>8.2f}x")
    assert n == records and encoded == events == len(rows)


if __name__ == "__main__":
    main()
