"""The Python half of the journal's migrations: rows the SQL of a migration cannot convert.

Entry ``n`` of :data:`CONVERSIONS` runs right after ``MIGRATIONS[n]``'s SQL, in the same
transaction, so a journal is either wholly converted or left as it was.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping

from ..events import EventError, SensEvent
from .rows import COLUMNS, RowCodec

__all__ = ["CONVERSIONS"]

_BATCH = 2000


def _v2_to_v3(db: sqlite3.Connection) -> None:
    """Every event of the version-2 tables (a JSON body each, the history marks apart) into the
    lean columns, with the same seq; a body that no longer reads as an event is kept as it was
    in ``unreadable``. The old tables are dropped."""
    codec = RowCodec()
    insert = (f"INSERT INTO events({', '.join(COLUMNS)}) VALUES "  # noqa: S608 - placeholders only; the SQL text is this module's own
              f"({', '.join('?' * len(COLUMNS))})")
    last = 0
    while True:
        rows = db.execute(
            "SELECT e.seq, e.id, e.body, h.seq IS NOT NULL FROM events_v2 e LEFT JOIN "
            "history_v2 h ON h.seq = e.seq WHERE e.seq > ? ORDER BY e.seq LIMIT ?",
            (last, _BATCH)).fetchall()
        if not rows:
            break
        out = []
        bad = []
        for seq, event_id, body, history in rows:
            try:
                event = SensEvent.from_stored(json.loads(body), None)
                (row,) = codec.encode([event], seq, bool(history))
            except (EventError, ValueError, TypeError, KeyError):
                bad.append((seq, event_id, body))
                continue
            out.append(row)
        db.executemany("INSERT INTO names(code, text) VALUES (?, ?)", codec.new_names)
        db.executemany("INSERT INTO shapes(code, keys) VALUES (?, ?)", codec.new_shapes)
        codec.committed()
        db.executemany(insert, out)
        db.executemany("INSERT INTO unreadable(seq, id, body) VALUES (?, ?, ?)", bad)
        last = rows[-1][0]
    # The highest seq given so far, the unreadable rows' included, is never given again.
    (top,) = db.execute("SELECT coalesce(max(seq), 0) FROM events_v2").fetchone()
    updated = db.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'events'",
                         (top,)).rowcount
    if top and not updated:
        db.execute("INSERT INTO sqlite_sequence(name, seq) VALUES ('events', ?)", (top,))
    db.execute("DROP TABLE events_v2")
    db.execute("DROP TABLE history_v2")


#: MIGRATIONS index -> the conversion that completes it.
CONVERSIONS: Mapping[int, Callable[[sqlite3.Connection], None]] = {2: _v2_to_v3}
