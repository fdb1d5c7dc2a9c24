"""The central store's session and host tables against the events they come from.

For random observation streams, the tracker's events are stored (in order, shuffled, in
batches, twice); the store's open sessions must be what replaying the events through the
tracker gives (what `sens sessions --store` showed before the table existed), and the rows
must not depend on the order the batches come in (several collectors commit out of order).
"""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import given, note, settings
from hypothesis import strategies as st

from pysens.events import SensEvent
from pysens.fleet.projection import SessionRow, fold_sessions
from pysens.fleet.store import StoredEvent, open_store
from pysens.fleet.store.intake import check_message
from pysens.observations import Observation, SessionRecord
from pysens.tracker import OpenSession, Tracker
from test_tracker import at, observation


def stored(events: list[SensEvent]) -> list[StoredEvent]:
    out = []
    for e in events:
        item = check_message(f"sens.{e.host}.{e.method}", e.to_json_text().encode(), e.id)
        assert not isinstance(item, str), item
        out.append(item)
    return out


def tracker_events(stream: list[tuple[int, Observation]]) -> list[SensEvent]:
    tracker = Tracker(host="h1")
    clock = at(0)
    out: list[SensEvent] = []
    for seq, (dt, obs) in enumerate(stream, 1):
        clock += timedelta(seconds=dt)
        timed: Any = obs.__class__(**{**{f: getattr(obs, f) for f in obs.__slots__},
                                     "time": clock})
        for e in tracker.feed(timed):
            out.append(e.with_seq(len(out) + 1))
        del seq
    return out


def shown(sessions: list[OpenSession]) -> list[tuple[Any, ...]]:
    return sorted((s.host, s.info.session_id, s.info.user_name, s.state, s.since,
                   s.info.client_address, s.info.remote) for s in sessions)


def replay(events: list[SensEvent]) -> list[OpenSession]:
    tracker = Tracker(host="h1")
    for e in events:
        tracker.feed(SessionRecord.of_event(e))
    return tracker.sessions


@settings(max_examples=150, deadline=None)
@given(st.lists(observation(), max_size=50), st.randoms(use_true_random=False))
def test_the_session_table_is_the_tracker_replay_in_any_order(
    tmp_path_factory: Any, stream: list[tuple[int, Observation]], rnd: random.Random
) -> None:
    # What a journal keeps: one event per id (an occurrence the tracker reports twice at one
    # instant, a Logon on a key just closed at that instant, has the same id).
    unique: dict[str, SensEvent] = {}
    for e in tracker_events(stream):
        unique.setdefault(e.id, e)
    events = list(unique.values())
    want = shown(replay(events))
    rows = stored(events)
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('s')}/store.db")
    try:
        batches = [rows[i:i + rnd.randint(1, 7)] for i in range(0, len(rows), 4)]
        rnd.shuffle(batches)
        for batch in batches:
            store.commit(batch)
        store.commit(rows)  # everything again: nothing changes
        note("\n".join(f"{e.seq} {e.method} {e.session_id} {e.time:%S.%f} {e.reason}"
                        for e in events))
        assert shown(store.open_sessions()) == want
        # The same rows as folding in Python in order (the SQL merge is the Python merge).
        folded = fold_sessions(rows)
        kept = {(r.host, r.skey): r for r in store.session_rows()}
        for key in folded:
            a, b = kept.get(key), folded[key]
            diffs = {f: (getattr(a, f), getattr(b, f)) for f in SessionRow.__slots__
                     if a is None or getattr(a, f) != getattr(b, f)}
            assert not diffs, diffs
        assert kept.keys() == folded.keys()
        assert store.count() == len({e.id for e in events})
    finally:
        store.close()


def test_hosts_and_the_fleet_overview(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/store.db")
    t0 = at(0)
    events = [
        SensEvent(method="Logon", user_name="a", session_id="1", host="web01", time=t0),
        SensEvent(method="Logon", user_name="b", session_id="2", host="web01",
                  time=t0 + timedelta(seconds=1)),
        SensEvent(method="SessionDisconnect", user_name="b", session_id="2", host="web01",
                  time=t0 + timedelta(seconds=2)),
        SensEvent(method="Logon", user_name="c", session_id="1", host="db01",
                  time=t0 + timedelta(seconds=3)),
        SensEvent(method="Logoff", user_name="c", session_id="1", host="db01",
                  time=t0 + timedelta(seconds=4)),
        SensEvent(method="ConnectionLost", connection="eth0", connection_type=0,
                  host="db01", time=t0 + timedelta(seconds=5)),
    ]
    assert store.commit(stored(events)) == 6
    assert store.commit(stored(events)) == 0
    assert store.hosts() == ["db01", "web01"] and store.count() == 6
    assert store.count("web01") == 3
    overview = {h["host"]: (h["events"], h["open"], h["disconnected"])
                for h in store.host_summaries()}
    assert overview == {"db01": (3, 0, 0), "web01": (3, 2, 1)}
    # The network event's columns are kept too (criteria on them read the bodies anyway).
    row = store._select("SELECT connection, connection_type FROM events WHERE method ="
                        " 'ConnectionLost'", ())
    assert row == [("eth0", 0)]
    store.close()
