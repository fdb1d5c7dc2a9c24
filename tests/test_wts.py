"""The ``wts`` source: the module imports everywhere and says plainly off Windows that it needs
Windows; the source's own path (codes from another thread, the state read there, the asyncio
hand-over, the service path) runs here with a fake below the one seam, :class:`WtsApi`.

The Win32 glue itself (:class:`Win32WtsApi`) runs only on Windows: the tests marked ``win32``
below are what ``.github/workflows/windows.yml`` runs there.
"""

from __future__ import annotations

import asyncio
import ctypes
import struct
import sys
import threading
from collections.abc import Callable

import pytest

from pysens.cli import main
from pysens.events import SensEvent
from pysens.live import tracked_events
from pysens.observations import SessionAppeared
from pysens.sources import SourceUnavailable, open_source
from pysens.sources.wts import (
    NEEDS_WINDOWS,
    WTSSESSION_NOTIFICATION,
    Listener,
    Win32WtsApi,
    WtsSource,
    notification_session_id,
    open_wts,
    probe,
    session_change,
)
from pysens.sources.wts_translate import ConnectState, QueryFailure, SessionState, WtsCode
from pysens.tracker import Tracker

C = WtsCode
# What pysens says off Windows: the Windows workflow deselects these (-m "not off_windows").
not_windows = pytest.mark.off_windows


class FakeWtsApi:
    """Stands in for Win32 below the :class:`WtsApi` seam, and nowhere else."""

    def __init__(self, sessions: dict[int, SessionState]) -> None:
        self.sessions = dict(sessions)
        self.listener: Listener | None = None
        self.listening = threading.Event()
        self.stopped = False
        self.query_threads: set[int] = set()
        self.broken: set[int] = set()

    def enumerate_sessions(self) -> list[int]:
        return sorted(self.sessions)

    def query(self, session_id: int) -> SessionState:
        self.query_threads.add(threading.get_ident())
        if session_id in self.broken:
            raise RuntimeError("RPC went away")
        st = self.sessions.get(session_id)
        if st is None:  # what read_state gives for a session already gone
            return SessionState(session_id, failures=(QueryFailure("WTSSessionInfo", 7022),))
        return st

    def listen(self, listener: Listener) -> Callable[[], None]:
        self.listener = listener
        self.listening.set()

        def stop() -> None:
            self.stopped = True

        return stop

    def send(self, steps: list[tuple[int, int, SessionState | None]]) -> None:
        """From a thread of its own, like the window's pump: change the session, then notify."""
        def run() -> None:
            for code, sid, st in steps:
                if st is None:
                    self.sessions.pop(sid, None)
                else:
                    self.sessions[sid] = st
                assert self.listener is not None
                self.listener(code, sid)

        t = threading.Thread(target=run)
        t.start()
        t.join()


def alice(**kw: object) -> SessionState:
    kw = {"connect_state": ConnectState.Active, **kw}
    return SessionState(1, user_name="alice", domain="CORP", session_name="Console",
                        protocol=0, **kw)  # type: ignore[arg-type]


def bob(**kw: object) -> SessionState:
    kw = {"connect_state": ConnectState.Active, "client_address": "198.51.100.4", **kw}
    return SessionState(2, user_name="bob", domain="CORP", session_name="RDP-Tcp#2",
                        protocol=2, client_name="DESK-9", **kw)  # type: ignore[arg-type]


async def collect(source: WtsSource, count: int) -> list[SensEvent]:
    out: list[SensEvent] = []
    async for event in tracked_events(source, Tracker(host="win01")):
        out.append(event)
        if len(out) == count:
            break
    return out


# -- off Windows: plain words -------------------------------------------------------------------

@not_windows
async def test_probe_says_it_needs_windows() -> None:
    assert await probe() == "needs Windows (the WTS API)" == NEEDS_WINDOWS


@not_windows
def test_open_wts_and_the_win32_api_say_they_need_windows() -> None:
    with pytest.raises(SourceUnavailable, match=r"^the wts source needs Windows \(the WTS API\)"):
        open_wts()
    with pytest.raises(SourceUnavailable, match="needs Windows"):
        open_source("wts")
    with pytest.raises(SourceUnavailable, match="needs Windows"):
        Win32WtsApi()


@not_windows
def test_sens_watch_source_wts_exits_1_with_one_sentence(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["watch", "--source", "wts"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"sens: the wts source needs Windows (the WTS API); this is {sys.platform}\n"
    assert main(["sessions", "--source", "wts"]) == 1
    assert "needs Windows" in capsys.readouterr().err


def test_open_wts_with_an_api_and_a_bad_mode() -> None:
    api = FakeWtsApi({})
    assert isinstance(open_wts(api=api, host="h"), WtsSource)
    with pytest.raises(SourceUnavailable, match="notifications must be 'window' or 'service'"):
        open_wts(api=api, notifications="pigeon")


# -- the source above the seam ------------------------------------------------------------------

async def test_snapshot_lists_the_user_sessions() -> None:
    api = FakeWtsApi({0: SessionState(0, session_name="Services"), 1: alice(), 2: bob(
        connect_state=ConnectState.Disconnected)})
    obs = await WtsSource(api).snapshot()
    assert all(isinstance(o, SessionAppeared) and o.existing for o in obs)
    assert [(o.info.user_name, o.info.state) for o in obs if isinstance(o, SessionAppeared)] == [
        ("alice", "active"), ("bob", "disconnected")]


async def test_window_notifications_from_another_thread_become_sens_events() -> None:
    api = FakeWtsApi({0: SessionState(0), 1: alice()})
    source = WtsSource(api, host="win01")
    task = asyncio.create_task(collect(source, 4))
    await asyncio.to_thread(api.listening.wait, 5)
    await asyncio.sleep(0.05)  # let the snapshot be read (its codes would be recognized anyway)
    await asyncio.to_thread(api.send, [
        (C.REMOTE_CONNECT, 2, bob()),
        (C.SESSION_LOGON, 2, bob()),
        (C.SESSION_DESKTOP_READY, 2, bob()),
        (C.SESSION_LOCK, 1, alice(locked=True)),
        (C.REMOTE_DISCONNECT, 2, bob(connect_state=ConnectState.Disconnected,
                                     client_address=None)),
    ])
    events = await asyncio.wait_for(task, 10)
    await source.aclose()
    assert [(e.method, e.user_name, e.session_id) for e in events] == [
        ("Logon", "bob", "2"), ("PostShell", "bob", "2"), ("DisplayLock", "alice", "1"),
        ("SessionDisconnect", "bob", "2")]
    assert events[0].remote and events[0].client_address == "198.51.100.4"
    assert events[3].client_address == "198.51.100.4"
    # Each state was read in the notifying thread, not on the loop.
    assert threading.get_ident() not in api.query_threads
    assert api.stopped


async def test_a_session_gone_or_a_broken_query_still_gives_the_event() -> None:
    api = FakeWtsApi({1: alice(), 2: bob()})
    source = WtsSource(api)
    task = asyncio.create_task(collect(source, 2))
    await asyncio.to_thread(api.listening.wait, 5)
    await asyncio.sleep(0.05)
    api.broken.add(1)
    await asyncio.to_thread(api.send, [(C.SESSION_LOGOFF, 2, None), (C.SESSION_LOCK, 1, alice())])
    events = await asyncio.wait_for(task, 10)
    await source.aclose()
    assert [(e.method, e.user_name, e.client_name) for e in events] == [
        ("Logoff", "bob", "DESK-9"), ("DisplayLock", "alice", None)]
    assert events[0].raw["failed_queries"] == ["WTSSessionInfo failed: session not found (7022)"]


async def test_service_session_change_feeds_service_mode_sources() -> None:
    api = FakeWtsApi({1: alice()})
    source = WtsSource(api, notifications="service")
    window = WtsSource(FakeWtsApi({}))  # a window-mode source is not fed by the service path
    task = asyncio.create_task(collect(source, 2))
    for _ in range(200):
        await asyncio.sleep(0.01)
        if source._loop is not None:
            break
    await asyncio.sleep(0.05)
    api.sessions[2] = bob()

    def handler() -> None:  # what a service's HandlerEx does, on the SCM's thread
        session_change(C.SESSION_LOGON, WTSSESSION_NOTIFICATION(8, 2))
        session_change(C.SESSION_LOCK, (1,))  # pywin32 hands SvcOtherEx a (session_id,) tuple

    await asyncio.to_thread(handler)
    events = await asyncio.wait_for(task, 10)
    await source.aclose()
    await window.aclose()
    assert [(e.method, e.user_name) for e in events] == [("Logon", "bob"), ("DisplayLock",
                                                                            "alice")]
    assert api.listener is None  # no window in service mode
    session_change(C.SESSION_LOGOFF, WTSSESSION_NOTIFICATION(8, 2))  # nobody listens: no error


def test_notification_session_id_takes_what_handlers_have() -> None:
    n = WTSSESSION_NOTIFICATION(8, 7)
    assert notification_session_id(n) == 7
    assert notification_session_id(ctypes.pointer(n)) == 7
    assert notification_session_id(ctypes.c_void_p(ctypes.addressof(n))) == 7
    assert notification_session_id(struct.pack("<II", 8, 7)) == 7
    assert notification_session_id(bytes(n)) == 7
    assert notification_session_id((7,)) == 7
    assert notification_session_id(7) == 7
    with pytest.raises(ValueError, match="8 bytes"):
        notification_session_id(b"\x08\x00")
    with pytest.raises(ValueError, match="NULL"):
        notification_session_id(ctypes.c_void_p())
    with pytest.raises(TypeError, match="not a WTSSESSION_NOTIFICATION: str"):
        notification_session_id("7")


async def test_a_notification_after_close_is_dropped() -> None:
    api = FakeWtsApi({1: alice()})
    source = WtsSource(api)
    source.notify(C.SESSION_LOCK, 1)  # not watching yet: nothing to hand it to
    assert api.query_threads == set()
    await source.aclose()
