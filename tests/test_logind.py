"""The logind source against a private dbus-daemon with python-dbusmock's logind template.

Signals are emitted the way real logind emits them (SessionNew / SessionRemoved by hand, a VT
switch's PropertiesChanged with ``Active`` alone, ``State=closing`` without any signal).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dbus_fixtures import T0, Collector, LogindWorld, logind, session_props
from pysens.cli import main
from pysens.events import SensEvent
from pysens.sources import open_source
from pysens.sources.logind import GONE_REASON, LogindSource, probe
from pysens.sources.logind_map import (
    changes_from_properties,
    info_from_properties,
    since_from_timestamp,
)
from pysens.tracker import Tracker

__all__ = ["logind"]  # the fixture, re-exported so pytest finds it


def methods(events: list[SensEvent]) -> list[tuple[str, str | None, str | None]]:
    return [(str(e.method), e.user_name, e.session_id) for e in events]


# -- pure mapping ----------------------------------------------------------------------------


def test_missing_properties_give_nulls() -> None:
    info = info_from_properties({}, session_id="7")
    assert info.session_id == "7"
    assert (info.user_name, info.seat, info.tty, info.state, info.since) == (None,) * 5
    assert info.remote is False and info.active is None and info.locked is None


def test_properties_map_to_session_info() -> None:
    info = info_from_properties(session_props("c3", "bob", seat="seat0", tty="tty2",
                                              type_="x11", active=False, locked=True)
                                | {"Seat": ["seat0", "/org/freedesktop/login1/seat/seat0"]})
    assert (info.session_id, info.user_name, info.seat, info.tty) == ("c3", "bob", "seat0", "tty2")
    assert (info.session_type, info.state, info.active, info.locked) == ("x11", "online", False,
                                                                         True)
    assert info.since == since_from_timestamp(T0)
    assert info.since is not None and info.since.isoformat() == "2026-01-01T00:00:00+00:00"


def test_remote_host_without_remote_flag_is_remote() -> None:
    info = info_from_properties({"Id": "4", "Name": "x", "RemoteHost": "192.0.2.7"})
    assert info.remote is True and info.client_address == "192.0.2.7"
    assert info_from_properties({"Seat": ["", "/"], "Timestamp": 0}).seat is None


def test_changes_only_name_what_changed() -> None:
    assert changes_from_properties({"Active": False}) == {"active": False}
    assert changes_from_properties({"LockedHint": True, "State": "closing", "Foo": 1}) == {
        "locked": True, "state": "closing"}
    assert changes_from_properties({"TTY": ""}) == {"tty": None}


# -- live, against the mock ----------------------------------------------------------------


async def test_tty_login_and_logout(logind: LogindWorld) -> None:
    c = await logind.watch()
    await logind.mock.add(session_props("1", "alice", tty="tty3", type_="tty"))
    logon, shell = await c.next(2)
    assert methods([logon, shell]) == [("Logon", "alice", "1"), ("PostShell", "alice", "1")]
    assert logon.tty == "tty3" and logon.source == "logind" and not logon.remote
    assert logon.time == since_from_timestamp(T0)  # logind's Timestamp, not the clock
    await logind.mock.remove("1")
    (logoff,) = await c.next()
    assert methods([logoff]) == [("Logoff", "alice", "1")] and not logoff.synthesized
    assert c.tracker.sessions == []


async def test_ssh_login_is_remote_with_client_address(logind: LogindWorld) -> None:
    c = await logind.watch()
    await logind.mock.add(session_props("c7", "bob", tty="pts/1", remote=True,
                                        remote_host="198.51.100.4", service="sshd"))
    logon, shell = await c.next(2)
    assert logon.remote is True and logon.client_address == "198.51.100.4"
    assert logon.session_name == "sshd" and logon.seat is None and str(shell.method) == "PostShell"
    assert logon.raw["Service"] == "sshd"
    await logind.mock.remove("c7")
    assert methods(await c.next()) == [("Logoff", "bob", "c7")]


async def test_graphical_login_after_greeter(logind: LogindWorld) -> None:
    c = await logind.watch()
    await logind.mock.add(session_props("c1", "Debian-gdm", 116, seat="seat0", type_="wayland",
                                        class_="greeter", service="gdm-launch-environment"))
    await logind.mock.add(session_props("2", "carol", seat="seat0", tty="tty2",
                                        type_="unspecified", service="gdm-password"))
    await logind.mock.change("c1", Active=False)
    await logind.mock.remove("c1")
    (logon,) = await c.next()
    assert methods([logon]) == [("Logon", "carol", "2")]  # nothing for the greeter
    await logind.mock.change("2", Type="wayland")  # the display server is up: the shell
    (shell,) = await c.next()
    assert methods([shell]) == [("PostShell", "carol", "2")] and shell.session_type == "wayland"
    assert [s.info.user_name for s in c.tracker.sessions] == ["carol"]


async def test_fast_user_switching(logind: LogindWorld) -> None:
    c = await logind.watch()
    await logind.mock.add(session_props("2", "alice", seat="seat0", type_="x11"))
    assert methods(await c.next(2))[0] == ("Logon", "alice", "2")
    # Switch user: a new seat session becomes active; logind says Active and nothing else.
    await logind.mock.add(session_props("3", "bob", 1001, seat="seat0", type_="x11"))
    assert methods(await c.next(2))[0] == ("Logon", "bob", "3")
    await logind.mock.change("2", Active=False)
    assert methods(await c.next()) == [("SessionDisconnect", "alice", "2")]
    # And back.
    await logind.mock.change("3", Active=False)
    await logind.mock.change("2", Active=True)
    assert methods(await c.next(2)) == [("SessionDisconnect", "bob", "3"),
                                        ("SessionReconnect", "alice", "2")]
    assert {s.info.user_name: s.state for s in c.tracker.sessions} == {
        "alice": "active", "bob": "disconnected"}


async def test_lock_and_unlock_follow_locked_hint(logind: LogindWorld) -> None:
    c = await logind.watch()
    await logind.mock.add(session_props("5", "dave", seat="seat0", type_="x11"))
    await c.next(2)
    await logind.mock.session_signal("5", "Lock")  # a request to the locker, not a fact
    await logind.mock.call(logind.mock.paths["5"], "org.freedesktop.login1.Session",
                           "SetLockedHint", "b", [True])
    (lock,) = await c.next()
    assert methods([lock]) == [("DisplayLock", "dave", "5")]
    assert c.tracker.sessions[0].state == "locked"
    await logind.mock.session_signal("5", "Unlock")
    await logind.mock.change("5", LockedHint=False)
    assert methods(await c.next()) == [("DisplayUnlock", "dave", "5")]


async def test_closing_session_logs_off_without_session_removed(logind: LogindWorld) -> None:
    c = await logind.watch()
    await logind.mock.add(session_props("8", "erin", tty="pts/2", remote=True,
                                        remote_host="203.0.113.9", service="sshd"))
    await c.next(2)
    # Logout with a lingering tmux: logind sets State=closing silently and rewrites its file.
    await logind.mock.change_quietly("8", State="closing")
    logind.save_session_file("8", "closing")
    (logoff,) = await c.next()
    assert methods([logoff]) == [("Logoff", "erin", "8")] and logoff.reason == "closing"
    # SessionRemoved much later adds nothing.
    await logind.mock.add(session_props("9", "frank", tty="tty4"))
    await logind.mock.remove("8")
    await logind.mock.remove("9")
    assert methods(await c.next(3)) == [("Logon", "frank", "9"), ("PostShell", "frank", "9"),
                                        ("Logoff", "frank", "9")]


async def test_closing_seen_on_other_signals_without_inotify(logind: LogindWorld) -> None:
    source = LogindSource(logind.address, sessions_dir=None)
    c = Collector(source, Tracker(host="testhost"))
    logind.collectors.append(c)
    await c.ready()
    await logind.mock.add(session_props("c4", "gina", seat="seat0", type_="x11"))
    await c.next(2)
    # Logout signals nothing about the session; a user signal is a hint to re-read State.
    await logind.mock.change_quietly("c4", State="closing")
    await logind.mock.manager_signal("UserRemoved", "uo",
                                     [1000, "/org/freedesktop/login1/user/_1000"])
    (logoff,) = await c.next()
    assert methods([logoff]) == [("Logoff", "gina", "c4")]


async def test_existing_sessions_get_no_logon_unless_asked(logind: LogindWorld) -> None:
    await logind.mock.add(session_props("c1", "hana", tty="pts/0", service="sshd",
                                        remote=True), announce=False)
    await logind.mock.add(session_props("c2", "ivan", seat="seat0", type_="x11",
                                        active=False, locked=True), announce=False)
    c = await logind.watch()
    states = {s.info.user_name: s.state for s in c.tracker.sessions}
    assert states == {"hana": "active", "ivan": "disconnected"}
    await logind.mock.remove("c1")
    assert methods(await c.next()) == [("Logoff", "hana", "c1")]  # and no Logon before it

    first = await logind.watch(include_existing=True)
    again = await logind.watch(include_existing=True)
    a = await first.next(3)
    b = await again.next(3)
    assert methods(a) == [("Logon", "ivan", "c2"), ("PostShell", "ivan", "c2"),
                          ("DisplayLock", "ivan", "c2")]
    assert a[0].time == since_from_timestamp(T0)
    assert [e.id for e in a[:2]] == [e.id for e in b[:2]]  # same state, same ids


async def test_missing_properties_and_control_characters(logind: LogindWorld) -> None:
    c = await logind.watch()
    await logind.mock.add({"Id": "c9", "Name": "mallory\x1b[31m\x07"})  # elogind-like, sparse
    await logind.mock.add({"Id": "c10"})  # no user at all: not a user session, no events
    await logind.mock.add(session_props("c11", "judy", tty="tty5"))
    events = await c.next(4)
    assert methods(events) == [("Logon", "mallory\x1b[31m\x07", "c9"),
                               ("PostShell", "mallory\x1b[31m\x07", "c9"),
                               ("Logon", "judy", "c11"), ("PostShell", "judy", "c11")]
    e = events[0]
    assert (e.tty, e.seat, e.session_type, e.client_address) == (None, None, None, None)
    assert json.loads(json.dumps(e.to_json()))["user_name"] == "mallory\x1b[31m\x07"


async def test_logind_restart_reports_the_gap(logind: LogindWorld) -> None:
    c = await logind.watch()
    keep = session_props("c1", "kim", tty="pts/0", service="sshd", remote=True)
    await logind.mock.add(keep)
    await logind.mock.add(session_props("c2", "lee", tty="tty2"))
    await c.next(4)
    await logind.restart_mock()  # logind away; c2 ends meanwhile, c3 begins
    await logind.mock.add(keep, announce=False)
    await logind.mock.add(session_props("c3", "max", tty="tty3", timestamp=T0 + 5),
                          announce=False)
    await logind.mock.take_name()  # back on the bus with its restored sessions
    events = await _until(c, {("Logoff", "lee", "c2"), ("Logon", "max", "c3"),
                               ("PostShell", "max", "c3")})
    gone = next(e for e in events if str(e.method) == "Logoff")
    assert gone.synthesized and gone.reason == GONE_REASON
    assert not any(e.user_name == "kim" for e in events)
    assert {s.info.user_name for s in c.tracker.sessions} == {"kim", "max"}


async def test_bus_restart_reconnects_and_reports_the_gap(logind: LogindWorld) -> None:
    c = await logind.watch()
    await logind.mock.add(session_props("c1", "nina", tty="tty1"))
    await logind.mock.add(session_props("c2", "omar", tty="tty2"))
    await c.next(4)
    await logind.restart_bus()
    await logind.mock.add(session_props("c1", "nina", tty="tty1"), announce=False)
    await logind.mock.add(session_props("c5", "pia", tty="tty5"), announce=False)
    await logind.mock.take_name()
    events = await _until(c, {("Logoff", "omar", "c2"), ("Logon", "pia", "c5"),
                               ("PostShell", "pia", "c5")})
    gone = next(e for e in events if str(e.method) == "Logoff")
    assert gone.synthesized and gone.reason == GONE_REASON
    await logind.mock.remove("c1")  # and the new connection carries signals
    assert methods(await c.next()) == [("Logoff", "nina", "c1")]


async def _until(c: Collector, wanted: set[tuple[str, str, str]]) -> list[SensEvent]:
    """Events until every (method, user, session) in ``wanted`` has been seen."""
    seen: list[SensEvent] = []
    while not wanted <= {(str(e.method), e.user_name, e.session_id) for e in seen}:
        seen.extend(await c.next())
    return seen


# -- probe and the command line ----------------------------------------------------------------


async def test_probe_says_why(logind: LogindWorld, tmp_path: Path) -> None:
    assert await probe(logind.address) is None
    await logind.mock.stop()
    why = await probe(logind.address)
    assert why is not None and "org.freedesktop.login1 is not on the system bus" in why
    missing = f"unix:path={tmp_path}/nothing-here"
    why = await probe(missing)
    assert why is not None and "not reachable" in why and "nothing-here" in why
    with pytest.raises(Exception, match="cannot connect to the system bus"):
        async for _ in open_source("logind", bus_address=missing).watch():
            pass


def test_watch_without_a_bus_is_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/none")
    assert main(["watch", "--source", "logind"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sens: cannot connect to the system bus") and err.count("\n") == 1
    assert "Traceback" not in err


async def test_sessions_command(
    logind: LogindWorld, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", logind.address)
    await logind.mock.add(session_props("c1", "quinn", tty="pts/4", service="sshd",
                                        remote=True, remote_host="192.0.2.1"), announce=False)
    await logind.mock.add(session_props("4", "rosa", seat="seat0", type_="x11",
                                        active=False), announce=False)
    assert await asyncio.to_thread(main, ["sessions", "--source", "auto", "--json"]) == 0
    out = capsys.readouterr()
    rows = {r["user_name"]: r for r in map(json.loads, out.out.splitlines())}
    assert rows["quinn"]["client_address"] == "192.0.2.1" and rows["quinn"]["state"] == "active"
    assert rows["rosa"]["state"] == "disconnected" and rows["rosa"]["seat"] == "seat0"
    assert "watching logind" in out.err


async def test_sens_watch_end_to_end(logind: LogindWorld, tmp_path: Path) -> None:
    await logind.mock.add(session_props("c1", "sam", tty="pts/0", service="sshd"),
                          announce=False)
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": logind.address,
           "SENS_SOCKET": str(tmp_path / "none.sock"), "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pysens.cli", "watch", "--source", "auto", "--json",
        "--include-existing", "--class", "ISensLogon2", "--class", "ISensLogon",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        async def line() -> dict[str, object]:
            text = await asyncio.wait_for(proc.stdout.readline(), 20)  # type: ignore[union-attr]
            assert text, (await proc.stderr.read()).decode()  # type: ignore[union-attr]
            return json.loads(text)  # type: ignore[no-any-return]

        first = await line()  # the existing session, printed once subscribed
        assert (first["method"], first["user_name"]) == ("Logon", "sam")
        assert (await line())["method"] == "PostShell"
        await logind.mock.add(session_props("c2", "tess", tty="pts/1", remote=True,
                                            remote_host="10.1.2.3", service="sshd"))
        logon = await line()
        assert (logon["method"], logon["user_name"], logon["client_address"]) == (
            "Logon", "tess", "10.1.2.3")
        assert (await line())["method"] == "PostShell"
        await logind.mock.remove("c2")
        assert ((await line())["method"], "tess") == ("Logoff", "tess")
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
    err = (await proc.stderr.read()).decode()
    assert "sens: watching logind" in err and "Traceback" not in err
