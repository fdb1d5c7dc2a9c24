"""GNU screen itself, attached and detached, against the utmp source and ``sens``.

Everything runs in a private mount namespace with a tmpfs on /run, so screen (through
libutempter) writes a private /run/utmp. Needs root and GNU screen (CI has both).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from utmp_fixtures import Lines, Namespace, namespace

UTEMPTER = "/usr/lib/x86_64-linux-gnu/utempter/utempter"

pytestmark = pytest.mark.root


@pytest.fixture
def ns(tmp_path: Path) -> Iterator[Namespace]:
    assert os.geteuid() == 0, "the screen tests need root (unshare -m)"
    assert os.path.exists(UTEMPTER), "libutempter0 (a dependency of screen) is missing"
    yield from namespace(tmp_path)


def watcher(ns: Namespace) -> tuple[Lines, Lines]:
    """``sens -v watch --source utmp --json`` in the namespace, once it is watching."""
    p = ns.sens("-v", "watch", "--source", "utmp", "--json")
    out, err = ns.lines(p)
    err.expect(lambda line: "watching /run/utmp (inotify)" in line)
    return out, err


def next_event(out: Lines, method: str) -> dict[str, object]:
    """The next event printed, which must be ``method``."""
    event: dict[str, object] = json.loads(out.expect(lambda line: line.startswith("{")))
    assert event["method"] == method, (event, out.seen)
    return event


def test_attach_detach_reattach_quit_is_logon_disconnect_reconnect_logoff(
        ns: Namespace) -> None:
    out, _err = watcher(ns)
    ns.attach("-S", "work")
    logon = next_event(out, "Logon")
    sid = str(logon["session_id"])
    server = sid.removeprefix("screen:")
    assert sid.startswith("screen:") and server.isdigit()
    assert logon["user_name"] == "root" and logon["source"] == "utmp"
    assert logon["session_name"] == f"{server}.work"
    assert logon["remote"] is False and logon["client_address"] is None
    assert next_event(out, "PostShell")["session_id"] == sid

    ns.screen("-S", "work", "-X", "screen")  # a second window: same session, no event
    ns.screen("-d", "work")
    assert next_event(out, "SessionDisconnect")["session_id"] == sid
    ns.attach("-r", "work")
    assert next_event(out, "SessionReconnect")["session_id"] == sid
    ns.screen("-d", "work")
    assert next_event(out, "SessionDisconnect")["session_id"] == sid
    ns.attach("-r", "work")
    assert next_event(out, "SessionReconnect")["session_id"] == sid
    ns.screen("-S", "work", "-X", "quit")
    logoff = next_event(out, "Logoff")
    assert logoff["session_id"] == sid and logoff["synthesized"] is False

    events = [json.loads(line) for line in out.seen if line.startswith("{")]
    assert [e["method"] for e in events] == [
        "Logon", "PostShell", "SessionDisconnect", "SessionReconnect", "SessionDisconnect",
        "SessionReconnect", "Logoff"]
    assert len({e["id"] for e in events}) == len(events)
    assert all(e["raw"]["screen"] == f"{server}.work" for e in events)


def test_quit_while_detached_is_a_logoff(ns: Namespace) -> None:
    out, _err = watcher(ns)
    ns.attach("-S", "away")
    sid = next_event(out, "Logon")["session_id"]
    next_event(out, "PostShell")
    ns.screen("-d", "away")
    assert next_event(out, "SessionDisconnect")["session_id"] == sid
    # Nothing is written to utmp now: the server's exit alone says the session is over.
    ns.screen("-S", "away", "-X", "quit")
    assert next_event(out, "Logoff")["session_id"] == sid


def test_a_screen_found_detached_is_listed_disconnected_and_reconnects(
        ns: Namespace) -> None:
    ns.attach("-S", "old")
    probe = ns.python("-c", "import time, sys\nwhile b'S.0' not in open('/run/utmp','rb').read():"
                      " time.sleep(0.02)")
    assert probe.wait(timeout=20) == 0
    ns.screen("-d", "old")
    probe = ns.python("-c", "import time\nwhile b'root' in open('/run/utmp','rb').read():"
                      " time.sleep(0.02)")
    assert probe.wait(timeout=20) == 0

    listing = ns.sens("sessions", "--source", "utmp", "--json")
    stdout, stderr = listing.communicate(timeout=30)
    assert listing.returncode == 0, stderr
    rows = [json.loads(line) for line in stdout.decode().splitlines()]
    assert len(rows) == 1, rows
    assert rows[0]["state"] == "disconnected" and rows[0]["user_name"] == "root"
    assert str(rows[0]["session_id"]).startswith("screen:")

    out, _err = watcher(ns)
    ns.attach("-r", "old")
    reconnect = next_event(out, "SessionReconnect")  # adopted detached: no Logon first
    assert reconnect["session_id"] == rows[0]["session_id"]
    ns.screen("-S", "old", "-X", "quit")
    assert next_event(out, "Logoff")["session_id"] == rows[0]["session_id"]
