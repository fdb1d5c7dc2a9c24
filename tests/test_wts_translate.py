"""WTS codes + the state read at that moment -> observations -> Tracker -> SENS events.

The code sequences encoded below are what Windows sends for one user action. Their sources:

* codes and their meaning: Microsoft's WM_WTSSESSION_CHANGE page, winuser.h (mingw-w64), .NET's
  SessionSwitchReason;
* the multi-code sequences (Windows 7 era, observed with a WTS-registered window,
  http://strongline.blogspot.com/search/label/SessionLock), "Observed sequences":
  - fast user switch to an existing session: console_disconnect(user1) -> console_connect(logon
    screen) -> console_disconnect(logon screen) -> console_connect(user2) -> unlock(user2);
  - logoff at the console: logoff(user), console_disconnect(user), console_connect(system);
  - lock: session_lock only;
  - new remote connect: remote_connect -> session_logon;
  - remote reconnect: remote_connect(system) ... remote_disconnect(system) -> remote_connect(user);
  - "logon-screen sessions can be taken over by the next logon (same id)";
* RDP disconnect (window closed) is WTS_REMOTE_DISCONNECT of the user's session (LSM 24);
* query failures: WTSClientName "Access Denied" on some machines;
  ERROR_CTX_WINSTATION_NOT_FOUND (7022) once a session is gone;
* WTSClientAddress layout and WTSINFOW / WTSINFOEX layouts: Microsoft's wtsapi32.h and the
  WTS_CLIENT_ADDRESS documentation (IPv4 at offset 2 of Address, IPv6 at 0).
"""

from __future__ import annotations

import ctypes
import logging
from datetime import UTC, datetime, timedelta

import pytest

from pysens.events import Method, SensEvent
from pysens.observations import SessionAppeared, SessionRecord, SessionVanished
from pysens.sources.wts_translate import (
    ConnectState,
    InfoClass,
    QueryFailure,
    SessionState,
    WtsCode,
    WtsQueryError,
    WtsTranslator,
    decode_client_address,
    decode_session_flags,
    decode_string,
    decode_wtsinfo,
    filetime,
    read_state,
)
from pysens.tracker import Tracker

C = WtsCode
M = Method
T0 = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)
BEFORE = T0 - timedelta(hours=2)  # logon time of sessions open before watching began


def state(sid: int, user: str | None = None, **kw: object) -> SessionState:
    """A session state as WTSQuerySessionInformationW would give it."""
    if user is not None:
        kw.setdefault("domain", "CORP")
    return SessionState(sid, user_name=user, **kw)  # type: ignore[arg-type]


def console(sid: int, user: str | None, cs: ConnectState = ConnectState.Active,
            **kw: object) -> SessionState:
    return state(sid, user, session_name="Console" if cs == ConnectState.Active else None,
                 connect_state=cs, protocol=0, **kw)


def rdp(sid: int, user: str | None, cs: ConnectState = ConnectState.Active, **kw: object
        ) -> SessionState:
    kw.setdefault("client_name", "LAPTOP-7")
    kw.setdefault("client_address", "192.0.2.10")
    return state(sid, user, session_name=f"RDP-Tcp#{sid}", connect_state=cs, protocol=2, **kw)


class Run:
    """A translator feeding a tracker, one notification at a time."""

    def __init__(self, *snapshot: SessionState) -> None:
        self.translator = WtsTranslator(host="win01")
        self.tracker = Tracker(host="win01", clock=lambda: T0)
        self.time = T0
        self.events: list[SensEvent] = []
        self.snapshot = self.translator.snapshot(snapshot, T0)
        assert self.tracker.feed_all(self.snapshot) == []  # existing sessions: no events

    def __call__(self, code: int, sid: int, st: SessionState | None) -> list[SensEvent]:
        self.time += timedelta(seconds=1)
        out = self.tracker.feed_all(self.translator.translate(self.time, code, sid, st))
        self.events.extend(out)
        return out


def brief(events: list[SensEvent]) -> list[tuple[str, str | None, str | None]]:
    return [(e.method, e.user_name, e.session_id) for e in events]


# -- snapshot --------------------------------------------------------------------------------

def test_snapshot_reports_only_sessions_with_a_user() -> None:
    run = Run(
        state(0, None, session_name="Services", connect_state=ConnectState.Disconnected),
        console(1, "alice", logon_time=BEFORE),
        console(2, "bob", ConnectState.Disconnected, logon_time=BEFORE, locked=True),
        state(65536, None, session_name="RDP-Tcp", connect_state=ConnectState.Listen),
    )
    assert [type(o) for o in run.snapshot] == [SessionAppeared, SessionAppeared]
    assert all(isinstance(o, SessionAppeared) and o.existing for o in run.snapshot)
    table = {s.info.session_id: (s.info.user_name, s.state) for s in run.tracker.sessions}
    assert table == {"1": ("alice", "active"), "2": ("bob", "disconnected")}
    assert run.tracker.session("1") is not None
    alice = run.tracker.session("1")
    assert alice is not None and alice.since == BEFORE and alice.info.domain == "CORP"


def test_snapshot_with_include_existing_fires_logon_and_finds_bob_detached() -> None:
    translator = WtsTranslator()
    tracker = Tracker(host="win01", include_existing=True)
    obs = translator.snapshot([
        console(1, "alice", logon_time=BEFORE),
        console(2, "bob", ConnectState.Disconnected, logon_time=BEFORE),
    ], T0)
    # Found running: their shells are up already (Logon then PostShell).
    assert brief(tracker.feed_all(obs)) == [
        ("Logon", "alice", "1"), ("PostShell", "alice", "1"),
        ("Logon", "bob", "2"), ("PostShell", "bob", "2"), ("SessionDisconnect", "bob", "2"),
    ]


# -- fast user switching ---------------------------------------------------------------------

def test_fast_user_switch_to_an_existing_session_is_disconnect_reconnect_unlock() -> None:
    # [STRONG] five codes: disconnect(user1), connect(logon UI), disconnect(logon UI),
    # connect(user2), unlock(user2). bob's session waits locked (WTSINFOEX SessionFlags).
    run = Run(console(1, "alice", logon_time=BEFORE),
              console(2, "bob", ConnectState.Disconnected, logon_time=BEFORE, locked=True))
    assert brief(run(C.CONSOLE_DISCONNECT, 1, console(1, "alice", ConnectState.Disconnected))) \
        == [("SessionDisconnect", "alice", "1")]
    assert run(C.CONSOLE_CONNECT, 3, console(3, None)) == []          # the logon UI
    assert run(C.CONSOLE_DISCONNECT, 3, console(3, None, ConnectState.Disconnected)) == []
    assert brief(run(C.CONSOLE_CONNECT, 2, console(2, "bob", locked=True))) == [
        ("SessionReconnect", "bob", "2")]
    assert brief(run(C.SESSION_UNLOCK, 2, console(2, "bob", locked=False))) == [
        ("DisplayUnlock", "bob", "2")]
    assert brief(run.events) == [
        ("SessionDisconnect", "alice", "1"), ("SessionReconnect", "bob", "2"),
        ("DisplayUnlock", "bob", "2"),
    ]
    assert all(e.source == "wts" and e.host == "win01" and not e.remote for e in run.events)
    assert "Logon" not in [e.method for e in run.events]
    states = {s.info.user_name: s.state for s in run.tracker.sessions}
    assert states == {"alice": "disconnected", "bob": "active"}


def test_fast_user_switch_to_a_new_user_takes_over_the_logon_ui_session() -> None:
    # "Logon-screen sessions can be taken over by the next logon (same id)" [STRONG].
    run = Run(console(1, "alice", logon_time=BEFORE))
    run(C.CONSOLE_DISCONNECT, 1, console(1, "alice", ConnectState.Disconnected))
    run(C.SESSION_CREATE, 3, console(3, None))
    run(C.CONSOLE_CONNECT, 3, console(3, None))
    run(C.SESSION_LOGON, 3, console(3, "carol", logon_time=T0 + timedelta(seconds=3)))
    run(C.SESSION_DESKTOP_READY, 3, console(3, "carol"))
    assert brief(run.events) == [
        ("SessionDisconnect", "alice", "1"), ("Logon", "carol", "3"), ("PostShell", "carol", "3"),
    ]
    logon = run.events[1]
    assert logon.session_name == "Console" and logon.domain == "CORP"
    assert logon.session_type == "console" and logon.remote is False
    assert logon.raw["wts_event"] == "WTS_SESSION_LOGON" and logon.raw["wts_code"] == 5
    assert logon.raw["connect_state"] == "WTSActive"
    assert set(logon.classes) == {"ISensLogon", "ISensLogon2"}


def test_logon_ui_session_alone_gives_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "pysens.sources.wts")
    run = Run(state(0, None))
    for code in (C.SESSION_CREATE, C.CONSOLE_CONNECT, C.SESSION_LOCK, C.SESSION_UNLOCK,
                 C.CONSOLE_DISCONNECT, C.SESSION_DESKTOP_READY, C.SESSION_LOGOFF,
                 C.SESSION_TERMINATE):
        assert run(code, 3, console(3, None)) == []
    assert run.events == [] and run.tracker.sessions == []
    assert "no user session" in caplog.text


# -- Remote Desktop ----------------------------------------------------------------------------

def test_new_rdp_logon_is_connect_then_logon_and_the_connect_is_no_reconnect() -> None:
    # [STRONG] remote_connect -> session_logon. With NLA the query may already name the user at
    # the connect: that must not make it a reconnect.
    run = Run()
    assert run(C.REMOTE_CONNECT, 4, rdp(4, "dave")) == []
    assert brief(run(C.SESSION_LOGON, 4, rdp(4, "dave", logon_time=T0))) == [
        ("Logon", "dave", "4")]
    assert brief(run(C.SESSION_DESKTOP_READY, 4, rdp(4, "dave"))) == [("PostShell", "dave", "4")]
    logon = run.events[0]
    assert logon.remote is True and logon.session_type == "rdp"
    assert (logon.client_name, logon.client_address) == ("LAPTOP-7", "192.0.2.10")
    assert logon.session_name == "RDP-Tcp#4" and logon.domain == "CORP"
    assert logon.raw["logon_time"] == "2026-11-23T20:00:00.000000Z"


def test_rdp_disconnect_and_reconnect_through_a_temporary_logon_session() -> None:
    run = Run(rdp(4, "dave", logon_time=BEFORE))
    # Window closed: the session stays, the client fields are empty while disconnected.
    gone = rdp(4, "dave", ConnectState.Disconnected, client_name=None, client_address=None)
    assert brief(run(C.REMOTE_DISCONNECT, 4, gone)) == [("SessionDisconnect", "dave", "4")]
    assert run.events[-1].client_address == "192.0.2.10"  # remembered, not nulled
    # [STRONG] remote_connect(system) ... remote_disconnect(system) -> remote_connect(user).
    assert run(C.SESSION_CREATE, 5, state(5, None)) == []
    assert run(C.REMOTE_CONNECT, 5, rdp(5, None)) == []
    assert run(C.REMOTE_DISCONNECT, 5, rdp(5, None, ConnectState.Disconnected)) == []
    back = rdp(4, "dave", client_name="DESK-9", client_address="2001:db8::7")
    assert brief(run(C.REMOTE_CONNECT, 4, back)) == [("SessionReconnect", "dave", "4")]
    assert run(C.SESSION_TERMINATE, 5, state(5, None)) == []
    assert [e.method for e in run.events] == ["SessionDisconnect", "SessionReconnect"]
    again = run.events[-1]
    assert (again.client_name, again.client_address) == ("DESK-9", "2001:db8::7")
    assert again.remote and again.raw["wts_event"] == "WTS_REMOTE_CONNECT"


def test_console_session_taken_over_by_rdp_is_disconnect_then_remote_reconnect() -> None:
    run = Run(console(1, "alice", logon_time=BEFORE))
    run(C.CONSOLE_DISCONNECT, 1, console(1, "alice", ConnectState.Disconnected))
    run(C.REMOTE_CONNECT, 1, rdp(1, "alice"))
    assert brief(run.events) == [("SessionDisconnect", "alice", "1"),
                                 ("SessionReconnect", "alice", "1")]
    assert run.events[0].remote is False and run.events[1].remote is True
    assert run.events[1].client_address == "192.0.2.10"


# -- lock, logoff, the rest ------------------------------------------------------------------------

def test_lock_and_unlock_alternate() -> None:
    run = Run(console(1, "alice", logon_time=BEFORE))
    run(C.SESSION_LOCK, 1, console(1, "alice", locked=True))
    run(C.SESSION_LOCK, 1, console(1, "alice", locked=True))  # a repeat: one lock
    run(C.SESSION_UNLOCK, 1, console(1, "alice", locked=False))
    run(C.SESSION_UNLOCK, 1, console(1, "alice", locked=False))
    assert brief(run.events) == [("DisplayLock", "alice", "1"), ("DisplayUnlock", "alice", "1")]
    assert run.events[0].classes == ("ISensLogon",)


def test_logoff_at_the_console_is_one_logoff() -> None:
    # [STRONG] logoff(user), console_disconnect(user), console_connect(system). The queries
    # after the logoff may still name the user (and its logon time predates watching): that
    # must not bring the session back.
    run = Run(console(1, "alice", logon_time=BEFORE))
    assert brief(run(C.SESSION_LOGOFF, 1, console(1, None))) == [("Logoff", "alice", "1")]
    assert run(C.CONSOLE_DISCONNECT, 1, console(1, "alice", ConnectState.Disconnected,
                                               logon_time=BEFORE)) == []
    assert run(C.CONSOLE_CONNECT, 6, console(6, None)) == []
    assert run(C.SESSION_TERMINATE, 1, state(1, None)) == []
    assert brief(run.events) == [("Logoff", "alice", "1")]
    assert run.events[0].domain == "CORP" and run.tracker.sessions == []


def test_session_id_reused_after_logoff_is_a_new_logon() -> None:
    run = Run(console(1, "alice", logon_time=BEFORE))
    run(C.SESSION_LOGOFF, 1, console(1, "alice"))
    run(C.SESSION_TERMINATE, 1, state(1, None))
    run(C.SESSION_CREATE, 1, state(1, None))
    run(C.SESSION_LOGON, 1, console(1, "erin", logon_time=T0))
    assert brief(run.events) == [("Logoff", "alice", "1"), ("Logon", "erin", "1")]


def test_terminate_without_logoff_is_a_synthesized_logoff() -> None:
    run = Run(rdp(4, "dave", logon_time=BEFORE))
    obs = run.translator.translate(T0, C.SESSION_TERMINATE, 4, state(4, None))
    assert len(obs) == 1 and isinstance(obs[0], SessionVanished)
    events = run.tracker.feed_all(obs)
    assert brief(events) == [("Logoff", "dave", "4")]
    assert events[0].synthesized and events[0].reason == "terminated"


def test_remote_control_and_unknown_codes_give_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "pysens.sources.wts")
    run = Run(console(1, "alice", logon_time=BEFORE))
    assert run(C.SESSION_REMOTE_CONTROL, 1, console(1, "alice")) == []
    assert run(0xC, 1, console(1, "alice")) == []
    assert "WTS_SESSION_REMOTE_CONTROL for session 1 has no SENS counterpart" in caplog.text
    assert "0xC for session 1 has no SENS counterpart" in caplog.text


def test_logon_queued_before_the_snapshot_is_not_a_second_logon() -> None:
    # The window is registered before the sessions are read: a code that arrived in between
    # describes what the snapshot already holds.
    run = Run(console(1, "alice", logon_time=BEFORE))
    obs = run.translator.translate(T0 - timedelta(milliseconds=5), C.SESSION_LOGON, 1,
                                   console(1, "alice", logon_time=BEFORE))
    assert obs == []


def test_a_session_whose_snapshot_query_failed_is_adopted_when_a_code_shows_its_user() -> None:
    broken = state(7, None, failures=(QueryFailure("WTSSessionInfo", 1722),))
    run = Run(broken)
    assert run.snapshot == []
    assert brief(run(C.SESSION_LOCK, 7, console(7, "frank", logon_time=BEFORE))) == [
        ("DisplayLock", "frank", "7")]
    assert brief(run(C.SESSION_LOGOFF, 7, console(7, "frank"))) == [("Logoff", "frank", "7")]


# -- failed queries ------------------------------------------------------------------------------

def test_access_denied_on_client_name_still_fires_with_a_null(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "pysens.sources.wts")
    run = Run()
    denied = rdp(4, "dave", client_name=None,
                 failures=(QueryFailure("WTSClientName", 5),))
    assert brief(run(C.SESSION_LOGON, 4, denied)) == [("Logon", "dave", "4")]
    event = run.events[0]
    assert event.client_name is None and event.client_address == "192.0.2.10"
    assert event.raw["failed_queries"] == ["WTSClientName failed: access denied (5)"]
    assert ("WTS session 4: WTSClientName failed: access denied (5); its fields are left null"
            in caplog.messages)


def test_session_gone_at_logoff_fires_with_what_is_remembered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "pysens.sources.wts")
    run = Run(rdp(4, "dave", logon_time=BEFORE))
    gone = state(4, None, failures=tuple(QueryFailure(c.name, 7022) for c in (
        InfoClass.WTSSessionInfo, InfoClass.WTSUserName, InfoClass.WTSClientName)))
    assert brief(run(C.SESSION_LOGOFF, 4, gone)) == [("Logoff", "dave", "4")]
    e = run.events[0]
    assert (e.domain, e.client_address, e.session_name) == ("CORP", "192.0.2.10", "RDP-Tcp#4")
    assert "WTS session 4: WTSSessionInfo failed: session not found (7022)" in caplog.text
    # No state at all (the source could not even ask): the same.
    run2 = Run(rdp(4, "dave", logon_time=BEFORE))
    assert brief(run2(C.REMOTE_DISCONNECT, 4, None)) == [("SessionDisconnect", "dave", "4")]


def test_logon_whose_user_cannot_be_read_fires_at_the_next_code_that_names_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "pysens.sources.wts")
    run = Run()
    failed = state(3, None, failures=(QueryFailure("WTSSessionInfo", 1722),
                                      QueryFailure("WTSUserName", 1722)))
    assert run(C.SESSION_LOGON, 3, failed) == []
    assert "logon seen, user not readable yet" in caplog.text
    logon_time = run.time
    assert brief(run(C.SESSION_DESKTOP_READY, 3, console(3, "gina"))) == [
        ("Logon", "gina", "3"), ("PostShell", "gina", "3")]
    assert run.events[0].time == logon_time


# -- the buffers ---------------------------------------------------------------------------------

WCHAR = ctypes.c_uint16  # ctypes.c_wchar is 4 bytes on Linux; Windows' WCHAR is 2


class WTSINFOW(ctypes.Structure):
    """WTSINFOW as wtsapi32.h declares it; ctypes lays it out (and pads it) independently."""

    _fields_ = [
        ("State", ctypes.c_uint32), ("SessionId", ctypes.c_uint32),
        ("IncomingBytes", ctypes.c_uint32), ("OutgoingBytes", ctypes.c_uint32),
        ("IncomingFrames", ctypes.c_uint32), ("OutgoingFrames", ctypes.c_uint32),
        ("IncomingCompressedBytes", ctypes.c_uint32), ("OutgoingCompressedBytes", ctypes.c_uint32),
        ("WinStationName", WCHAR * 32), ("Domain", WCHAR * 17), ("UserName", WCHAR * 21),
        ("ConnectTime", ctypes.c_int64), ("DisconnectTime", ctypes.c_int64),
        ("LastInputTime", ctypes.c_int64), ("LogonTime", ctypes.c_int64),
        ("CurrentTime", ctypes.c_int64),
    ]


def wchars(text: str, n: int) -> ctypes.Array[ctypes.c_uint16]:
    arr = (WCHAR * n)()
    for i, b in enumerate(text.encode("utf-16-le")[::2]):
        arr[i] = b
    return arr


UNIX_EPOCH_FT = 116444736000000000  # 1970-01-01 as a FILETIME


def ft(t: datetime) -> int:
    return UNIX_EPOCH_FT + int((t - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 10**7)


def wtsinfo(user: str, domain: str, station: str, cs: int, logon: datetime) -> bytes:
    s = WTSINFOW(State=cs, SessionId=2, WinStationName=wchars(station, 32),
                 Domain=wchars(domain, 17), UserName=wchars(user, 21), ConnectTime=ft(logon),
                 LogonTime=ft(logon), CurrentTime=ft(T0))
    return bytes(s)


def test_wtsinfo_layout_matches_the_header() -> None:
    assert ctypes.sizeof(WTSINFOW) == 216
    data = wtsinfo("bob", "CORP", "Console", ConnectState.Active, BEFORE)
    got = decode_wtsinfo(data)
    assert got == {"connect_state": 0, "session_name": "Console", "domain": "CORP",
                   "user_name": "bob", "connect_time": BEFORE, "disconnect_time": None,
                   "logon_time": BEFORE}
    with pytest.raises(ValueError, match="216 bytes, got 100"):
        decode_wtsinfo(data[:100])


def test_filetime_and_strings() -> None:
    assert filetime(UNIX_EPOCH_FT) == datetime(1970, 1, 1, tzinfo=UTC)
    assert filetime(0) is None and filetime(-5) is None
    assert decode_string("RDP-Tcp#6\0".encode("utf-16-le")) == "RDP-Tcp#6"
    assert decode_string(b"\0\0") is None and decode_string(b"") is None


def test_client_address_families() -> None:
    # The documentation's own examples: 192.168.0.1 is "0x00 0x00 0xC0 0xA8 0x00 0x01".
    v4 = (2).to_bytes(4, "little") + bytes([0, 0, 0xC0, 0xA8, 0, 1]) + bytes(14)
    assert decode_client_address(v4) == "192.168.0.1"
    v6 = (23).to_bytes(4, "little") + bytes([0xFF, 0xFF]) + bytes(13) + b"\x01" + bytes(4)
    assert decode_client_address(v6) == "ffff::1"
    assert decode_client_address((0).to_bytes(4, "little") + bytes(20)) is None
    assert decode_client_address((2).to_bytes(4, "little") + bytes(20)) is None
    assert decode_client_address(b"\x02\x00") is None


def test_session_flags_and_the_windows_7_reversal() -> None:
    def ex(flags: int) -> bytes:
        return (1).to_bytes(4, "little") + bytes(4) + (2).to_bytes(4, "little") + bytes(4) + (
            flags.to_bytes(4, "little", signed=True)) + bytes(200)
    assert decode_session_flags(ex(0)) is True       # WTS_SESSIONSTATE_LOCK
    assert decode_session_flags(ex(1)) is False      # WTS_SESSIONSTATE_UNLOCK
    assert decode_session_flags(ex(-1)) is None      # WTS_SESSIONSTATE_UNKNOWN
    assert decode_session_flags(ex(0), reversed_flags=True) is False
    assert decode_session_flags(ex(1), reversed_flags=True) is True


def fetcher(buffers: dict[int, bytes | int]) -> tuple[list[int], object]:
    asked: list[int] = []

    def fetch(session_id: int, info_class: int) -> bytes:
        assert session_id == 2
        asked.append(info_class)
        value = buffers.get(info_class, 50)  # ERROR_NOT_SUPPORTED for what is not given
        if isinstance(value, int):
            raise WtsQueryError(value)
        return value

    return asked, fetch


def test_read_state_assembles_the_queries() -> None:
    _, fetch = fetcher({
        InfoClass.WTSSessionInfo: wtsinfo("bob", "CORP", "RDP-Tcp#2", 0, BEFORE),
        InfoClass.WTSClientName: "DESK-9\0".encode("utf-16-le"),
        InfoClass.WTSClientAddress: (2).to_bytes(4, "little") + bytes([0, 0, 10, 1, 2, 3])
        + bytes(14),
        InfoClass.WTSClientProtocolType: (2).to_bytes(2, "little"),
        InfoClass.WTSSessionInfoEx: (1).to_bytes(4, "little") + bytes(12)
        + (1).to_bytes(4, "little") + bytes(200),
    })
    st = read_state(2, fetch)  # type: ignore[arg-type]
    assert st == SessionState(2, user_name="bob", domain="CORP", session_name="RDP-Tcp#2",
                              client_name="DESK-9", client_address="10.1.2.3", connect_state=0,
                              protocol=2, logon_time=BEFORE, connect_time=BEFORE, locked=False)


def test_read_state_falls_back_and_lists_what_failed() -> None:
    asked, fetch = fetcher({
        InfoClass.WTSSessionInfo: 5,
        InfoClass.WTSUserName: "bob\0".encode("utf-16-le"),
        InfoClass.WTSDomainName: "CORP\0".encode("utf-16-le"),
        InfoClass.WTSWinStationName: 5,
        InfoClass.WTSConnectState: (4).to_bytes(4, "little"),
        InfoClass.WTSClientName: 5,
        InfoClass.WTSClientAddress: 7022,
        InfoClass.WTSClientProtocolType: (0).to_bytes(2, "little"),
    })
    st = read_state(2, fetch)  # type: ignore[arg-type]
    assert (st.user_name, st.domain, st.session_name, st.connect_state, st.protocol) == (
        "bob", "CORP", None, ConnectState.Disconnected, 0)
    assert st.client_name is None and st.client_address is None and st.locked is None
    assert [str(f) for f in st.failures] == [
        "WTSSessionInfo failed: access denied (5)",
        "WTSWinStationName failed: access denied (5)",
        "WTSClientName failed: access denied (5)",
        "WTSClientAddress failed: session not found (7022)",
        "WTSSessionInfoEx failed: not supported (50)",
    ]
    assert InfoClass.WTSUserName in asked


def test_a_record_names_the_method_for_the_tracker() -> None:
    tr = WtsTranslator(host="h")
    tr.snapshot([], T0)
    (obs,) = tr.translate(T0 + timedelta(seconds=1), C.SESSION_LOGON, 9, rdp(9, "hal"))
    assert isinstance(obs, SessionRecord) and obs.method is M.Logon and obs.host == "h"
    assert obs.info.session_id == "9" and not obs.post_shell
    assert tr.user_sessions[9].user_name == "hal"
