"""The central store's tables, in SQLite's and PostgreSQL's words, and their versions.

Version 1 (pysens 0.1) had ``events`` and ``rejected``. Version 2 adds the network and power
fields as columns, ``hosts`` and ``sessions`` (the projections), ``gaps`` (loss the collector
could not prevent: a stream whose first sequence jumped past what was stored) and
``collectors`` (what each durable consumer has seen of its stream); in PostgreSQL it puts
``events`` in monthly range partitions of ``time_us``. The version is kept in ``pysens_meta``.
"""

from __future__ import annotations

from ..projection import COLUMNS as SESSION_COLUMNS

__all__ = [
    "CLOSED",
    "EVENT_COLUMNS",
    "LATEST",
    "OPEN",
    "SESSION_COLUMNS",
    "UNCLOSED",
    "pg_statistics",
    "pg_tables",
    "sqlite_tables",
]

#: The schema version this pysens writes.
LATEST = 2

#: The events table's columns a commit writes, in order.
EVENT_COLUMNS = ("id", "host", "time_us", "method", "user_name", "session_id", "seq",
                 "subject", "body", "published_us", "stored_us", "connection",
                 "connection_type", "destination", "battery_percent")

_SESSION_TYPES = {
    "host": "TEXT NOT NULL", "skey": "TEXT NOT NULL", "remote": "{BOOL} NOT NULL",
}

# What each dialect calls a type.
_SQLITE = {"INT": "INTEGER", "BLOB": "BLOB", "BOOL": "INTEGER"}
_PG = {"INT": "BIGINT", "BLOB": "BYTEA", "BOOL": "BOOLEAN"}


def _session_table(types: dict[str, str]) -> str:
    cols = []
    for c in SESSION_COLUMNS:
        if c in _SESSION_TYPES:
            kind = _SESSION_TYPES[c].format(**types)
        elif c.endswith(("_us", "_seq")):
            kind = f"{types['INT']} NOT NULL DEFAULT -1"
        else:
            kind = "TEXT"
        cols.append(f"    {c} {kind}")
    return ("CREATE TABLE IF NOT EXISTS sessions (\n" + ",\n".join(cols)
            + ",\n    PRIMARY KEY (host, skey)\n)")


_COMMON = """
CREATE TABLE IF NOT EXISTS rejected (
    stream      TEXT NOT NULL,
    stream_seq  {INT} NOT NULL,
    subject     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    raw         {BLOB} NOT NULL,
    received_us {INT} NOT NULL,
    PRIMARY KEY (stream, stream_seq)
);
CREATE TABLE IF NOT EXISTS hosts (
    host     TEXT PRIMARY KEY,
    first_us {INT} NOT NULL,
    last_us  {INT} NOT NULL,
    events   {INT} NOT NULL
);
CREATE TABLE IF NOT EXISTS gaps (
    stream      TEXT NOT NULL,
    first_seq   {INT} NOT NULL,
    last_seq    {INT} NOT NULL,
    lost        {INT} NOT NULL,
    reason      TEXT NOT NULL,
    detected_us {INT} NOT NULL,
    PRIMARY KEY (stream, first_seq)
);
CREATE TABLE IF NOT EXISTS collectors (
    stream     TEXT NOT NULL,
    durable    TEXT NOT NULL,
    created    TEXT,
    floor_seq  {INT} NOT NULL DEFAULT 0,
    last_seq   {INT} NOT NULL DEFAULT 0,
    PRIMARY KEY (stream, durable)
);
CREATE TABLE IF NOT EXISTS pysens_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

_EVENTS = """
CREATE TABLE IF NOT EXISTS events (
    id              TEXT NOT NULL,
    host            TEXT NOT NULL,
    time_us         {INT} NOT NULL,
    method          TEXT NOT NULL,
    user_name       TEXT,
    session_id      TEXT,
    seq             {INT},
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    published_us    {INT},
    stored_us       {INT} NOT NULL,
    connection      TEXT,
    connection_type {INT},
    destination     TEXT,
    battery_percent {INT}{KEY}
){PARTITION};
"""

#: A session row that is open: its latest Logon is newer than its latest Logoff (or, seen only
#: from mid-life, it has no Logoff): the projection's rule (SessionRow.is_open), in SQL.
OPEN = ("((logon_us, logon_seq) > (logoff_us, logoff_seq) OR (logon_us = -1"
        " AND logoff_us = -1))")
#: A session row whose last event is its last Logoff, by the (time, seq) order (without a seq
#: a tie at one instant could go either way): closed for good, until a later event.
CLOSED = "(last_us = logoff_us AND last_seq = logoff_seq AND last_seq > 0)"
#: Any other row: it may be open at any later time. ("IS NOT TRUE", not "NOT": PostgreSQL
#: would spread a NOT into an OR of <> it cannot estimate, and scan the table instead of this
#: partial index; on the expression itself it has statistics, see pg_statistics.)
UNCLOSED = f"{CLOSED} IS NOT TRUE"

# events_pair answers "this session's last Logoff before T" with one seek and "its events of
# these methods from T on" from the index alone (it replaced events_session, the same without
# the method, which made SQLite look up every row of a long-lived session key for its method).
# A partial index is used where a query says its WHERE word for word: OPEN and UNCLOSED are
# written into the queries from these constants. Per partition in PostgreSQL (an index on the
# partitioned table is one on each month).
_INDEXES = f"""
CREATE INDEX IF NOT EXISTS events_host ON events(host, time_us);
DROP INDEX IF EXISTS events_session;
CREATE INDEX IF NOT EXISTS events_pair ON events(host, session_id, method, time_us);
CREATE INDEX IF NOT EXISTS events_nosession ON events(method, time_us) WHERE session_id IS NULL;
CREATE INDEX IF NOT EXISTS sessions_open ON sessions(logoff_us, host);
CREATE INDEX IF NOT EXISTS sessions_is_open ON sessions(host) WHERE {OPEN};
CREATE INDEX IF NOT EXISTS sessions_last ON sessions(last_us);
CREATE INDEX IF NOT EXISTS sessions_unclosed ON sessions(host) WHERE {UNCLOSED};
"""


def pg_statistics(version: int) -> list[str]:
    """The statistics PostgreSQL (``version``: server_version_num) keeps on an expression,
    so that the planner knows how few session rows are :data:`UNCLOSED` (expressions: 14+)."""
    if version < 140000:
        return []
    return [f"CREATE STATISTICS IF NOT EXISTS sessions_closed ON ({CLOSED}) FROM sessions"]


def sqlite_tables() -> str:
    """Every table and index of the latest version, for SQLite (idempotent)."""
    return (_EVENTS.format(**_SQLITE, KEY=",\n    PRIMARY KEY (id)", PARTITION="")
            + "CREATE INDEX IF NOT EXISTS events_time ON events(time_us);\n"
            + _COMMON.format(**_SQLITE) + _session_table(_SQLITE) + ";\n" + _INDEXES)


def pg_tables(events: str = "events") -> str:
    """Every table and index of the latest version, for PostgreSQL (idempotent); ``events``
    names the partitioned events table (a migration builds it beside the old one)."""
    # A partitioned table's unique key must hold the partition key. The event id begins
    # with its time, so (time_us, id) is as unique as the id: one occurrence, one time.
    ddl = _EVENTS.format(**_PG, KEY=",\n    PRIMARY KEY (time_us, id)",
                         PARTITION=" PARTITION BY RANGE (time_us)")
    return (ddl.replace("EXISTS events", f"EXISTS {events}") + _COMMON.format(**_PG)
            + _session_table(_PG) + ";\n"
            + _INDEXES.replace("ON events(", f"ON {events}("))
