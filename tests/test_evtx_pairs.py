"""One occurrence logged in two channels (or as two records) is one event, also when the log
begins after the session's logon: the session is then first seen in mid-life, or only by its end.

Security records name a session by its logon id, LSM records by its session id; a session whose
Logon the logs do not show must still be recognised as one session by both, so that it ends with
one Logoff and is one row of the timeline. The records are hand-built in the shape the ``evtx``
package decodes (the helpers of ``test_evtx``), or read from the real Security log and cut where a
log that began later would begin.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest

from pysens.events import Method, SensEvent
from pysens.observations import SessionRecord
from pysens.sources.evtx import iter_records
from pysens.sources.evtx_map import Record, correlate
from pysens.timeline import build_timeline
from pysens.tracker import Tracker
from test_evtx import LSM_P, SEC_P, SECURITY, T0, ev, logoff, logon4624, lsm, parsed, rdp_day, ts

M = Method


def end23(seconds: float, session: int = 3, user: str = "CORP\\alice") -> dict[str, Any]:
    """LSM 23 (session logoff succeeded): User and SessionID, no Address."""
    return ev(seconds, LSM_P, 23, {"User": user, "SessionID": session})


def lock(seconds: float, eid: int, logon_id: str = "0x5a1", session: int = 3) -> dict[str, Any]:
    return ev(seconds, SEC_P, eid, {
        "TargetUserSid": "S-1-5-21-1-2-3-1104", "TargetUserName": "alice",
        "TargetDomainName": "CORP", "TargetLogonId": logon_id, "SessionId": session})


def events(security: list[dict[str, Any]], local: list[dict[str, Any]]) -> list[SensEvent]:
    """The tracker's events for both logs read together (in either file order: the same)."""
    one = Tracker(host="x").feed_all(correlate(parsed(security, 0) + parsed(local, 1)))
    other = Tracker(host="x").feed_all(correlate(parsed(local, 0) + parsed(security, 1)))
    assert [e.id for e in one] == [e.id for e in other]
    return one


def session_methods(evs: list[SensEvent]) -> list[Method]:
    return [e.canonical_method for e in evs]


# -- each pair of the mapping table, for a session whose Logon is before both logs ---------------

ENDS = {
    "4647+LSM23": ([logoff(900.0, 4647, "0x5a1")], [end23(899.9)]),
    "LSM23 after 4647": ([logoff(900.0, 4647, "0x5a1")], [end23(900.4)]),
    "4634+LSM23": ([logoff(900.2, 4634, "0x5a1")], [end23(899.9)]),
    "4647+4634+LSM23": ([logoff(900.0, 4647, "0x5a1"), logoff(900.1, 4634, "0x5a1")],
                        [end23(899.9)]),
}


@pytest.mark.parametrize("name", list(ENDS))
def test_a_session_seen_only_by_its_end_has_one_logoff(name: str) -> None:
    security, local = ENDS[name]
    evs = events(security, local)
    assert session_methods(evs) == [M.Logoff]
    (end,) = evs
    # Both ids, whichever channel wrote first: the session's and the logon's.
    assert (end.session_id, end.logon_id, end.user_name, end.domain) == (
        "3", "0x5a1", "alice", "CORP")
    assert end.time == min(r.time for r in parsed(security + local, 0))  # the first report
    spans = build_timeline(evs)
    assert len(spans) == 1
    assert (spans[0].logon, spans[0].logoff, spans[0].session_id) == (None, end.time, "3")


def test_every_pair_of_a_session_first_seen_in_mid_life_is_one_event() -> None:
    """Disconnect (4779 + LSM 24), Reconnect (4778 + LSM 25), lock 4800/4801, Logoff
    (4647 + 4634 + LSM 23): one event each, one session, one timeline row."""
    security = [ts(60.2, 4779), ts(301.0, 4778), lock(400.0, 4800), lock(420.0, 4801),
                logoff(900.0, 4647, "0x5a1"), logoff(900.1, 4634, "0x5a1")]
    local = [lsm(60.0, 24), lsm(300.5, 25), end23(899.9)]
    evs = events(security, local)
    assert session_methods(evs) == [
        M.SessionDisconnect, M.SessionReconnect, M.DisplayLock, M.DisplayUnlock, M.Logoff]
    assert {e.session_id for e in evs} == {"3"}
    (span,) = build_timeline(evs)
    assert span.logon is None and span.logoff == evs[-1].time
    assert [i.state for i in span.intervals] == ["disconnected", "connected"]


def test_lsm_alone_shows_the_disconnect_the_end_names_the_logon() -> None:
    """Only LSM 24 says the session was left (4779 is not audited): the 4634 of the connection
    that Windows closes then is not the session's end, once the end ties its logon id to the
    session."""
    security = [logoff(60.4, 4634, "0x5a1"), logoff(900.0, 4647, "0x5a1")]
    local = [lsm(60.0, 24), end23(899.9)]
    evs = events(security, local)
    assert session_methods(evs) == [M.SessionDisconnect, M.Logoff]
    assert {e.session_id for e in evs} == {"3"}
    assert len(build_timeline(evs)) == 1


def test_logon_in_one_log_only_the_other_began_later() -> None:
    """Security shows the logon; the LSM log (smaller, overwritten sooner) only the end; and
    the other way round. One Logon, one Logoff, one row."""
    security, local = rdp_day()
    cases = [
        ([logon4624(0.0, "0x5a1"), logoff(900.0, 4647, "0x5a1")], [end23(899.9)]),
        ([logoff(900.0, 4647, "0x5a1"), logoff(900.1, 4634, "0x5a1")],
         [lsm(0.3, 21), lsm(2.0, 22), end23(899.9)]),
    ]
    for sec, loc in cases:
        evs = events(sec, loc)
        methods = [m for m in session_methods(evs) if m is not M.PostShell]
        assert methods == [M.Logon, M.Logoff]
        assert {e.session_id for e in evs} == {"3"}
        (span,) = build_timeline(evs)
        assert span.logon is not None and span.logoff is not None
    # both logs whole: unchanged, and the Logoff is at its first record's time (LSM 23's)
    evs = events(security, local)
    assert session_methods(evs) == [
        M.Logon, M.PostShell, M.SessionDisconnect, M.SessionReconnect, M.Logoff]
    assert evs[-1].time == T0 + timedelta(seconds=899.9)


def test_two_users_ending_together_stay_two_sessions() -> None:
    security = [logoff(900.0, 4647, "0x5a1")]
    bob = ev(900.05, SEC_P, 4647, {"TargetUserSid": "S-1-5-21-1-2-3-1105", "TargetUserName": "bob",
                                    "TargetDomainName": "CORP", "TargetLogonId": "0x6b2"})
    local = [end23(899.9), end23(899.95, session=4, user="CORP\\bob")]
    evs = events([*security, bob], local)
    assert sorted((e.user_name, e.session_id, e.logon_id) for e in evs) == [
        ("alice", "3", "0x5a1"), ("bob", "4", "0x6b2")]
    assert len(build_timeline(evs)) == 2


def test_one_users_two_sessions_ending_together_keep_their_own_ends() -> None:
    """alice's session 3 (logon 0x5a1, known from its disconnect) and session 5 (0x6c3) end
    within a second, each LSM 23 nearer to the other session's 4647: each logon id keeps its
    own session."""
    security = [ts(60.2, 4779), logoff(900.0, 4647, "0x5a1"), logoff(900.2, 4647, "0x6c3")]
    local = [lsm(60.0, 24), end23(899.95, session=5), end23(900.3, session=3)]
    evs = events(security, local)
    ends = sorted((e.session_id, e.logon_id) for e in evs if e.canonical_method is M.Logoff)
    assert ends == [("3", "0x5a1"), ("5", "0x6c3")]
    assert len(build_timeline(evs)) == 2


# -- the real Security log, cut where a log that began later would begin -------------------------

def security_records() -> list[Record]:
    return list(iter_records(str(SECURITY), pytest.fail))


def logoffs_after(cut: str) -> tuple[list[SensEvent], list[Record]]:
    recs = [r for r in security_records() if r.time.isoformat() > cut]
    return Tracker(host="x").feed_all(correlate(recs)), recs


@pytest.mark.parametrize(("cut", "logon_ids"), [
    # fsir's split-token logon 0x380e4 / 0x38112 (records 2248-2249): 4647 of 0x38112, then a
    # 4634 of each token at one instant (records 2253-2255).
    ("2017-04-14T01:20:00", {"0x380e4", "0x38112"}),
    # fsir's 0xe00a1 / 0xe00b6 (records 755-756): both tokens' 4634 at one instant (758-759).
    ("2016-07-09T22:26:10.200", {"0xe00a1", "0xe00b6"}),
])
def test_real_split_token_logoff_before_its_logon_is_one_logoff(
    cut: str, logon_ids: set[str]
) -> None:
    evs, recs = logoffs_after(cut)
    ends = [r for r in recs if r.kind == "logoff" and r.logon_id in logon_ids]
    assert len(ends) >= 2 and {r.logon_id for r in ends} == logon_ids  # the file's records
    mine = [e for e in evs if e.logon_id in logon_ids]
    assert session_methods(mine) == [M.Logoff]
    assert mine[0].time == min(r.time for r in ends)
    spans = [s for s in build_timeline(evs) if s.logon_id in logon_ids]
    assert len(spans) == 1 and spans[0].logon is None


def test_real_log_cut_anywhere_ends_each_session_once() -> None:
    """Wherever the log begins (at each logoff record of the file), the timeline has one row
    per session: those that start after the cut, and one for each session open at the cut that
    a record after the cut ends. Read whole, the log ties every logoff record to its logon,
    which names the session. The one exception is what no reader can know without the logon:
    the split token's halves ending apart (not at one instant) look like two logons, as
    archir's runas logon of 2016-07-16 00:18:06 (one half ends at once, the other 37 s later)."""
    recs = security_records()
    whole = list(correlate(recs))
    logons: dict[str, list[datetime]] = {}
    for e in Tracker(host="x").feed_all(whole):
        if e.canonical_method is M.Logon and e.logon_id is not None:
            logons.setdefault(e.logon_id, []).append(e.time)
    # (record time, its session, the record's own logon id, its 4634 time if it is one)
    ends: list[tuple[datetime, tuple[str, datetime], str, datetime | None]] = []
    for o in whole:
        if isinstance(o, SessionRecord) and o.method is M.Logoff and o.info.logon_id in logons:
            start = max(t for t in logons[o.info.logon_id] if t <= o.time)
            own = hex(int(o.info.raw["EventData"]["TargetLogonId"], 16))
            ends.append((o.time, (o.info.logon_id, start), own,
                         o.time if o.info.raw["EventID"] == 4634 else None))
    assert len(ends) > len({e[1] for e in ends})  # sessions ended by two records are in it
    apart = 0
    for cut in sorted({e[0] for e in ends}):
        spans = build_timeline(Tracker(host="x").feed_all(correlate(
            r for r in recs if r.time >= cut)))
        after = sum(1 for ts in logons.values() for t in ts if t >= cut)
        rows = 0
        for session in {e[1] for e in ends if e[0] >= cut and e[1][1] < cut}:
            mine = [e for e in ends if e[1] == session and e[0] >= cut]
            halves = {e[2] for e in mine}
            closes = sorted(e[3] for e in mine if e[3] is not None)
            together = any(b - a <= timedelta(seconds=1) for a, b in pairwise(closes))
            rows += 1 if len(halves) == 1 or together else len(halves)
            apart += len(halves) > 1 and not together
        assert len([s for s in spans if s.logon is not None]) == after, cut
        assert len([s for s in spans if s.logon is None]) == rows, cut
    assert apart == 1  # archir's, the only one
