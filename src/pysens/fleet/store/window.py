"""Which events a timeline of a time window needs, chosen in the central store with the help
of its sessions table, so that ``sens timeline --since`` on a store of years reads only the
sessions that can overlap the window.

:func:`pysens.journal.window.window_keys` (the journal's way, and this one's definition) takes
per (host, session id) the latest times before the window: a GROUP BY over every session event
before it, and then every session event's keys to pick from, the whole store each time. Here
the pairs worth looking at come from the sessions table (one row per host and session key,
kept by each commit): those with an event in the window, and those that began before it and
are not known to be closed before it (their last event is their last Logoff). Each of those is
then looked up by the ``(host, session_id, time_us)`` index: its last Logoff before the window,
whether something reopened it since, and its events from that Logoff on. One statement; the
rows are the same sessions' events, so the timeline is the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ...timeline import SESSION_METHODS

__all__ = ["store_window_keys"]

Select = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

_SESSION_NAMES = frozenset(str(m) for m in SESSION_METHODS)


def store_window_keys(
    select: Select, ph: str, methods: Iterable[str], since_us: int, until_us: int | None, *,
    hosts: Sequence[str] = (),
) -> list[tuple[int, str]] | None:
    """The ``(time_us, id)`` of every event of ``methods`` (on ``hosts`` when given) that a
    timeline of ``[since_us, until_us)`` needs, in the store's read order; what
    :func:`~pysens.journal.window.window_keys` gives, from the sessions table and the
    ``(host, session_id, time_us)`` index instead of every session event.

    None when the sessions table cannot stand in: ``methods`` must be session methods (those
    the table is kept from) and include Logoff (what closes a session there)."""
    names = sorted(set(methods))
    if not names or not set(names) <= _SESSION_NAMES or "Logoff" not in names:
        return None
    sql, params = _statement(ph, names, since_us, until_us, hosts)
    return [(int(r[0]), str(r[1])) for r in select(sql, params)]


def _statement(ph: str, names: list[str], since_us: int, until_us: int | None,
               hosts: Sequence[str]) -> tuple[str, list[Any]]:
    m = ", ".join([ph] * len(names))
    h = f" AND host IN ({', '.join([ph] * len(hosts))})" if hosts else ""
    params: list[Any] = []

    def add(*values: Any) -> None:
        params.extend(values)

    # The pairs with a session event in the window: needed whatever came before.
    inside = (f"SELECT DISTINCT host, session_id FROM events WHERE time_us >= {ph}"  # noqa: S608 - placeholders only; the SQL text is this module's own
              f"{f' AND time_us < {ph}' if until_us is not None else ''}"
              f" AND session_id IS NOT NULL AND method IN ({m}){h}")
    add(since_us, *([until_us] if until_us is not None else []), *names, *hosts)
    # And those that may be open at its start: begun before it, and either heard from since
    # or not closed by their last event (a Logoff last, by the (time, seq) order its row keeps,
    # closes every instance; without a seq a tie at that instant could go either way).
    cand = ("SELECT host, session_id FROM inside UNION SELECT host, skey FROM sessions"  # noqa: S608 - placeholders only; the SQL text is this module's own
            f" WHERE first_us < {ph} AND (last_us >= {ph} OR NOT (last_us = logoff_us AND"
            f" last_seq = logoff_seq AND last_seq > 0)){h}")
    add(since_us, since_us, *hosts)
    # Per pair: its last Logoff before the window (its events from there on are enough).
    marks = ("SELECT c.host, c.session_id, (SELECT max(e.time_us) FROM events e WHERE"  # noqa: S608 - placeholders only; the SQL text is this module's own
             f" e.host = c.host AND e.session_id = c.session_id AND e.time_us < {ph} AND"
             " e.method = 'Logoff') AS bound FROM cand c")
    add(since_us)
    # Needed: an event in the window, or open at its start (a session event other than a
    # Logoff at or after that last Logoff: at a tie, open, as window_bounds has it).
    needed = ("SELECT k.host, k.session_id, k.bound FROM marks k WHERE EXISTS (SELECT 1 FROM"  # noqa: S608 - placeholders only; the SQL text is this module's own
              " inside i WHERE i.host = k.host AND i.session_id = k.session_id) OR EXISTS"
              " (SELECT 1 FROM events e WHERE e.host = k.host AND e.session_id ="
              f" k.session_id AND e.time_us < {ph} AND (k.bound IS NULL OR e.time_us >="
              f" k.bound) AND e.method <> 'Logoff' AND e.method IN ({m}))")
    add(since_us, *names)
    rows = ("SELECT e.time_us, e.id, e.host, coalesce(e.seq, 0) FROM needed n JOIN events e"  # noqa: S608 - placeholders only; the SQL text is this module's own
            " ON e.host = n.host AND e.session_id = n.session_id WHERE (n.bound IS NULL OR"
            f" e.time_us >= n.bound) AND e.method IN ({m})"
            # Every session event without a session id: the timeline pairs those itself.
            " UNION ALL SELECT time_us, id, host, coalesce(seq, 0) FROM events WHERE"
            f" session_id IS NULL AND method IN ({m}){h} ORDER BY 1, 3, 4, 2")
    add(*names, *names, *hosts)
    sql = (f"WITH inside AS ({inside}), cand AS ({cand}), marks AS ({marks}),"
           f" needed AS ({needed}) {rows}")
    return sql, params
