"""``sens timeline --since`` on the central store: the sessions table picks the pairs to read
(pysens.fleet.store.window), and the timeline is the one every event gives -- with and without
journal seqs (a tie at one instant then goes by id), reused keys, a Logoff alone, events
without a session id, a window before everything, after everything, and on PostgreSQL."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet_fixtures import pg_url
from pysens.cli.timeline import select_spans
from pysens.events import Method, SensEvent
from pysens.fleet.store import StoredEvent, open_store, time_us
from pysens.fleet.store.intake import check_message
from pysens.fleet.store.window import store_window_keys
from pysens.journal.window import window_keys
from pysens.timeline import SESSION_METHODS

__all__ = ["pg_url"]  # a fixture

NAMES = [str(m) for m in SESSION_METHODS]
T0 = datetime(2026, 11, 1, tzinfo=UTC)
_METHODS = [Method.Logon, Method.Logoff, Method.SessionDisconnect, Method.SessionReconnect,
            Method.PostShell, Method.DisplayLock, Method.DisplayUnlock, Method.OnACPower]


def _stored(events: list[SensEvent]) -> list[StoredEvent]:
    items = [check_message("s", e.to_json_text().encode(), None) for e in events]
    return [i for i in items if isinstance(i, StoredEvent)]


def _spans(events: list[SensEvent], since: datetime, until: datetime | None) -> list[Any]:
    args = argparse.Namespace(filter=None, since=since.isoformat(),
                              until=None if until is None else until.isoformat())
    return [s.to_json() for s in select_spans(events, args)]


def _check(store: Any, everything: list[SensEvent], since: datetime,
           until: datetime | None, hosts: list[str]) -> None:
    """The windowed read (the sessions table's way) gives the timeline of every event, and
    reads no more than the journal's way (window_keys) would."""
    mine = [e for e in everything if not hosts or e.host in hosts]
    lo, hi = time_us(since), None if until is None else time_us(until)
    fast = store_window_keys(store._select, store._ph(), NAMES, lo, hi, hosts=hosts)
    slow = window_keys(store._select, store._ph(), NAMES, lo, hi, hosts=hosts,
                       key="time_us, id", order="time_us, host, coalesce(seq, 0), id")
    assert fast is not None
    assert {k[1] for k in fast} <= {k[1] for k in slow}
    window = list(store.session_events(NAMES, since, until, hosts=hosts))
    assert [e.id for e in window] == [k[1] for k in fast]
    assert _spans(window, since, until) == _spans(mine, since, until)


@settings(max_examples=80, deadline=None)
@given(steps=st.lists(st.tuples(
    st.sampled_from(_METHODS), st.sampled_from(["1", "2", "3", None]),
    st.sampled_from(["h1", "h2"]), st.integers(0, 40), st.booleans()), min_size=1,
    max_size=50),
    windows=st.lists(st.tuples(st.integers(-2, 45), st.one_of(st.none(), st.integers(0, 50))),
                     min_size=1, max_size=4),
    with_seq=st.booleans())
def test_the_sessions_table_picks_what_a_whole_read_would(
    tmp_path_factory: pytest.TempPathFactory,
    steps: list[tuple[Method, str | None, str, int, bool]],
    windows: list[tuple[int, int | None]], with_seq: bool,
) -> None:
    events = []
    for n, (m, sid, host, minute, same_instant) in enumerate(steps, 1):
        # Many at one instant (a tie the order key settles) or a second apart.
        t = T0 + timedelta(minutes=minute, seconds=0 if same_instant else n)
        e = SensEvent(m, user_name=f"u{sid}", session_id=sid, host=host, source="test",
                      time=t)
        events.append(e.with_seq(n) if with_seq else e)
    unique = list({e.id: e for e in events}.values())
    where = tmp_path_factory.mktemp("s")
    with open_store(f"sqlite:///{where}/fleet.db") as store:
        store.commit(_stored(unique))
        everything = list(store.query())
        for lo, hi in windows:
            for hosts in ([], ["h2"]):
                _check(store, everything, T0 + timedelta(minutes=lo),
                       None if hi is None else T0 + timedelta(minutes=hi), hosts)


def test_other_methods_take_the_journal_way(tmp_path: Any) -> None:
    # Without Logoff the sessions table cannot say what was closed: the generic query.
    with open_store(f"sqlite:///{tmp_path}/fleet.db") as store:
        assert store_window_keys(store._select, "?", ["Logon"], 0, None) is None
        assert store_window_keys(store._select, "?", ["Logoff", "OnACPower"], 0, None) is None
        e = SensEvent("Logon", user_name="a", session_id="1", host="h", source="test",
                      time=T0)
        store.commit(_stored([e]))
        assert [x.id for x in store.session_events(["Logon"], T0 - timedelta(1))] == [e.id]


def test_on_postgresql_with_months_between(pg_url: str) -> None:
    # A session open across three monthly partitions, one closed in the first, a reused key,
    # a mid-life session (no Logon) and one without a session id.
    plan = [("Logon", "1", 0), ("Logoff", "1", 1), ("Logon", "1", 2), ("Logon", "7", 3),
            ("DisplayLock", "9", 4), ("Logon", None, 5), ("Logoff", "7", 40),
            ("SessionDisconnect", "1", 70), ("Logon", "8", 71)]
    events = [SensEvent(m, user_name=f"u{sid}", session_id=sid, host="h", source="test",
                        time=T0 + timedelta(days=day)).with_seq(n)
              for n, (m, sid, day) in enumerate(plan, 1)]
    with open_store(pg_url) as store:
        store.commit(_stored(events))
        everything = list(store.query())
        for lo, hi in [(1, None), (1.5, 2.5), (30, 35), (41, None), (65, 80), (-5, 0),
                       (100, None)]:
            _check(store, everything, T0 + timedelta(days=lo),
                   None if hi is None else T0 + timedelta(days=hi), [])
        since = T0 + timedelta(days=50)
        got = {e.session_id for e in store.session_events(NAMES, since)}
        assert got == {"1", "8", "9", None}  # 7 ended on day 40
