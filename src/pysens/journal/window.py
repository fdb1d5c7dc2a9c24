"""Which events a timeline of a time window needs, chosen from the columns in SQL.

A long journal (or the fleet's store) is not decoded whole for ``sens timeline --since``: the
keys and bounds come from the ``host``, ``session_id``, ``time_us`` and ``method`` columns, and
only the rows kept are read whole. The central store has those columns, the journal a view of
them (``event_keys``: its names are codes), so both use :func:`window_keys` with their own
connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["Before", "window_bounds", "window_keys", "window_needs", "window_queries"]

#: Runs one SQL query with its parameters and returns every row.
Select = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


#: Per (host, session id) before a window: its latest session event's time, the latest of one
#: that is not a Logoff, and the latest Logoff's (microseconds; None: there is none).
Before = tuple[str, str, int, int | None, int | None]


def window_queries(ph: str, methods: int, until: bool, hosts: int = 0,
                   table: str = "events") -> tuple[str, str]:
    """The two SQL queries (on ``table``, with ``host``, ``session_id``, ``time_us`` and
    ``method`` columns: the central store's ``events``, the journal's ``event_keys``) whose rows
    :func:`window_bounds` takes: the pairs inside the window (parameters: since, [until],
    the methods, [the hosts]) and the latest times before it (since, the methods, [hosts])."""
    m = ", ".join([ph] * methods)
    h = f" AND host IN ({', '.join([ph] * hosts)})" if hosts else ""
    inside = (f"SELECT DISTINCT host, session_id FROM {table} WHERE time_us >= {ph}"  # noqa: S608 - placeholders only; the SQL text is this module's own
              f"{f' AND time_us < {ph}' if until else ''} AND session_id IS NOT NULL"
              f" AND method IN ({m}){h}")
    before = (f"SELECT host, session_id, max(time_us),"  # noqa: S608 - placeholders only; the SQL text is this module's own
              f" max(CASE WHEN method != 'Logoff' THEN time_us END),"
              f" max(CASE WHEN method = 'Logoff' THEN time_us END) FROM {table}"
              f" WHERE time_us < {ph} AND session_id IS NOT NULL AND method IN ({m}){h}"
              f" GROUP BY host, session_id")
    return inside, before


def window_bounds(
    inside: Iterable[tuple[str, str]], before: Iterable[Before]
) -> dict[tuple[str, str], int | None]:
    """The sessions a timeline of a window needs, and from when (microseconds; None: from
    their first event), given the (host, session id) pairs with a session event in the window
    (``inside``) and, per pair, the latest time, latest non-Logoff time and latest Logoff time
    of its session events before the window (``before``).

    A pair is needed when it has an event in the window or was open at its start (its latest
    event before it is not a Logoff; at a tie, any one not). Its events from its last Logoff
    before the window on are enough: that Logoff closed every instance before it. Whatever
    the rest, the sessions that overlap the window come out the same as from every event.
    """
    bound: dict[tuple[str, str], int | None] = dict.fromkeys(inside)
    for host, sid, last, last_open, last_logoff in before:
        key = (host, sid)
        if key in bound or last_open == last:
            bound[key] = last_logoff
    return bound


def window_needs(
    bound: dict[tuple[str, str], int | None], host: str, session_id: str | None, time_us: int
) -> bool:
    """Whether a timeline of the window needs this session event (``bound`` from
    :func:`window_bounds`); an event without a session id always is."""
    if session_id is None:
        return True
    key = (host, session_id)
    if key not in bound:
        return False
    start = bound[key]
    return start is None or time_us >= start


def window_keys(
    select: Select, ph: str, methods: Iterable[str], since_us: int, until_us: int | None, *,
    hosts: Sequence[str] = (), key: str = "seq", order: str = "seq", table: str = "events",
) -> list[Any]:
    """The ``key`` column (or columns, comma-separated: a tuple each) of every row of
    ``methods`` (on ``hosts`` when given) that a timeline of ``[since_us, until_us)`` needs,
    in ``order``; ``ph`` is the driver's placeholder (``?`` or ``%s``).

    Per (host, session id) with such an event in the window, or whose latest one before the
    window is not a Logoff (open then): its events from its last Logoff before the window on
    (that Logoff closed everything before it; all of them when there is none). And every such
    event without a session id.
    """
    names = sorted(set(methods))
    until = [until_us] if until_us is not None else []
    inside_sql, before_sql = window_queries(ph, len(names), until_us is not None, len(hosts),
                                            table)
    inside = select(inside_sql, (since_us, *until, *names, *hosts))
    before = select(before_sql, (since_us, *names, *hosts))
    bound = window_bounds([(h, s) for h, s in inside],
                          [(h, s, a, b, c) for h, s, a, b, c in before])
    m = ", ".join([ph] * len(names))
    h = f" AND host IN ({', '.join([ph] * len(hosts))})" if hosts else ""
    rows = select(f"SELECT {key}, host, session_id, time_us FROM {table} WHERE method IN ({m})"  # noqa: S608 - placeholders only; the SQL text is this module's own
                  f"{h} ORDER BY {order}", (*names, *hosts))
    n = key.count(",") + 1  # a key of several columns comes back as a tuple
    return [r[0] if n == 1 else r[:n] for r in rows
            if window_needs(bound, r[n], r[n + 1], int(r[n + 2]))]

