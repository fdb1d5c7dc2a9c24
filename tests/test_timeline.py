"""build_timeline (pure: hand-built event streams, the tracker's own output, hypothesis) and
``sens timeline`` (table, JSON, window, filter, bad usage, the fleet store)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet_fixtures import pg_url
from pysens.cli import main
from pysens.events import Method, SensEvent
from pysens.fleet.store import open_store
from pysens.journal import Journal
from pysens.observations import HostReset, SessionInfo, SessionRecord
from pysens.timeline import (
    CONNECTED,
    DISCONNECTED,
    Interval,
    SessionSpan,
    build_timeline,
    format_duration,
    format_intervals,
    overlaps,
)
from pysens.tracker import Tracker

__all__ = ["pg_url"]  # a fixture

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ev(method: str, minutes: float, user: str = "alice", sid: str | None = "3",
       host: str = "web01", **kw: Any) -> SensEvent:
    return SensEvent(method=method, user_name=user, session_id=sid, time=at(minutes), host=host,
                     source="test", **kw)


def rdp_day() -> list[SensEvent]:
    """alice on web01 over RDP: logon from 1.2.3.4, away, back from 5.6.7.8, logoff; bob still
    connected on session 4."""
    return [
        ev("Logon", 0, client_name="LAPTOP", client_address="1.2.3.4", remote=True),
        ev("PostShell", 0),
        ev("Logon", 5, user="bob", sid="4", client_address="9.9.9.9"),
        ev("SessionDisconnect", 30),
        ev("DisplayLock", 31),
        ev("SessionReconnect", 60, client_name="HOME", client_address="5.6.7.8"),
        ev("Logoff", 90),
    ]


def check_invariants(span: SessionSpan) -> None:
    """What every span promises: contiguous alternating intervals within start..logoff."""
    assert span.logon is None or span.logon == span.start
    if span.logoff is not None:
        assert span.logoff >= span.start
    ivs = span.intervals
    if ivs:
        assert ivs[0].start == span.start
    for a, b in pairwise(ivs):
        assert a.end == b.start, "contiguous, no gap and no overlap"
        assert a.state != b.state, "connected and disconnected alternate"
    for i in ivs:
        assert i.state in (CONNECTED, DISCONNECTED)
        assert i.end is None or i.start <= i.end
        if i.state == DISCONNECTED:
            assert i.client_name is None and i.client_address is None
    for i in ivs[:-1]:
        assert i.end is not None
    if ivs:
        assert (ivs[-1].end is None) == (span.logoff is None)
        if span.logoff is not None:
            assert ivs[-1].end == span.logoff


def test_a_session_with_a_reconnect_from_another_address() -> None:
    spans = build_timeline(rdp_day())
    assert [(s.user_name, s.session_id) for s in spans] == [("alice", "3"), ("bob", "4")]
    alice, bob = spans
    assert (alice.host, alice.logon, alice.logoff, alice.remote) == ("web01", at(0), at(90), True)
    assert alice.intervals == [
        Interval(at(0), at(30), CONNECTED, "LAPTOP", "1.2.3.4"),
        Interval(at(30), at(60), DISCONNECTED),
        Interval(at(60), at(90), CONNECTED, "HOME", "5.6.7.8"),
    ]
    assert alice.clients == ["1.2.3.4", "5.6.7.8"]
    assert alice.duration() == timedelta(minutes=90)
    assert alice.connected_time() == timedelta(minutes=60)
    assert alice.state == "closed" and not alice.is_open
    assert bob.is_open and bob.state == CONNECTED and bob.duration() is None
    assert bob.duration(at(65)) == timedelta(minutes=60)
    assert bob.intervals == [Interval(at(5), None, CONNECTED, None, "9.9.9.9")]
    for s in spans:
        check_invariants(s)
    assert format_intervals(alice) == (
        "connected 10:00-10:30 (1.2.3.4), disconnected 10:30-11:00, connected 11:00-11:30 "
        "(5.6.7.8)")
    assert format_intervals(bob) == "connected 10:05-… (9.9.9.9)"


def test_to_json_is_plain_json() -> None:
    alice, bob = build_timeline(rdp_day())
    j = json.loads(json.dumps(alice.to_json()))
    assert j["user_name"] == "alice" and j["session_id"] == "3" and j["host"] == "web01"
    assert j["logon"] == "2026-11-23T10:00:00.000000Z"
    assert j["logoff"] == "2026-11-23T11:30:00.000000Z"
    assert j["duration_seconds"] == 5400.0
    assert [i["state"] for i in j["intervals"]] == ["connected", "disconnected", "connected"]
    assert j["intervals"][2] == {"start": "2026-11-23T11:00:00.000000Z",
                                 "end": "2026-11-23T11:30:00.000000Z", "state": "connected",
                                 "client_name": "HOME", "client_address": "5.6.7.8"}
    b = bob.to_json()
    assert b["logoff"] is None and b["duration_seconds"] is None
    assert b["intervals"][0]["end"] is None


def test_a_session_seen_from_mid_life() -> None:
    spans = build_timeline([ev("SessionDisconnect", 10), ev("SessionReconnect", 20),
                            ev("Logoff", 30, reason="closing")])
    [s] = spans
    assert s.logon is None and s.start == at(10) and s.logoff == at(30)
    assert [i.state for i in s.intervals] == [DISCONNECTED, CONNECTED]
    assert s.logoff_reason == "closing" and not s.synthesized
    check_invariants(s)
    # a lock is enough to show the session exists (connected, as the tracker assumes)
    [s] = build_timeline([ev("DisplayLock", 10)])
    assert s.logon is None and s.intervals == [Interval(at(10), None, CONNECTED)]


def test_only_a_logoff_gives_a_session_with_no_intervals() -> None:
    [s] = build_timeline([ev("Logoff", 10, reason="reboot", synthesized=True)])
    assert (s.logon, s.start, s.logoff, s.intervals) == (None, at(10), at(10), [])
    assert s.synthesized and s.logoff_reason == "reboot"
    assert format_intervals(s) == "logoff: reboot, synthesized"


def test_a_new_logon_on_an_open_key_starts_a_new_instance() -> None:
    # without the Logoff (a stream cut short): the old one ends there, superseded
    spans = build_timeline([ev("Logon", 0), ev("Logon", 10, user="bob")])
    assert [(s.user_name, s.logoff, s.logoff_reason, s.synthesized) for s in spans] == [
        ("alice", at(10), "superseded", True), ("bob", None, None, False)]
    # the tracker's own "superseded" Logoff shares the new Logon's instant: order is kept
    tracker = Tracker(host="web01")
    events = []
    for user, minute in (("alice", 0), ("bob", 10)):
        events += tracker.feed(SessionRecord(method=Method.Logon, time=at(minute), host="web01",
                                             source="wtmp", info=SessionInfo(
                                                 session_id="pts/0", user_name=user)))
    assert [e.method for e in events if e.method != "PostShell"] == ["Logon", "Logoff", "Logon"]
    spans = build_timeline(events)
    assert [(s.user_name, s.logoff_reason) for s in spans] == [
        ("alice", "superseded"), ("bob", None)]
    for s in spans:
        check_invariants(s)


def test_repeats_and_duplicates_change_nothing() -> None:
    base = rdp_day()
    noisy = [*base, base[0], ev("SessionDisconnect", 40), ev("Logoff", 90, reason="again"),
             ev("Logon", 0, client_address="1.2.3.4")]
    assert [s.to_json() for s in build_timeline(noisy)] == [
        s.to_json() for s in build_timeline(base)]


def test_events_are_taken_in_time_order() -> None:
    base = rdp_day()
    bob_first = sorted(base, key=lambda e: e.user_name != "bob")  # alice's events after bob's
    assert [s.to_json() for s in build_timeline(bob_first)] == [
        s.to_json() for s in build_timeline(base)]


def test_session_keys() -> None:
    events = [
        ev("Logon", 0, sid="3", host="a"), ev("Logon", 1, sid="3", host="b"),  # two hosts
        ev("Logon", 2, sid=None, logon_id="0x1"), ev("Logon", 3, sid=None, logon_id="0x2"),
        ev("SessionDisconnect", 4, sid=None, logon_id="0x1"),
        ev("Logon", 5, sid=None, user="Carol", domain="CORP"),
        ev("SessionDisconnect", 6, sid=None, user="carol", domain="corp"),
    ]
    spans = build_timeline(events)
    assert len(spans) == 5
    by = {s.key: s for s in spans}
    assert by[("web01", "logon_id:0x1")].state == DISCONNECTED
    assert by[("web01", "logon_id:0x2")].state == CONNECTED
    assert by[("web01", "user:corp\\carol")].state == DISCONNECTED
    assert {s.host for s in spans if s.session_id == "3"} == {"a", "b"}


def test_network_and_power_events_are_not_sessions() -> None:
    assert build_timeline([SensEvent(method="OnACPower", time=at(0)),
                           SensEvent(method="ConnectionMade", time=at(1))]) == []


def test_a_graphical_session_keeps_its_final_type() -> None:
    [s] = build_timeline([ev("Logon", 0, session_type="unspecified"),
                          ev("PostShell", 1, session_type="wayland"),
                          ev("SessionDisconnect", 2, session_type="tty")])
    assert s.session_type == "wayland"


def test_where_keeps_whole_sessions() -> None:
    spans = build_timeline(rdp_day(), where=lambda e: e.client_address == "5.6.7.8")
    [alice] = spans
    assert alice.logon == at(0) and len(alice.intervals) == 3 and alice.logoff == at(90)


def test_overlaps() -> None:
    alice, bob = build_timeline(rdp_day())
    assert overlaps(alice, at(80), at(100)) and overlaps(alice, None, None)
    assert not overlaps(alice, at(91), None)
    assert overlaps(bob, at(1000), None), "an open session is open at any later time"
    assert not overlaps(alice, None, at(0)), "until is exclusive"


def test_format_duration() -> None:
    assert [format_duration(timedelta(seconds=s)) for s in (0, 59, 60, 3599, 3720, 90000)] == [
        "0s", "59s", "1m", "59m", "1h02m", "1d01h"]


# -- properties -------------------------------------------------------------------------------

_METHODS = ["Logon", "Logoff", "SessionDisconnect", "SessionReconnect", "PostShell",
            "DisplayLock", "DisplayUnlock", "OnACPower"]
_raw_event = st.tuples(
    st.sampled_from(_METHODS), st.integers(0, 5),  # method, minutes after the previous event
    st.sampled_from(["a", "b"]), st.sampled_from(["1", "2", None]),  # host, session id
    st.sampled_from([None, "10.0.0.1", "10.0.0.2"]), st.booleans(),  # client, synthesized
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_raw_event, max_size=40), st.randoms(use_true_random=False))
def test_any_stream_gives_well_formed_spans(raw: list[Any], rnd: Any) -> None:
    minute = 0
    events = []
    for n, (method, gap, host, sid, client, synthesized) in enumerate(raw):
        minute += gap
        events.append(SensEvent(method=method, time=at(minute), host=host, session_id=sid,
                                user_name="u", client_address=client, logon_id=str(n % 3),
                                synthesized=synthesized, source="test"))
    spans = build_timeline(events)
    for s in spans:
        check_invariants(s)
    logons = sum(1 for e in events if e.method == "Logon")
    assert sum(1 for s in spans if s.logon is not None) <= logons
    # every span of one key ends before (or when) the next one begins
    by_key: dict[tuple[str, str], list[SessionSpan]] = {}
    for s in spans:
        by_key.setdefault(s.key, []).append(s)
    for group in by_key.values():
        for a, b in pairwise(group):
            assert a.logoff is not None and a.logoff <= b.start
    # the input order of different instants does not matter (one instant's keep their order)
    groups: dict[datetime, list[SensEvent]] = {}
    for e in events:
        groups.setdefault(e.time, []).append(e)
    order = list(groups)
    rnd.shuffle(order)
    shuffled = [e for t in order for e in groups[t]]
    assert [x.to_json() for x in build_timeline(shuffled)] == [x.to_json() for x in spans]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["Logon", "Logoff", "SessionDisconnect",
                                           "SessionReconnect", "reset"]),
                          st.sampled_from(["pts/0", "pts/1"]), st.integers(1, 3)), max_size=30))
def test_the_trackers_output_gives_one_span_per_logon(raw: list[tuple[str, str, int]]) -> None:
    # (distinct instants: two identical records at one instant are one event id, which a
    # journal would keep once)
    tracker = Tracker(host="h")
    events: list[SensEvent] = []
    minute = 0
    for what, line, gap in raw:
        minute += gap
        if what == "reset":
            events += tracker.feed(HostReset(time=at(minute), host="h", source="wtmp",
                                             reason="reboot"))
            continue
        events += tracker.feed(SessionRecord(
            method=Method(what), time=at(minute), host="h", source="wtmp",
            info=SessionInfo(session_id=line, user_name="u", client_address=f"10.0.0.{gap}")))
    spans = build_timeline(events)
    for s in spans:
        check_invariants(s)
    assert sum(1 for s in spans if s.logon is not None) == sum(
        1 for e in events if e.method == "Logon")
    still_open = {(s.host, s.info.session_id) for s in tracker.sessions}
    assert {s.key for s in spans if s.is_open} == still_open


# -- the command -------------------------------------------------------------------------------

def journal_with(events: list[SensEvent]) -> None:
    with Journal(os.environ["SENS_JOURNAL"]) as j:
        j.append_many(events)


def test_cli_table(capsys: pytest.CaptureFixture[str]) -> None:
    journal_with(rdp_day())
    assert main(["timeline"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["HOST", "USER", "SESSION", "LOGON", "LOGOFF", "DURATION",
                              "INTERVALS"]
    assert out[1].split()[:8] == ["web01", "alice", "3", "2026-11-23", "10:00:00",
                                  "2026-11-23", "11:30:00", "1h30m"]
    assert out[1].endswith("connected 10:00-10:30 (1.2.3.4), disconnected 10:30-11:00, "
                           "connected 11:00-11:30 (5.6.7.8)")
    assert "still open" in out[2] and out[2].endswith("connected 10:05-… (9.9.9.9)")
    assert out[-1] == "2 session(s), 1 still open."


def test_cli_json_window_and_filter(capsys: pytest.CaptureFixture[str]) -> None:
    journal_with(rdp_day())
    assert main(["timeline", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["user_name"] for r in rows] == ["alice", "bob"]
    # alice's session began before --since, and is shown whole
    assert main(["timeline", "--json", "--since", at(80).isoformat()]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["user_name"], r["logon"]) for r in rows] == [
        ("alice", "2026-11-23T10:00:00.000000Z"), ("bob", "2026-11-23T10:05:00.000000Z")]
    assert main(["timeline", "--json", "--since", at(95).isoformat()]) == 0
    assert [json.loads(x)["user_name"] for x in capsys.readouterr().out.splitlines()] == ["bob"]
    assert main(["timeline", "--json", "--until", at(3).isoformat()]) == 0
    assert [json.loads(x)["user_name"] for x in capsys.readouterr().out.splitlines()] == [
        "alice"]
    assert main(["timeline", "--json", "--filter", "client_address = '5.6.7.8'"]) == 0
    [row] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert row["user_name"] == "alice" and len(row["intervals"]) == 3


def test_cli_empty_journal(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["timeline"]) == 0
    assert capsys.readouterr().out.strip().endswith("0 session(s), 0 still open.")


def test_cli_bad_usage(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["timeline", "--filter", "bstrUserName = "]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sens: bad filter") and err.count("\n") == 1
    assert main(["timeline", "--since", "last tuesday"]) == 2
    assert "cannot read the time 'last tuesday'" in capsys.readouterr().err
    journal_with(rdp_day())
    assert main(["timeline", "--html", str(tmp_path / "no" / "such" / "dir.html")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sens: cannot write ") and "Traceback" not in err


def test_cli_control_characters_are_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    journal_with([ev("Logon", 0, user="evil\x1b[2J", client_address="\x07bell")])
    assert main(["timeline"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "evil\\x1b[2J" in out


def test_cli_reads_the_fleet_store(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from pysens.fleet.collector import check_message
    from pysens.fleet.store import StoredEvent, open_store

    url = f"sqlite:///{tmp_path}/fleet.db"
    events = [*rdp_day(), ev("Logon", 7, host="db01", user="carol", sid="c1")]
    with open_store(url) as store:
        items = [check_message("s", e.to_json_text().encode(), None) for e in events]
        assert store.commit([i for i in items if isinstance(i, StoredEvent)]) == len(events)
    assert main(["timeline", "--json", "--store", url, "--host", "db01"]) == 0
    [row] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert (row["host"], row["user_name"]) == ("db01", "carol")
    assert main(["timeline", "--store", url]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "3 session(s), 2 still open."


def test_real_wtmp_matches_last(capsys: pytest.CaptureFixture[str], shared_data: Path) -> None:
    """The sample wtmp imported for real: the sessions `last` lists, with the same logins."""
    wtmp = shared_data / "wtmp" / "artemis__ubuntu18.04_wtmp"
    assert main(["import", "wtmp", str(wtmp)]) == 0
    capsys.readouterr()
    assert main(["timeline", "--json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    last = [line.split() for line in
            (wtmp.parent / (wtmp.name + ".last-wx-iso.txt")).read_text().splitlines()
            if line and not line.startswith(("reboot", "runlevel", "shutdown", "wtmp"))
            and " begins " not in line]
    mine = sorted((r["user_name"], r["tty"], r["logon"][:19]) for r in rows if r["logon"])
    theirs = sorted((f[0], f[1], f[3][:19]) for f in last if len(f) > 3 and "T" in f[3])
    assert mine and [m[:2] for m in mine] == [t[:2] for t in theirs]
    for r in rows:
        assert r["intervals"] and r["intervals"][0]["start"] == r["start"]


_METHODS = [Method.Logon, Method.Logoff, Method.SessionDisconnect, Method.SessionReconnect,
            Method.PostShell, Method.DisplayLock, Method.BatteryLow]


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.tuples(
    st.sampled_from(_METHODS), st.sampled_from(["1", "2", "3", None]),
    st.sampled_from(["h1", "h2"]), st.integers(0, 40)), min_size=1, max_size=60),
    windows=st.lists(st.tuples(st.integers(-2, 45), st.one_of(st.none(), st.integers(0, 50))),
                     min_size=1, max_size=6))
def test_a_window_read_gives_the_timeline_a_whole_read_gives(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[Method, str | None, str, int]],
    windows: list[tuple[int, int | None]],
) -> None:
    # `sens timeline --since` reads only the sessions that can overlap the window
    # (Journal.session_events, Store.session_events); whatever the events -- ties, reused
    # keys, a Logoff alone, events without a session id, non-session methods -- the selected
    # sessions are the same as from the whole journal.
    where = tmp_path_factory.mktemp("j")
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    with Journal(where / "j.db") as j, open_store(f"sqlite:///{where}/fleet.db") as store:
        j.append_many([SensEvent(m, user_name="u" if sid is None else f"u{sid}",
                                 session_id=sid, host=host, source="test",
                                 time=t0 + timedelta(minutes=minute))
                       for m, sid, host, minute in steps])
        everything = list(j.query())
        _store_all(store, everything)
        for lo, hi in windows:
            _same_window(j, store, everything, t0 + timedelta(minutes=lo),
                         None if hi is None else t0 + timedelta(minutes=hi))


def _store_all(store: Any, events: list[SensEvent]) -> None:
    from pysens.fleet.collector import check_message
    from pysens.fleet.store import StoredEvent

    items = [check_message("s", e.to_json_text().encode(), None) for e in events]
    store.commit([i for i in items if isinstance(i, StoredEvent)])


def _same_window(journal: Journal, store: Any, everything: list[SensEvent], since: datetime,
                 until: datetime | None) -> None:
    """The windowed reads of the journal and of the store give the timeline a whole read
    gives."""
    import argparse

    from pysens.cli.timeline import select_spans
    from pysens.timeline import SESSION_METHODS

    names = [str(m) for m in SESSION_METHODS]
    args = argparse.Namespace(filter=None, since=since.isoformat(),
                              until=None if until is None else until.isoformat())
    whole = [s.to_json() for s in select_spans(everything, args)]
    for window in (list(journal.session_events(names, since, until)),
                   list(store.session_events(names, since, until)),
                   list(store.query())):  # the whole store: ties in each host's journal order
        assert {e.id for e in window} <= {e.id for e in everything}
        assert [s.to_json() for s in select_spans(window, args)] == whole


def test_a_window_read_of_a_postgresql_store_too(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Reused keys, a superseding Logon at the instant of a Logoff, a session open across the
    # window, one that ended before it, one after it, events without a session id.
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    plan = [("Logon", "1", 0), ("Logoff", "1", 5), ("Logon", "1", 5), ("SessionDisconnect",
            "1", 8), ("Logon", "2", 1), ("Logoff", "2", 2), ("Logon", "3", 3),
            ("SessionReconnect", "3", 20), ("Logoff", "3", 30), ("Logon", None, 4),
            ("Logon", "4", 25), ("Logoff", "1", 40)]
    events = [SensEvent(m, user_name=f"u{sid}", session_id=sid, host="h", source="test",
                        time=t0 + timedelta(minutes=minute)) for m, sid, minute in plan]
    with Journal(tmp_path / "j.db") as j, open_store(pg_url) as store:
        j.append_many(events)
        everything = list(j.query())
        _store_all(store, everything)
        for lo, hi in [(6, 10), (10, None), (0, 3), (26, 50), (41, None), (2, 2)]:
            _same_window(j, store, everything, t0 + timedelta(minutes=lo),
                         None if hi is None else t0 + timedelta(minutes=hi))
    assert main(["timeline", "--json", "--store", pg_url, "--since",
                 (t0 + timedelta(minutes=10)).isoformat()]) == 0
    spans = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    # 1 (open from 5 to 40), 3 (3 to 30), 4 (from 25) and the one with no session id (from 4)
    assert sorted(str(s["session_id"]) for s in spans) == ["1", "3", "4", "None"]
