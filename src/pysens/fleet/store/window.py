"""Which events a timeline of a time window needs, chosen in the central store with the help
of its sessions table, so that ``sens timeline --since`` on a store of years reads only the
sessions that can overlap the window.

:func:`pysens.journal.window.window_keys` (the journal's way, and this one's definition) takes
per (host, session id) the latest times before the window: a GROUP BY over every session event
before it, and then every session event's keys to pick from, the whole store each time. Here
the pairs worth looking at come from the sessions table (one row per host and session key,
kept by each commit): those with an event in the window, and those that began before it and
are not known to be closed before it (their last event is their last Logoff). Each of those is
then looked up in the ``events_pair`` index (host, session_id, method, time_us): its last
Logoff before the window (one seek), whether something reopened it since, and its events from
that Logoff on. One statement; the sessions read are those ``window_keys`` reads, less those
closed for good before the window (they cannot overlap it), so the timeline is the same
(tests/test_store_window.py and tests/test_timeline.py compare them with a whole read).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ...timeline import SESSION_METHODS
from .schema import UNCLOSED

__all__ = ["store_window_keys"]

Select = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

_SESSION_NAMES = frozenset(str(m) for m in SESSION_METHODS)


def store_window_keys(
    select: Select, ph: str, methods: Iterable[str], since_us: int, until_us: int | None, *,
    hosts: Sequence[str] = (), lateral: bool = False,
) -> list[tuple[int, str]] | None:
    """The ``(time_us, id)`` of every event of ``methods`` (on ``hosts`` when given) that a
    timeline of ``[since_us, until_us)`` needs, in the store's read order; what
    :func:`~pysens.journal.window.window_keys` gives, from the sessions table and the
    ``(host, session_id, time_us)`` index instead of every session event. ``lateral``: the
    database knows LATERAL (PostgreSQL: without it its planner may hash-join every event).

    None when the sessions table cannot stand in: ``methods`` must be session methods (those
    the table is kept from) and include Logoff (what closes a session there)."""
    names = sorted(set(methods))
    if not names or not set(names) <= _SESSION_NAMES or "Logoff" not in names:
        return None
    sql, params = _statement(ph, names, since_us, until_us, hosts, lateral)
    return [(int(r[0]), str(r[1])) for r in select(sql, params)]


#: Below every time: "no Logoff before the window" as a lower bound an index range can use.
_NO_BOUND = -(1 << 63)


def _statement(ph: str, names: list[str], since_us: int, until_us: int | None,
               hosts: Sequence[str], lateral: bool) -> tuple[str, list[Any]]:
    m = ", ".join([ph] * len(names))
    h = f" AND host IN ({', '.join([ph] * len(hosts))})" if hosts else ""
    params: list[Any] = []

    def add(*values: Any) -> None:
        params.extend(values)

    # The pairs with a session event in the window: needed whatever came before. (Not
    # DISTINCT: SQLite would read the whole (host, session_id, time_us) index for the order
    # that gives instead of the window's range of events_time; the UNION below dedups.)
    inside = (f"SELECT host, session_id FROM events WHERE time_us >= {ph}"  # noqa: S608 - placeholders only; the SQL text is this module's own
              f"{f' AND time_us < {ph}' if until_us is not None else ''}"
              f" AND session_id IS NOT NULL AND method IN ({m}){h}")
    add(since_us, *([until_us] if until_us is not None else []), *names, *hosts)
    # And those that may be open at its start: begun before it, and heard from since or not
    # closed by their last event (each arm one index: sessions_last, sessions_unclosed).
    cand = ("SELECT host, session_id FROM inside"  # noqa: S608 - placeholders only; the SQL text is this module's own
            f" UNION SELECT host, skey FROM sessions WHERE last_us >= {ph} AND first_us < {ph}{h}"
            f" UNION SELECT host, skey FROM sessions WHERE {UNCLOSED} AND first_us < {ph}{h}")
    add(since_us, since_us, *hosts, since_us, *hosts)
    # Per pair: its last Logoff before the window (its events from there on are enough).
    marks = ("SELECT c.host, c.session_id, coalesce((SELECT max(e.time_us) FROM events e"  # noqa: S608 - placeholders only; the SQL text is this module's own
             f" WHERE e.host = c.host AND e.session_id = c.session_id AND e.time_us < {ph}"
             f" AND e.method = 'Logoff'), {ph}) AS bound FROM cand c")
    add(since_us, _NO_BOUND)
    # Needed: an event in the window, or open at its start (a session event other than a
    # Logoff at or after that last Logoff: at a tie, open, as window_bounds has it).
    needed = ("SELECT k.host, k.session_id, k.bound FROM marks k WHERE EXISTS (SELECT 1 FROM"  # noqa: S608 - placeholders only; the SQL text is this module's own
              " inside i WHERE i.host = k.host AND i.session_id = k.session_id) OR EXISTS"
              " (SELECT 1 FROM events e WHERE e.host = k.host AND e.session_id ="
              f" k.session_id AND e.time_us < {ph} AND e.time_us >= k.bound AND e.method <>"
              f" 'Logoff' AND e.method IN ({m}))")
    add(since_us, *names)
    pick = ("SELECT e.time_us, e.id, e.host, coalesce(e.seq, 0) AS q FROM events e WHERE"  # noqa: S608 - placeholders only; the SQL text is this module's own
            " e.host = n.host AND e.session_id = n.session_id AND e.time_us >= n.bound AND"
            f" e.method IN ({m})")
    if lateral:
        # OFFSET 0: a plain LATERAL subquery would be pulled up into an ordinary join.
        rows = f"SELECT x.* FROM needed n CROSS JOIN LATERAL ({pick} OFFSET 0) x"  # noqa: S608 - the SQL text is this module's own
    else:  # SQLite runs a join with the small side outside, by the index
        rows = pick.replace("FROM events e WHERE", "FROM needed n JOIN events e ON", 1)
    add(*names)
    # Every session event without a session id (the timeline pairs those itself): its own
    # partial index, events_nosession.
    rows += (" UNION ALL SELECT time_us, id, host, coalesce(seq, 0) FROM events WHERE"  # noqa: S608 - placeholders only; the SQL text is this module's own
             f" session_id IS NULL AND method IN ({m}){h} ORDER BY 1, 3, 4, 2")
    add(*names, *hosts)
    sql = (f"WITH inside AS ({inside}), cand AS ({cand}), marks AS ({marks}),"
           f" needed AS ({needed}) {rows}")
    return sql, params
