"""Retention: the journal kept under an age and a size, the way journalctl users expect.

What goes, in small batches (each its own short transaction, so a live append waits at most
one batch), oldest first:

1. events older than ``max_age`` (their time), but not one that a reader has not had yet: a
   forwarder (any cursor that is not a subscription's) or an enabled persistent subscription
   whose cursor is before it (imported history excepted for subscriptions: they are never
   sent it);
2. while the file's used pages exceed ``max_size``: the oldest events (journal order) a reader
   has had, then, if that is not enough, undelivered ones too. Those are counted per cursor
   (``cursors.lost``, shown by ``sens subscriptions list``) and said in one log line.

Then freed pages go back to the file system a few at a time (incremental vacuum), so the file
shrinks. Seqs are never given again (AUTOINCREMENT), so cursors stay meaningful.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..events import format_time
from .events import Journal
from .limits import format_size
from .rows import FLAG_HISTORY, time_us
from .schema import JournalError

__all__ = ["Readers", "Retention", "RetentionResult"]

log = logging.getLogger("pysens.journal")

#: Events deleted per transaction: a few milliseconds of holding the write lock.
BATCH = 500
#: Pages given back to the file system per step of the incremental vacuum.
VACUUM_PAGES = 256
_SUBSCRIPTION = "subscription:"


@dataclass(frozen=True, slots=True)
class Readers:
    """The journal's readers as retention sees them: the lowest cursor of the forwarders (and
    any other reader that is not a subscription) and of the enabled subscriptions (None: there
    is none), and every cursor by name."""

    forward_floor: int | None
    subscription_floor: int | None
    cursors: dict[str, int]
    #: cursor name -> whether it is a subscription's (else a forwarder's, or another reader's)
    subscriptions: dict[str, bool]
    #: cursor name -> how to name its reader in a message
    labels: dict[str, str]


@dataclass(slots=True)
class RetentionResult:
    """What one run did."""

    deleted: int = 0
    #: Of them, events a reader had not had yet (deleted because of ``max_size``).
    forced: int = 0
    #: Cursor name -> how many of its undelivered events were deleted.
    lost: dict[str, int] = field(default_factory=dict)
    #: Events older than ``max_age`` kept because a reader has not had them.
    kept_old: int = 0
    size_before: int = 0
    size_after: int = 0
    #: The longest a batch held the write lock (seconds).
    longest_batch: float = 0.0


class Retention:
    """Applies ``max_age`` / ``max_size`` to ``journal``; :meth:`run` once, :meth:`serve` in
    the daemon. ``pause`` seconds between batches leave the lock to live appends."""

    def __init__(self, journal: Journal, *, max_age: timedelta | None = None,
                 max_size: int | None = None, batch: int = BATCH, pause: float = 0.005,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.journal = journal
        self.max_age = max_age
        self.max_size = max_size
        self.batch = batch
        self.pause = pause
        self.clock = clock

    # -- what the readers hold ---------------------------------------------------------------

    def readers(self) -> Readers:
        """The cursors, and which of them protect events from deletion."""
        j = self.journal
        with j._guard("read"):
            rows = j._db.execute(
                "SELECT c.name, c.seq, s.enabled, s.name FROM cursors c LEFT JOIN "
                "subscriptions s ON c.name = 'subscription:' || s.id").fetchall()
        forward: list[int] = []
        subs: list[int] = []
        cursors: dict[str, int] = {}
        kinds: dict[str, bool] = {}
        labels: dict[str, str] = {}
        for name, seq, enabled, sub_name in rows:
            cursors[name] = int(seq)
            is_sub = name.startswith(_SUBSCRIPTION)
            kinds[name] = is_sub
            labels[name] = (f"subscription {sub_name!r}" if sub_name is not None else
                            f"forwarder {name[len('forward:'):]}" if name.startswith("forward:")
                            else name)
            if not is_sub:
                forward.append(int(seq))
            elif enabled:  # a removed subscription's cursor (no row) protects nothing
                subs.append(int(seq))
        return Readers(min(forward, default=None), min(subs, default=None), cursors, kinds,
                       labels)

    @staticmethod
    def _protect(readers: Readers) -> tuple[str, list[object]]:
        """SQL: the events no reader still needs."""
        clauses: list[str] = []
        params: list[object] = []
        if readers.forward_floor is not None:
            clauses.append("seq <= ?")
            params.append(readers.forward_floor)
        if readers.subscription_floor is not None:
            clauses.append(f"(seq <= ? OR flags & {FLAG_HISTORY})")
            params.append(readers.subscription_floor)
        return (" AND ".join(clauses) or "1"), params

    # -- sizes --------------------------------------------------------------------------------

    def used(self) -> int:
        """Bytes of the file's pages in use (what ``max_size`` limits)."""
        j = self.journal
        with j._guard("read"):
            db = j._db
            pages = int(db.execute("PRAGMA page_count").fetchone()[0])
            free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
            size = int(db.execute("PRAGMA page_size").fetchone()[0])
        return (pages - free) * size

    def file_size(self) -> int:
        """Bytes of the file itself (its pages, free ones included)."""
        j = self.journal
        with j._guard("read"):
            db = j._db
            pages = int(db.execute("PRAGMA page_count").fetchone()[0])
            return pages * int(db.execute("PRAGMA page_size").fetchone()[0])

    # -- deleting -----------------------------------------------------------------------------

    def _delete(self, where: str, params: list[object], order: str, readers: Readers,
                result: RetentionResult, forced: bool) -> int:
        """Delete one batch of the events ``where`` selects, oldest by ``order``; how many."""
        j = self.journal
        began = time.monotonic()
        lost: dict[str, int] = {}
        with j._guard("vacuum"):
            db = j._db
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute(
                    f"SELECT seq, flags & {FLAG_HISTORY} FROM events WHERE {where} "  # noqa: S608 - placeholders only; the SQL text is this module's own
                    f"ORDER BY {order} LIMIT ?", (*params, self.batch)).fetchall()
                if rows:
                    seqs = [r[0] for r in rows]
                    lost = _losses(rows, readers)
                    db.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in seqs])
                    now = format_time(datetime.now(UTC))
                    db.executemany("UPDATE cursors SET lost = lost + ?, lost_at = ? "
                                   "WHERE name = ?", [(n, now, c) for c, n in lost.items()])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        result.longest_batch = max(result.longest_batch, time.monotonic() - began)
        if rows:
            result.deleted += len(rows)
            for c, n in lost.items():
                result.lost[c] = result.lost.get(c, 0) + n
            if forced:
                result.forced += len(rows)
        return len(rows)

    def _breathe(self) -> None:
        if self.pause:
            time.sleep(self.pause)

    def run(self, *, max_age: timedelta | None = None, max_size: int | None = None,
            ) -> RetentionResult:
        """Apply the limits (these, else the policy's) once; what was done. Blocks: the daemon
        runs it in a thread."""
        max_age = max_age or self.max_age
        max_size = max_size or self.max_size
        result = RetentionResult(size_before=self.file_size())
        readers = self.readers()
        protect, params = self._protect(readers)
        if max_age is not None:
            cutoff = time_us(self.clock() - max_age)
            while self._delete(f"time_us < ? AND {protect}", [cutoff, *params], "time_us",
                               readers, result, forced=False):
                self._breathe()
            j = self.journal
            with j._guard("read"):
                result.kept_old = int(j._db.execute(
                    "SELECT count(*) FROM events WHERE time_us < ?", (cutoff,)).fetchone()[0])
        if max_size is not None:
            # The events no reader needs first, then (only if still too big) the rest.
            for where, where_params, forced in ((protect, params, False), ("1", [], True)):
                while self.used() > max_size and self._delete(
                        where, where_params, "seq", readers, result, forced=forced):
                    self._breathe()
        if result.deleted:
            self._give_back()
        result.size_after = self.file_size()
        self._tell(result, max_size, readers)
        return result

    def _give_back(self) -> None:
        """Shrink the file by its free pages, a few at a time (incremental vacuum: nothing
        on a journal made before it was turned on, whose free pages are reused instead)."""
        j = self.journal
        while True:
            with j._guard("vacuum"):
                free = int(j._db.execute("PRAGMA freelist_count").fetchone()[0])
                if not free or int(j._db.execute("PRAGMA auto_vacuum").fetchone()[0]) != 2:
                    break
                j._db.execute(f"PRAGMA incremental_vacuum({VACUUM_PAGES})")
            self._breathe()
        try:
            with j._guard("vacuum"):
                j._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except JournalError:
            pass  # a reader holds the WAL: the next automatic checkpoint does it

    def _tell(self, result: RetentionResult, max_size: int | None, readers: Readers) -> None:
        path = self.journal.path
        if result.forced:
            what = ", ".join(f"{readers.labels.get(c, c)} lost {n:,}" for c, n in
                             sorted(result.lost.items()) if n)
            log.error("the journal %s is over its max_size %s: deleted %s event(s) not yet "
                      "delivered (%s)", path, format_size(max_size or 0), f"{result.forced:,}",
                      what or "no reader")
        elif result.deleted:
            log.info("retention deleted %s event(s) from %s (%s -> %s)", f"{result.deleted:,}",
                     path, format_size(result.size_before), format_size(result.size_after))
        if result.kept_old:
            log.info("%s event(s) older than max_age are kept in %s: a reader has not had "
                     "them yet", f"{result.kept_old:,}", path)

    # -- the daemon's loop ------------------------------------------------------------------

    async def serve(self, interval: float = 300.0) -> None:
        """Apply the limits now and every ``interval`` seconds until cancelled; a failure is
        logged in one line and tried again next time."""
        while True:
            try:
                await asyncio.to_thread(self.run)
            except (JournalError, sqlite3.Error) as e:
                log.error("retention of %s: %s", self.journal.path, e)
            await asyncio.sleep(interval)


def _losses(rows: list[tuple[int, int]], readers: Readers) -> dict[str, int]:
    """Per cursor, how many of the deleted rows ``(seq, history)`` it had not had yet
    (history does not count for a subscription: it is never sent it)."""
    lost: dict[str, int] = {}
    for name, cursor in readers.cursors.items():
        is_sub = readers.subscriptions[name]
        n = sum(1 for seq, history in rows if seq > cursor and not (is_sub and history))
        if n:
            lost[name] = n
    return lost

