"""The central store in PostgreSQL (psycopg 3): for a fleet, for years.

The events are in monthly range partitions of ``time_us`` (``events_y2026m12``…), created as
the first event of a month arrives, so that retention drops whole months (no row deletes, no
bloat) and a query for a time window reads only its months. Times before 2000 or after 2100
(a clock that was wrong) go to a default partition that no month ever overlaps.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..projection import fold_hosts, fold_sessions, row_values
from ..urls import redact_url
from .base import (
    Gap,
    Rejected,
    Store,
    StoredEvent,
    StoreError,
    event_insert_columns,
    host_upsert,
    now_us,
    prune_rest,
    session_upsert,
)
from .migrate import backfill, meta_version
from .schema import EVENT_COLUMNS, LATEST, pg_statistics, pg_tables

__all__ = ["PostgresStore"]

_LOW = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
_HIGH = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
_TABLES = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def month_of(us: int) -> tuple[int, int]:
    """The (year, month) a time falls in."""
    t = datetime.fromtimestamp(us / 1_000_000, UTC)
    return t.year, t.month


def month_bounds(year: int, month: int) -> tuple[int, int]:
    """The month's range in µs: ``[first, next first)``."""
    lo = datetime(year, month, 1, tzinfo=UTC)
    hi = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return int(lo.timestamp()) * 1_000_000, int(hi.timestamp()) * 1_000_000


class PostgresStore(Store):
    """The store in a PostgreSQL database (psycopg 3)."""

    _greatest = "greatest"
    _lateral = True

    def __init__(self, url: str) -> None:
        super().__init__(url)
        try:
            import psycopg
        except ImportError:
            raise StoreError(
                "a postgresql:// store needs psycopg 3: pip install 'pysens[postgres]'"
            ) from None
        self._psycopg = psycopg
        self._months: set[tuple[int, int]] = set()
        try:
            self._db = psycopg.connect(url, autocommit=False, connect_timeout=10)
            with self._db.transaction():
                # Two collectors starting at once must not race on CREATE TABLE.
                self._db.execute("SELECT pg_advisory_xact_lock(7365736)")
                # The store's reads are index lookups of milliseconds; a plan over a year of
                # monthly partitions looks costly enough to the planner that JIT would compile
                # it first, for seconds (3 s of a 0.3 s timeline window on 10M events).
                self._db.execute("SET jit = off")
                self._migrate()
                # This session's staging table for commit(): COPY into it, then one INSERT …
                # ON CONFLICT into events. Rows vanish at each commit.
                self._db.execute(
                    f"CREATE TEMP TABLE IF NOT EXISTS pysens_incoming ({_staging()})"
                    " ON COMMIT DELETE ROWS")
                # Inside the transaction: a statement outside one would leave psycopg's
                # implicit transaction open, and every later block would be a savepoint in it.
                self._months = self._known_months()
        except psycopg.Error as e:
            raise StoreError(f"cannot open the store {redact_url(url)}: {_one_line(e)}") from None

    def _ph(self) -> str:
        return "%s"

    # -- schema ------------------------------------------------------------------------------

    def _migrate(self) -> None:
        db = self._db
        version = meta_version(lambda sql: db.execute(sql).fetchall(), _TABLES)
        if version == 1:
            # pysens 0.1: one plain events table. Set it aside, build the partitioned one, and
            # move the rows over (the new columns from the bodies).
            db.execute("ALTER TABLE events RENAME TO events_v1")
            for old in ("events_time", "events_host"):
                db.execute(f"ALTER INDEX IF EXISTS {old} RENAME TO {old}_v1")
            db.execute("ALTER TABLE events_v1 RENAME CONSTRAINT events_pkey TO events_v1_pkey")
        db.execute(pg_tables())
        db.execute("CREATE TABLE IF NOT EXISTS events_other PARTITION OF events DEFAULT")
        known = db.execute("SELECT count(*) FROM pg_statistic_ext WHERE stxname ="
                           " 'sessions_closed' AND stxnamespace = (SELECT oid FROM pg_namespace"
                           " WHERE nspname = current_schema())").fetchone()
        if not (known and known[0]):
            for statement in pg_statistics(int(db.info.server_version)):
                db.execute(statement)
                db.execute("ANALYZE sessions")  # at once, not at autovacuum's next visit
        if version == 1:
            for lo, hi in db.execute("SELECT min(time_us), max(time_us) FROM events_v1"):
                if lo is not None:
                    self._create_months(int(lo), int(hi))
            cols = event_insert_columns()
            db.execute(
                f"INSERT INTO events ({cols}) SELECT id, host, time_us, method, user_name,"  # noqa: S608 - placeholders only; the SQL text is this module's own
                " session_id, seq, subject, body, published_us, stored_us,"
                " body::jsonb->>'connection', (body::jsonb->>'connection_type')::bigint,"
                " body::jsonb->>'destination', (body::jsonb->>'battery_percent')::bigint"
                " FROM events_v1 ON CONFLICT DO NOTHING")
            db.execute("DROP TABLE events_v1")
            backfill(self._backfill_rows, self._write_projections)
        if version < LATEST:
            db.execute("INSERT INTO pysens_meta (key, value) VALUES ('schema', %s) ON CONFLICT"
                       " (key) DO UPDATE SET value = excluded.value", (str(LATEST),))

    def _backfill_rows(self, after: int, limit: int) -> list[tuple[Any, ...]]:
        # Positions for paging: the events in (time, id) order, numbered as they come.
        rows = self._db.execute(
            "SELECT body, subject, published_us FROM events ORDER BY time_us, id OFFSET %s"
            " LIMIT %s", (after, limit)).fetchall()
        return [(after + n + 1, *r) for n, r in enumerate(rows)]

    def _write_projections(self, events: Sequence[StoredEvent]) -> None:
        cur = self._db.cursor()
        cur.executemany(session_upsert("%s"),
                        [row_values(r) for r in fold_sessions(events).values()])
        cur.executemany(host_upsert("%s"), [(h.host, h.first_us, h.last_us, h.events)
                                            for h in fold_hosts(events).values()])

    def _known_months(self) -> set[tuple[int, int]]:
        names = [r[0] for r in self._db.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events'"
            " AND p.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname ="
            " current_schema())").fetchall()]
        out = set()
        for name in names:
            if name.startswith("events_y") and "m" in name[8:]:
                year, _, month = name[8:].partition("m")
                out.add((int(year), int(month)))
        return out

    def _create_months(self, lo_us: int, hi_us: int) -> None:
        """The month partitions ``[lo_us, hi_us]`` needs (inside 2000..2100)."""
        lo, hi = max(lo_us, _LOW), min(hi_us, _HIGH - 1)
        if lo > hi:
            return
        year, month = month_of(lo)
        while (year, month) <= month_of(hi):
            if (year, month) not in self._months:
                a, b = month_bounds(year, month)
                self._db.execute(
                    f"CREATE TABLE IF NOT EXISTS events_y{year:04d}m{month:02d}"
                    f" PARTITION OF events FOR VALUES FROM ({a}) TO ({b})")
                self._months.add((year, month))
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)

    # -- writing -----------------------------------------------------------------------------

    def commit(self, events: Sequence[StoredEvent], rejected: Sequence[Rejected] = ()) -> int:
        """See :meth:`Store.commit`."""
        stored = now_us()
        months = {month_of(e.time_us) for e in events if _LOW <= e.time_us < _HIGH}
        with self._lock:
            try:
                if not months <= self._months:
                    with self._db.transaction():
                        self._db.execute("SELECT pg_advisory_xact_lock(7365736)")
                        for year, month in sorted(months - self._months):
                            a, b = month_bounds(year, month)
                            self._create_months(a, b - 1)
                with self._db.transaction():
                    new: list[StoredEvent] = []
                    if events:
                        # COPY (rows formatted in psycopg's C code) then one INSERT: an order
                        # of magnitude less client CPU than binding arrays for unnest().
                        cur = self._db.cursor()
                        cols = event_insert_columns()
                        with cur.copy(f"COPY pysens_incoming ({cols}) FROM STDIN") as copy:
                            write = copy.write_row
                            for e in events:
                                write(e.row(stored))
                        cur.execute(
                            f"INSERT INTO events ({cols}) SELECT DISTINCT ON (time_us, id)"  # noqa: S608 - placeholders only; the SQL text is this module's own
                            f" {cols} FROM pysens_incoming ON CONFLICT DO NOTHING"
                            " RETURNING id")
                        fresh = {r[0] for r in cur.fetchall()}
                        seen: set[str] = set()
                        for e in events:
                            if e.id in fresh and e.id not in seen:
                                seen.add(e.id)
                                new.append(e)
                        self._write_projections(new)
                    for r in rejected:
                        self._db.execute(
                            "INSERT INTO rejected(stream, stream_seq, subject, reason, raw,"
                            " received_us) VALUES (%s, %s, %s, %s, %s, %s)"
                            " ON CONFLICT DO NOTHING",
                            (r.stream, r.stream_seq, r.subject, r.reason, r.raw, stored),
                        )
            except self._psycopg.Error as e:
                raise StoreError(
                    f"cannot write to the store {redact_url(self.url)}: {_one_line(e)}"
                ) from None
        return len(new)

    def _write(self, sql: str, params: Sequence[Any]) -> int:
        with self._lock:
            try:
                with self._db.transaction():
                    return int(self._db.execute(sql, tuple(params)).rowcount)
            except self._psycopg.Error as e:
                raise StoreError(
                    f"cannot write to the store {redact_url(self.url)}: {_one_line(e)}"
                ) from None

    def record_gap(self, gap: Gap) -> bool:
        """See :meth:`Store.record_gap`."""
        return self._write(
            "INSERT INTO gaps (stream, first_seq, last_seq, lost, reason, detected_us) VALUES"
            " (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (gap.stream, gap.first_seq, gap.last_seq, gap.lost, gap.reason,
             gap.detected_us)) > 0

    def expire(self, before_us: int) -> int:
        """See :meth:`Store.expire`: the months wholly before ``before_us`` are dropped (a
        month partly before it stays whole until it is), with what the default partition
        holds from before them (a clock that said 1970)."""
        gone: dict[str, int] = {}
        dropped: list[tuple[int, int]] = []
        with self._lock:
            try:
                with self._db.transaction():
                    cut = None
                    for year, month in sorted(self._months):
                        _, end = month_bounds(year, month)
                        if end > before_us:
                            break
                        name = f"events_y{year:04d}m{month:02d}"
                        # Per host, for the hosts table (a scan of the month, not of rows
                        # one by one: the DROP itself is instant).
                        for host, n in self._db.execute(
                                f"SELECT host, count(*) FROM {name} GROUP BY host"):  # noqa: S608 - a partition name this module made
                            gone[host] = gone.get(host, 0) + int(n)
                        self._db.execute(f"DROP TABLE {name}")
                        dropped.append((year, month))
                        cut = end
                    if cut is not None:
                        for (host,) in self._db.execute(
                                "DELETE FROM events_other WHERE time_us < %s RETURNING host",
                                (cut,)).fetchall():
                            gone[host] = gone.get(host, 0) + 1
                        self._prune(cut, gone, [m for m in sorted(self._months)
                                                if m not in dropped])
            except self._psycopg.Error as e:
                raise StoreError(
                    f"cannot expire events in {redact_url(self.url)}: {_one_line(e)}") from None
            self._months.difference_update(dropped)
        return sum(gone.values())

    def _prune(self, cut: int, gone: dict[str, int], months: list[tuple[int, int]]) -> None:
        """:func:`~.base.prune_projections` in a few set-wise statements (one per host would be
        20,000 round trips for a fleet): each host's first time from the oldest months left,
        a month at a time, until every host is placed (most are in the first)."""
        db = self._db
        hosts = sorted(gone)
        db.execute("UPDATE hosts SET events = hosts.events - g.n FROM unnest(%s::text[],"
                   " %s::bigint[]) AS g(host, n) WHERE hosts.host = g.host",
                   (hosts, [gone[h] for h in hosts]))
        first: dict[str, int] = {}
        left = set(hosts)
        for name in [f"events_y{y:04d}m{m:02d}" for y, m in months] + ["events_other"]:
            if not left:
                break
            for host, t in db.execute(
                    f"SELECT host, min(time_us) FROM {name} WHERE host = ANY(%s) GROUP BY"  # noqa: S608 - a partition name this module made
                    " host", (sorted(left),)):
                first[host] = int(t)
                left.discard(host)
        placed = sorted(first)
        db.execute("UPDATE hosts SET first_us = f.t FROM unnest(%s::text[], %s::bigint[]) AS"
                   " f(host, t) WHERE hosts.host = f.host", (placed, [first[h] for h in placed]))
        for sql, params in prune_rest("%s", cut):
            db.execute(sql, params)

    def partitions(self) -> list[tuple[int, int]]:
        """See :meth:`Store.partitions`."""
        with self._lock:
            return sorted(self._months)

    # -- reading -----------------------------------------------------------------------------

    def _select(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                with self._db.transaction():
                    return self._db.execute(sql, tuple(params)).fetchall()
            except self._psycopg.Error as e:
                raise StoreError(
                    f"cannot read the store {redact_url(self.url)}: {_one_line(e)}"
                ) from None

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()


def _staging() -> str:
    types = {"time_us": "BIGINT", "seq": "BIGINT", "published_us": "BIGINT",
             "stored_us": "BIGINT", "connection_type": "BIGINT", "battery_percent": "BIGINT"}
    return ", ".join(f"{c} {types.get(c, 'TEXT')}" for c in EVENT_COLUMNS)
