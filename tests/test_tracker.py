"""The tracker: SENS rules on observation streams, by example and under random streams."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from pysens.events import Method, SensEvent
from pysens.observations import (
    HostReset,
    Observation,
    SessionAppeared,
    SessionChanged,
    SessionInfo,
    SessionRecord,
    SessionVanished,
)
from pysens.tracker import Tracker

M = Method
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def methods(events: list[SensEvent]) -> list[str]:
    return [str(e.method) for e in events]


def seat_session(sid: str, user: str, **kw: object) -> SessionInfo:
    base: dict[str, object] = {"user_name": user, "seat": "seat0", "session_type": "x11",
                               "session_class": "user", "active": True, "tty": "tty2"}
    base.update(kw)
    return SessionInfo(sid, **base)  # type: ignore[arg-type]


# -- by example --------------------------------------------------------------------------------


def test_tty_login_then_logout() -> None:
    t = Tracker(host="h")
    info = SessionInfo("3", user_name="alice", session_type="tty", seat="seat0", tty="tty3",
                       session_class="user", active=True)
    ev = t.feed(SessionAppeared(at(0), "logind", info))
    assert methods(ev) == ["Logon", "PostShell"]
    assert ev[0].user_name == "alice" and ev[0].session_id == "3" and ev[0].tty == "tty3"
    assert [s.info.session_id for s in t.sessions] == ["3"]
    ev = t.feed(SessionVanished(at(5), "logind", "3"))
    assert methods(ev) == ["Logoff"] and ev[0].time == at(5)
    assert t.sessions == []


def test_greeter_gets_no_events_and_the_user_session_after_it_does() -> None:
    t = Tracker(host="h")
    greeter = SessionInfo("c1", user_name="gdm", session_class="greeter", seat="seat0",
                          session_type="wayland", active=True)
    assert t.feed(SessionAppeared(at(0), "logind", greeter)) == []
    assert t.feed(SessionChanged(at(1), "logind", "c1", {"active": False})) == []
    ev = t.feed(SessionAppeared(at(1), "logind", seat_session("2", "alice")))
    assert methods(ev) == ["Logon", "PostShell"]
    assert t.feed(SessionVanished(at(2), "logind", "c1")) == []


def test_graphical_shell_waits_for_the_display_server_type() -> None:
    t = Tracker(host="h")
    ev = t.feed(SessionAppeared(at(0), "logind", seat_session("2", "alice",
                                                              session_type="unspecified")))
    assert methods(ev) == ["Logon"]
    assert methods(t.feed(SessionChanged(at(1), "logind", "2", {"session_type": "wayland"}))) == [
        "PostShell"]
    assert t.feed(SessionChanged(at(2), "logind", "2", {"session_type": "x11"})) == []


def test_fast_user_switch_is_disconnect_and_reconnect_never_logoff() -> None:
    t = Tracker(host="h")
    t.feed(SessionAppeared(at(0), "logind", seat_session("2", "alice")))
    t.feed(SessionAppeared(at(1), "logind", seat_session("3", "bob", active=False)))
    # VT switch back and forth: PropertiesChanged carries only Active.
    ev = t.feed_all([
        SessionChanged(at(2), "logind", "3", {"active": True}),
        SessionChanged(at(2), "logind", "2", {"active": False}),
    ])
    assert [(str(e.method), e.user_name) for e in ev] == [("SessionDisconnect", "alice")]
    assert t.session("2").state == "disconnected"  # type: ignore[union-attr]
    ev = t.feed_all([
        SessionChanged(at(3), "logind", "3", {"active": False}),
        SessionChanged(at(3), "logind", "2", {"active": True}),
    ])
    assert [(str(e.method), e.user_name) for e in ev] == [
        ("SessionDisconnect", "bob"), ("SessionReconnect", "alice")]


def test_seatless_sessions_never_disconnect() -> None:
    t = Tracker(host="h")
    ssh = SessionInfo("5", user_name="carol", session_class="user", remote=True,
                      client_address="10.0.0.9", session_type="tty", active=True)
    ev = t.feed(SessionAppeared(at(0), "logind", ssh))
    assert methods(ev) == ["Logon", "PostShell"] and ev[0].remote
    assert ev[0].client_address == "10.0.0.9"
    assert t.feed(SessionChanged(at(1), "logind", "5", {"active": False})) == []


def test_lock_and_unlock_alternate() -> None:
    t = Tracker(host="h")
    t.feed(SessionAppeared(at(0), "logind", seat_session("2", "alice")))
    ev = t.feed_all([
        SessionChanged(at(1), "logind", "2", {"locked": True}),
        SessionChanged(at(1), "logind", "2", {"locked": True}),
        SessionChanged(at(2), "logind", "2", {"locked": False}),
    ])
    assert methods(ev) == ["DisplayLock", "DisplayUnlock"]
    assert ev[0].classes == (M.DisplayLock and ev[0].classes)
    assert [str(c) for c in ev[0].classes] == ["ISensLogon"]


def test_closing_is_logoff_once_and_late_signals_are_ignored() -> None:
    t = Tracker(host="h")
    t.feed(SessionAppeared(at(0), "logind", seat_session("2", "alice")))
    ev = t.feed(SessionChanged(at(5), "logind", "2", {"state": "closing", "active": False}))
    assert methods(ev) == ["Logoff"] and ev[0].reason == "closing"
    assert t.feed(SessionChanged(at(6), "logind", "2", {"active": True})) == []
    assert t.feed(SessionVanished(at(60), "logind", "2")) == []


def test_existing_sessions_are_adopted_silently_unless_asked() -> None:
    info = seat_session("2", "alice", active=False, since=at(-60))
    t = Tracker(host="h")
    assert t.feed(SessionAppeared(at(0), "logind", info, existing=True)) == []
    assert t.session("2").state == "disconnected"  # type: ignore[union-attr]
    assert methods(t.feed(SessionChanged(at(1), "logind", "2", {"active": True}))) == [
        "SessionReconnect"]
    t2 = Tracker(host="h", include_existing=True)
    ev = t2.feed(SessionAppeared(at(0), "logind", info, existing=True))
    assert methods(ev) == ["Logon", "PostShell", "SessionDisconnect"]
    assert ev[0].time == at(-60) and ev[2].time == at(0)
    assert methods(t2.feed(SessionChanged(at(1), "logind", "2", {"active": True}))) == [
        "SessionReconnect"]
    screen = SessionInfo("screen:41", user_name="bob", state="disconnected")
    assert t.feed(SessionAppeared(at(0), "utmp", screen, existing=True)) == []
    ev = t.feed(SessionRecord(at(1), "utmp", M.SessionReconnect, screen))
    assert methods(ev) == ["SessionReconnect"]


def test_one_reconnect_logged_twice_is_one_event() -> None:
    t = Tracker(host="h")
    info = SessionInfo("3", user_name="alice", domain="CORP", remote=True,
                       client_address="10.1.1.1")
    ev = t.feed_all([
        SessionRecord(at(0), "evtx", M.Logon, info),
        SessionRecord(at(0.01), "evtx", M.Logon, info),  # Security 4624 + LSM 21
        SessionRecord(at(0.02), "evtx", M.PostShell, info),  # LSM 22
        SessionRecord(at(1), "evtx", M.SessionDisconnect, info),
        SessionRecord(at(2), "evtx", M.SessionReconnect, info),  # LSM 25
        SessionRecord(at(2), "evtx", M.SessionReconnect, info),  # Security 4778
        SessionRecord(at(3), "evtx", M.Logoff, info),
        SessionRecord(at(3), "evtx", M.Logoff, info),  # 4647 then 4634
    ])
    assert methods(ev) == [
        "Logon", "PostShell", "SessionDisconnect", "SessionReconnect", "Logoff"]


def test_a_log_that_starts_mid_session_invents_no_logon() -> None:
    t = Tracker(host="h")
    info = SessionInfo("4", user_name="bob")
    ev = t.feed(SessionRecord(at(0), "evtx", M.SessionReconnect, info))
    assert methods(ev) == ["SessionReconnect"]
    ev = t.feed(SessionRecord(at(1), "evtx", M.Logoff, info))
    assert methods(ev) == ["Logoff"]


def test_new_logon_on_a_line_supersedes_and_reboot_closes_everything() -> None:
    t = Tracker(host="h")
    login = SessionRecord(at(0), "wtmp", M.Logon, SessionInfo("pts/0", user_name="alice"),
                          post_shell=True)
    assert methods(t.feed(login)) == ["Logon", "PostShell"]
    ev = t.feed_all([
        SessionRecord(at(10), "wtmp", M.Logon, SessionInfo("pts/0", user_name="bob")),
        SessionRecord(at(11), "wtmp", M.Logon, SessionInfo("pts/1", user_name="carol")),
        HostReset(at(20), "wtmp", "crash"),
    ])
    got = [(str(e.method), e.user_name, e.reason, e.synthesized) for e in ev
           if e.method is M.Logoff]
    assert got == [("Logoff", "alice", "superseded", True), ("Logoff", "bob", "crash", True),
                   ("Logoff", "carol", "crash", True)]
    assert t.sessions == []


def test_replayed_events_keep_their_identity() -> None:
    t = Tracker(host="h")
    e = SensEvent(method="Logon", user_name="alice", session_id="1", time=at(0), host="web01",
                  source="logind")
    out = t.feed(SessionRecord.of_event(e))
    assert out[0] is e and out[0].host == "web01"
    assert t.session("1", host="web01") is not None


# -- under random streams ----------------------------------------------------------------------

SIDS = ["1", "2", "3"]
USERS = ["alice", "bob"]
step = st.integers(min_value=0, max_value=120)


@st.composite
def infos(draw: st.DrawFn, sid: str | None = None) -> SessionInfo:
    return SessionInfo(
        sid if sid is not None else draw(st.sampled_from(SIDS)),
        user_name=draw(st.sampled_from(USERS)),
        session_class="user",
        seat=draw(st.sampled_from([None, "seat0"])),
        session_type=draw(st.sampled_from([None, "tty", "x11", "wayland", "unspecified"])),
        active=draw(st.sampled_from([None, True, False])),
        locked=draw(st.sampled_from([None, True, False])),
        state=draw(st.sampled_from([None, "online", "active", "closing"])),
    )


changes = st.dictionaries(
    st.sampled_from(["active", "locked", "state", "session_type"]),
    st.sampled_from([True, False, "closing", "online", "x11", "tty"]),
    max_size=3,
).map(lambda d: {k: v for k, v in d.items() if (k in ("active", "locked")) == isinstance(v, bool)})

SESSION_METHODS = [M.Logon, M.Logoff, M.SessionDisconnect, M.SessionReconnect, M.PostShell,
                   M.DisplayLock, M.DisplayUnlock]


@st.composite
def observation(draw: st.DrawFn) -> tuple[int, Observation]:
    kind = draw(st.sampled_from(
        ["appear", "appear", "change", "change", "change", "vanish", "record", "record",
         "greeter", "reset"]))
    dt = draw(step)
    t = at(0)  # replaced by the caller with a running clock
    if kind == "appear":
        return dt, SessionAppeared(t, "s", draw(infos()), existing=draw(st.booleans()))
    if kind == "change":
        return dt, SessionChanged(t, "s", draw(st.sampled_from(SIDS)), draw(changes))
    if kind == "vanish":
        return dt, SessionVanished(t, "s", draw(st.sampled_from(SIDS)))
    if kind == "record":
        return dt, SessionRecord(t, "s", draw(st.sampled_from(SESSION_METHODS)), draw(infos()))
    if kind == "greeter":
        g = SessionInfo("g", user_name="gdm", session_class="greeter", seat="seat0",
                        active=draw(st.booleans()))
        greeter: list[Observation] = [
            SessionAppeared(t, "s", g), SessionChanged(t, "s", "g", {"active": False}),
            SessionVanished(t, "s", "g")]
        return dt, draw(st.sampled_from(greeter))
    return dt, HostReset(t, "s", "reboot")


@dataclass
class Life:
    """What the checker knows of one session key."""

    status: str = "none"  # none | logon | adopted | closed | released
    shell: bool = False
    connected: bool | None = None
    locked: bool | None = None


def check(lives: dict[str, Life], obs: Observation, out: list[SensEvent]) -> None:
    for e in out:
        assert e.session_id != "g", "a greeter session got an event"
        assert e.user_name, "an event without a user"
        life = lives.setdefault(e.session_id or "", Life())
        m = e.method
        if m is M.Logon:
            assert life.status not in ("logon", "adopted"), "Logon on an open session"
            lives[e.session_id or ""] = Life("logon", False, True, False)
            continue
        assert life.status != "closed", f"{m} after Logoff"
        if life.status in ("none", "released"):
            # First seen in mid-life (a new instance if the id was released): state unknown.
            life = lives[e.session_id or ""] = Life("adopted")
        if m is M.Logoff:
            life.status = "closed"
        elif m is M.PostShell:
            assert not life.shell, "PostShell twice"
            life.shell = True
        elif m in (M.SessionDisconnect, M.SessionReconnect):
            now = m is M.SessionReconnect
            assert life.connected is not now, f"{m} twice in a row"
            life.connected = now
        elif m in (M.DisplayLock, M.DisplayUnlock):
            now = m is M.DisplayLock
            assert life.locked is not now, f"{m} twice in a row"
            life.locked = now
    if isinstance(obs, SessionAppeared) and obs.existing and obs.info.session_id is not None:
        life = lives.get(obs.info.session_id, Life())
        if life.status not in ("logon", "adopted") and obs.info.state != "closing":
            # A source says this session was already there: adopted silently, state unknown.
            lives[obs.info.session_id] = Life("adopted", True, None, None)
    # The session id is released (may be reused) once the source says it is gone.
    gone = lives.get(obs.session_id) if isinstance(obs, SessionVanished) else None
    if gone is not None and gone.status == "closed":
        gone.status = "released"
    if isinstance(obs, HostReset):
        for life in lives.values():
            if life.status == "closed":
                life.status = "released"


@settings(max_examples=300, deadline=None)
@given(st.lists(observation(), max_size=60))
def test_invariants_hold_for_any_observation_stream(stream: list[tuple[int, Observation]]) -> None:
    t = Tracker(host="h")
    lives: dict[str, Life] = {}
    clock = at(0)
    for dt, template in stream:
        clock += timedelta(seconds=dt)
        obs = type(template)(**{**{f: getattr(template, f) for f in template.__slots__},
                                "time": clock})
        out = t.feed(obs)
        check(lives, obs, out)
        for e in out:
            assert e.time == clock and e.host == "h"
    open_ids = {s.info.session_id for s in t.sessions}
    for sid, life in lives.items():
        if life.status in ("logon", "adopted"):
            assert sid in open_ids, "a session with events is missing from the table"
        if life.status == "closed":
            assert sid not in open_ids, "a logged-off session is still in the table"


def test_a_logoff_record_keeps_its_own_raw_fields() -> None:
    t = Tracker(host="h")
    t.feed(SessionRecord(at(0), "evtx", M.Logon, SessionInfo("2", user_name="a",
                                                             raw={"EventID": 21})))
    (off,) = t.feed(SessionRecord(at(1), "evtx", M.Logoff, SessionInfo("2", user_name="a",
                                                                       raw={"EventID": 23})))
    assert off.raw == {"EventID": 23}


def test_a_reconnect_from_elsewhere_replaces_the_client() -> None:
    t = Tracker(host="h")
    rdp = SessionInfo("2", user_name="a", remote=True, client_name="LAPTOP",
                      client_address="10.0.0.5")
    console = SessionInfo("2", user_name="a")
    ev = t.feed_all([SessionRecord(at(0), "wts", M.Logon, rdp),
                     SessionRecord(at(1), "wts", M.SessionDisconnect, rdp),
                     SessionRecord(at(2), "wts", M.SessionReconnect, console)])
    assert ev[-1].method is M.SessionReconnect
    assert (ev[-1].remote, ev[-1].client_name, ev[-1].client_address) == (False, None, None)
    s = t.session("2")
    assert s is not None and s.info.remote is False and s.info.client_address is None
