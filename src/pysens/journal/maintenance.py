"""What ``sens journal`` reports about the file: its disk usage and its soundness."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .events import Journal
from .schema import MIGRATIONS

__all__ = ["Reader", "Usage", "recover_hint", "usage", "verify"]


@dataclass(frozen=True, slots=True)
class Reader:
    """A cursor: whose it is, where it is, how many events retention deleted before it had
    them (and when it last did)."""

    name: str
    label: str
    seq: int
    behind: int
    lost: int
    lost_at: str | None
    enabled: bool


@dataclass(frozen=True, slots=True)
class Usage:
    """The journal's footprint: bytes of the file, of its free pages, of the -wal file; its
    events (count, seq range, time range in microseconds) and its readers."""

    path: Path
    file_bytes: int
    free_bytes: int
    wal_bytes: int
    events: int
    first_seq: int | None
    last_seq: int
    oldest_us: int | None
    newest_us: int | None
    readers: tuple[Reader, ...]

    @property
    def disk_bytes(self) -> int:
        """The file and its -wal together."""
        return self.file_bytes + self.wal_bytes


def usage(journal: Journal) -> Usage:
    """The footprint of an open journal."""
    with journal._guard("read"):
        db = journal._db
        page = int(db.execute("PRAGMA page_size").fetchone()[0])
        pages = int(db.execute("PRAGMA page_count").fetchone()[0])
        free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
        count, first = db.execute("SELECT count(*), min(seq) FROM events").fetchone()
        (last,) = db.execute(
            "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)"
        ).fetchone()
        oldest, newest = db.execute("SELECT min(time_us), max(time_us) FROM events").fetchone()
        rows = db.execute(
            "SELECT c.name, c.seq, c.lost, c.lost_at, s.name, s.enabled FROM cursors c "
            "LEFT JOIN subscriptions s ON c.name = 'subscription:' || s.id ORDER BY c.name"
        ).fetchall()
        readers = []
        for name, seq, lost, lost_at, sub_name, enabled in rows:
            (behind,) = db.execute("SELECT count(*) FROM events WHERE seq > ?",
                                   (seq,)).fetchone()
            label = (f"subscription {sub_name!r}" if sub_name is not None else
                     f"forwarder {name[len('forward:'):]}" if name.startswith("forward:")
                     else name)
            readers.append(Reader(name, label, int(seq), int(behind), int(lost), lost_at,
                                  bool(enabled) if sub_name is not None else True))
    wal = Path(f"{journal.path}-wal")
    try:
        wal_bytes = wal.stat().st_size
    except OSError:
        wal_bytes = 0
    return Usage(journal.path, pages * page, free * page, wal_bytes, int(count), first,
                 int(last), oldest, newest, tuple(readers))


def recover_hint(path: Path | str) -> str:
    """How to save what can be read of a damaged journal."""
    return (f"`sqlite3 {path} .recover | sqlite3 {path}.recovered` saves what can be read "
            "(then move it in place of the journal)")


def _expected_schema() -> set[tuple[str, str, str]]:
    """(type, name, SQL) of everything a journal of this version holds, from the migrations
    run on an empty database."""
    with Journal(":memory:") as fresh:
        rows = fresh._db.execute(
            "SELECT type, name, coalesce(sql, '') FROM sqlite_master").fetchall()
    return {(t, n, s) for t, n, s in rows}


def verify(path: Path | str, *, quick: bool = False, limit: int = 10) -> list[str]:
    """What is wrong with the journal at ``path`` (an empty list: it is sound), each in a
    phrase: SQLite's own check of every page and index (``quick``: of the pages only),
    then its schema against this pysens's, then whether every event reads."""
    path = Path(path)
    if not path.is_file():
        return [f"there is no journal at {path}"]
    try:
        db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as e:
        return [f"it cannot be opened ({e})"]
    try:
        found: list[str] = []
        for check in (("quick_check",) if quick else ("integrity_check", "quick_check")):
            try:
                # One phrase each: SQLite's own lines ("*** in database main ***\nPage 61: …").
                found = [" ".join(str(r[0]).split()) for r in db.execute(
                    f"PRAGMA {check}({limit})")]
                break
            except sqlite3.DatabaseError as e:
                # The full check stops at a page it cannot read at all: the quick one names
                # the damaged pages.
                found = [f"SQLite cannot read it ({e})"]
        if found != ["ok"]:
            return found
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version != len(MIGRATIONS):
            return [f"its schema is version {version}, this pysens's is {len(MIGRATIONS)} "
                    "(opening it as its owner converts an older one)"]
        have = {(t, n, s or "") for t, n, s in db.execute(
            "SELECT type, name, sql FROM sqlite_master")}
    finally:
        db.close()
    names = {(t, n): sql for t, n, sql in have}
    problems = [f"{kind} {name} is " + ("missing" if (kind, name) not in names else
                                        "not as this pysens makes it")
                for kind, name, _ in sorted(_expected_schema() - have)]
    if problems:
        return problems[:limit]
    bad: list[str] = []
    with Journal(path, readonly=True) as j:
        for _ in j.query(on_bad=bad.append):
            pass
        (aside,) = j._db.execute("SELECT count(*) FROM unreadable").fetchone()
    if aside:
        bad.append(f"{aside} event(s) that could not be converted from the old format are "
                   "kept aside in its table 'unreadable'")
    return bad[:limit]
