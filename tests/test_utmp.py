"""The live utmp source against real utmp files written by ``utmpdump -r`` and changed while it
watches: logins, logouts, slot reuse, rewrites, renames, truncation, garbage, late creation."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pysens.cli import main
from pysens.events import SensEvent, parse_time
from pysens.inotify import Flag, Inotify, InotifyEvent
from pysens.live import tracked_events
from pysens.observations import Observation, SessionAppeared
from pysens.sources import open_source
from pysens.sources.utmp import ProcView, UtmpSource, UtmpState, open_utmp, probe
from pysens.sources.utmprecord import UtmpRecord, iter_records
from pysens.tracker import Tracker
from utmp_fixtures import SRC, Lines, put_slot, rec, replace_utmp, undump, write_utmp

ALICE = rec(7, 1001, "ts/0", "alice", "pts/0", "192.168.1.5", "192.168.1.5",
            "2024-01-01T10:00:00")
BOB = rec(7, 1002, "tty2", "bob", "tty2", "", "0.0.0.0", "2024-01-01T10:05:00")
CAROL = rec(7, 1003, "ts/1", "carol", "pts/1", "laptop.example", "10.0.0.7",
            "2024-01-01T10:10:00")
BOOT = rec(2, 0, "~~", "reboot", "~", "6.1.0-test", "0.0.0.0", "2024-01-01T09:00:00")
GETTY = rec(6, 900, "tty1", "LOGIN", "tty1", "", "0.0.0.0", "2024-01-01T09:00:01")
NO_PROC = ProcView("/nonexistent-proc")  # fake pids must never match a real process here


class Watch:
    """A source watched in the background through a tracker; events waited for one by one."""

    def __init__(self, source: UtmpSource) -> None:
        self.source = source
        self.tracker = Tracker(host="h")
        self.events: asyncio.Queue[SensEvent] = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in tracked_events(self.source, self.tracker):
            self.events.put_nowait(event)

    async def started(self) -> None:
        """Wait until the first read is done (the watch is set before it)."""
        for _ in range(500):
            if self.source.mechanism is not None:  # set just before the first read
                await asyncio.sleep(0)
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the source did not start")

    async def next(self, n: int = 1, timeout: float = 5.0) -> list[SensEvent]:  # noqa: ASYNC109 - a test's hang guard
        """The next ``n`` events."""
        return [await asyncio.wait_for(self.events.get(), timeout) for _ in range(n)]

    async def close(self) -> None:
        await self.source.aclose()
        await asyncio.wait_for(self.task, 5)


@pytest.fixture
async def watch(tmp_path: Path) -> AsyncIterator[Watch]:
    write_utmp(tmp_path / "utmp", [BOOT, GETTY, ALICE])
    w = Watch(UtmpSource(str(tmp_path / "utmp"), host="h", proc=NO_PROC))
    await w.started()
    yield w
    await w.close()


def methods(events: list[SensEvent]) -> list[tuple[str, str | None]]:
    return [(e.method, e.session_id) for e in events]


async def test_snapshot_reports_user_processes_only(tmp_path: Path) -> None:
    path = tmp_path / "utmp"
    dead = rec(8, 1009, "ts/5", "", "pts/5", "", "0.0.0.0", "2024-01-01T10:30:00")
    write_utmp(path, [BOOT, GETTY, ALICE, BOB, dead, CAROL])
    obs = await UtmpSource(str(path), proc=NO_PROC).snapshot()
    assert all(isinstance(o, SessionAppeared) and o.existing for o in obs)
    infos = {o.info.session_id: o.info for o in obs if isinstance(o, SessionAppeared)}
    assert sorted(k or "" for k in infos) == ["pts/0", "pts/1", "tty2"]
    a, b, c = infos["pts/0"], infos["tty2"], infos["pts/1"]
    assert (a.user_name, a.tty, a.remote, a.client_address, a.client_name) == (
        "alice", "pts/0", True, "192.168.1.5", None)
    assert a.since == parse_time("2024-01-01T10:00:00Z") and a.session_type == "tty"
    assert (b.remote, b.client_address, b.tty) == (False, None, "tty2")
    assert (c.client_address, c.client_name) == ("10.0.0.7", "laptop.example")
    assert a.raw["ut_id"] == "ts/0" and a.raw["ut_pid"] == 1001 and a.raw["offset"] == 768


async def test_login_then_logout_written_in_place(watch: Watch, tmp_path: Path) -> None:
    put_slot(tmp_path / "utmp", 3, CAROL)  # a new slot, as pututline appends one
    logon, shell = await watch.next(2)
    assert methods([logon, shell]) == [("Logon", "pts/1"), ("PostShell", "pts/1")]
    assert logon.user_name == "carol" and logon.time == parse_time("2024-01-01T10:10:00Z")
    assert logon.source == "utmp" and logon.remote and logon.client_address == "10.0.0.7"
    put_slot(tmp_path / "utmp", 3, rec(8, 1003, "ts/1", "", "pts/1", "", "0.0.0.0",
                                       "2024-01-01T11:00:00"))
    (logoff,) = await watch.next()
    assert (logoff.method, logoff.session_id, logoff.user_name) == ("Logoff", "pts/1", "carol")
    assert logoff.time == parse_time("2024-01-01T11:00:00Z")
    assert logoff.reason == "logout" and not logoff.synthesized
    assert [s.info.session_id for s in watch.tracker.sessions] == ["pts/0"]  # alice untouched


async def test_a_reused_slot_ends_the_session_left_on_it(watch: Watch, tmp_path: Path) -> None:
    frank = rec(7, 1012, "ts/0", "frank", "pts/0", "10.0.0.9", "10.0.0.9", "2024-01-01T15:45:00")
    put_slot(tmp_path / "utmp", 2, frank)
    off, on, shell = await watch.next(3)
    assert (off.method, off.user_name, off.reason, off.synthesized) == (
        "Logoff", "alice", "superseded", True)
    assert (on.method, on.user_name, on.session_id) == ("Logon", "frank", "pts/0")
    assert shell.method == "PostShell"


async def test_rewriting_the_whole_file_reports_only_what_changed(
        watch: Watch, tmp_path: Path) -> None:
    path = tmp_path / "utmp"
    lines = [BOOT, GETTY, ALICE]
    for i in range(5):  # utmpdump -o truncates, then writes: never a spurious Logoff
        lines.append(rec(7, 2000 + i, f"ts/{i + 10}", f"user{i}", f"pts/{i + 10}", "",
                         "0.0.0.0", f"2024-01-01T12:0{i}:00"))
        write_utmp(path, lines)
        assert methods(await watch.next(2)) == [("Logon", f"pts/{i + 10}"),
                                                ("PostShell", f"pts/{i + 10}")]
    write_utmp(path, [BOOT, GETTY, *lines[3:]])  # alice's slot is gone
    (off,) = await watch.next()
    assert (off.method, off.user_name, off.reason, off.synthesized) == (
        "Logoff", "alice", "gone", True)


async def test_a_file_renamed_over_the_old_one(watch: Watch, tmp_path: Path) -> None:
    dead = rec(8, 1001, "ts/0", "", "pts/0", "", "0.0.0.0", "2024-01-01T10:59:00")
    replace_utmp(tmp_path / "utmp", [BOOT, GETTY, dead, BOB])
    events = await watch.next(3)
    assert methods(events) == [("Logoff", "pts/0"), ("Logon", "tty2"), ("PostShell", "tty2")]
    assert events[0].reason == "logout" and events[0].remote
    replace_utmp(tmp_path / "utmp", [BOOT, GETTY, dead, BOB, CAROL])  # watched after a rename
    assert methods(await watch.next(2)) == [("Logon", "pts/1"), ("PostShell", "pts/1")]


async def test_truncation_ends_every_session(watch: Watch, tmp_path: Path) -> None:
    put_slot(tmp_path / "utmp", 3, BOB)
    await watch.next(2)
    os.truncate(tmp_path / "utmp", 0)
    events = await watch.next(2)
    assert sorted(methods(events)) == [("Logoff", "pts/0"), ("Logoff", "tty2")]
    assert all(e.reason == "gone" and e.synthesized for e in events)
    assert watch.tracker.sessions == []


async def test_deleted_then_created_again(watch: Watch, tmp_path: Path) -> None:
    os.unlink(tmp_path / "utmp")
    (off,) = await watch.next()
    assert (off.method, off.session_id) == ("Logoff", "pts/0")
    write_utmp(tmp_path / "utmp", [BOOT, CAROL])
    assert methods(await watch.next(2)) == [("Logon", "pts/1"), ("PostShell", "pts/1")]


async def test_a_file_that_does_not_exist_yet(tmp_path: Path) -> None:
    w = Watch(open_utmp(str(tmp_path / "utmp"), proc=NO_PROC))
    try:
        await w.started()
        write_utmp(tmp_path / "utmp", [BOOT, ALICE])
        assert methods(await w.next(2)) == [("Logon", "pts/0"), ("PostShell", "pts/0")]
    finally:
        await w.close()


async def test_garbage_and_truncated_records_are_skipped_with_their_offset(
        tmp_path: Path) -> None:
    path = tmp_path / "utmp"
    warnings: list[str] = []
    write_utmp(path, [BOOT, GETTY, ALICE])
    w = Watch(UtmpSource(str(path), proc=NO_PROC, on_warning=warnings.append))
    try:
        await w.started()
        garbage = bytearray(undump([BOB]))
        garbage[0:2] = (77).to_bytes(2, "little")  # ut_type 77 is no record type
        with open(path, "r+b") as f:  # noqa: ASYNC230 - the loop is held on purpose here
            f.seek(3 * 384)
            f.write(bytes(garbage) + undump([CAROL]) + b"\xff" * 100)
        assert methods(await w.next(2)) == [("Logon", "pts/1"), ("PostShell", "pts/1")]
        assert any("offset 1152" in m and "ut_type 77" in m for m in warnings), warnings
        assert any("offset 1920" in m and "truncated record" in m for m in warnings), warnings
        assert [s.info.session_id for s in w.tracker.sessions] == ["pts/0", "pts/1"]
    finally:
        await w.close()


async def test_user_names_with_control_characters_are_kept_as_data(watch: Watch,
                                                                    tmp_path: Path) -> None:
    put_slot(tmp_path / "utmp", 3, rec(7, 1005, "ts/3", "ev\x1b[2Jil", "pts/3"))
    logon, _shell = await watch.next(2)
    assert logon.user_name == "ev\x1b[2Jil"
    assert json.loads(json.dumps(logon.to_json()))["user_name"] == "ev\x1b[2Jil"


async def test_a_shutdown_record_closes_every_session(watch: Watch, tmp_path: Path) -> None:
    put_slot(tmp_path / "utmp", 3, rec(1, 48, "~~", "shutdown", "~", "6.1.0-test", "0.0.0.0",
                                       "2024-01-01T13:00:00"))
    (off,) = await watch.next()
    assert (off.method, off.session_id, off.reason, off.synthesized) == (
        "Logoff", "pts/0", "shutdown", True)


async def test_screen_records_without_a_server_are_one_session_per_window(
        watch: Watch, tmp_path: Path) -> None:
    path = tmp_path / "utmp"
    window = rec(7, 3001, "/4", "dave", "pts/4", "10.0.0.3:pts/0:S.0", "0.0.0.0",
                 "2024-01-01T12:00:00")
    put_slot(path, 3, window)
    logon, _shell = await watch.next(2)
    assert (logon.method, logon.session_id, logon.user_name) == ("Logon", "screen:pts/4", "dave")
    assert logon.client_address == "10.0.0.3" and logon.remote and logon.tty == "pts/4"
    put_slot(path, 3, rec(8, 3001, "/4", "", "pts/4", "10.0.0.3:pts/0:S.0", "0.0.0.0",
                          "2024-01-01T12:00:00"))
    (off,) = await watch.next()
    assert (off.method, off.user_name) == ("SessionDisconnect", "dave")
    put_slot(path, 3, window.replace("10.0.0.3:pts/0:S.0", "10.0.0.8:pts/2:S.0"))
    (on,) = await watch.next()
    assert (on.method, on.client_address) == ("SessionReconnect", "10.0.0.8")
    assert watch.tracker.session("screen:pts/4") is not None
    put_slot(path, 3, rec(7, 3050, "/4", "erin", "pts/4", "", "0.0.0.0", "2024-01-01T13:00:00"))
    ended, logon2, _shell2 = await watch.next(3)
    assert (ended.method, ended.session_id, ended.synthesized) == (
        "Logoff", "screen:pts/4", True)
    assert (logon2.method, logon2.session_id) == ("Logon", "pts/4")


async def test_polling_stands_in_without_inotify(tmp_path: Path) -> None:
    write_utmp(tmp_path / "utmp", [BOOT])
    w = Watch(UtmpSource(str(tmp_path / "utmp"), use_inotify=False, poll_interval=0.05,
                         proc=NO_PROC))
    try:
        await w.started()
        assert w.source.mechanism == "poll"
        put_slot(tmp_path / "utmp", 1, BOB)
        assert methods(await w.next(2)) == [("Logon", "tty2"), ("PostShell", "tty2")]
    finally:
        await w.close()


async def test_a_queue_overflow_rereads_the_file(watch: Watch, tmp_path: Path) -> None:
    # The loop is held here while far more events than the kernel queues (16384) pile up,
    # so the login's own event is dropped: only the overflow's rescan can find it.
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())  # noqa: ASYNC240 - the loop is held on purpose here
    fds = [os.open(tmp_path / name, os.O_WRONLY | os.O_CREAT, 0o600) for name in ("x", "y")]
    try:
        for _i in range(limit // 2 + 100):
            os.write(fds[0], b".")
            os.write(fds[1], b".")
    finally:
        for fd in fds:
            os.close(fd)
    put_slot(tmp_path / "utmp", 3, CAROL)
    assert methods(await watch.next(2)) == [("Logon", "pts/1"), ("PostShell", "pts/1")]


async def test_inotify_wrapper_reports_names_and_masks(tmp_path: Path) -> None:
    got: asyncio.Queue[list[InotifyEvent]] = asyncio.Queue()
    with Inotify() as ino:
        ino.add_watch(tmp_path, Flag.CREATE | Flag.MOVED_TO | Flag.DELETE | Flag.CLOSE_WRITE)
        ino.start(lambda batch: got.put_nowait(list(batch)))
        (tmp_path / "a").write_bytes(b"x")
        os.rename(tmp_path / "a", tmp_path / "b")
        os.unlink(tmp_path / "b")
        seen: list[InotifyEvent] = []
        while len(seen) < 4:
            seen += await asyncio.wait_for(got.get(), 5)
        assert [(e.name, e.mask) for e in seen] == [
            ("a", Flag.CREATE), ("a", Flag.CLOSE_WRITE), ("b", Flag.MOVED_TO),
            ("b", Flag.DELETE)]
    assert ino.closed
    with pytest.raises(OSError, match="No such file"):
        Inotify().add_watch(tmp_path / "missing", Flag.CREATE)


async def test_probe_and_registry(tmp_path: Path) -> None:
    assert "does not exist" in str(await probe(path=str(tmp_path / "utmp")))
    write_utmp(tmp_path / "utmp", [BOOT])
    assert await probe(path=str(tmp_path / "utmp")) is None
    src = open_source("utmp", path=str(tmp_path / "utmp"))
    assert isinstance(src, UtmpSource) and src.name == "utmp"


def test_sens_sessions_reads_a_utmp_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    path = tmp_path / "utmp"
    write_utmp(path, [BOOT, GETTY, ALICE, CAROL])
    assert main(["sessions", "--utmp", str(path), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["session_id"], r["user_name"], r["state"]) for r in rows] == [
        ("pts/0", "alice", "active"), ("pts/1", "carol", "active")]
    with open(path, "ab") as f:
        f.write(b"\x01" * 50)
    assert main(["sessions", "--source", "utmp", "--utmp", str(path)]) == 1
    cap = capsys.readouterr()
    assert "alice" in cap.out and "carol" in cap.out and "2 session(s)" in cap.out
    assert "offset 1536" in cap.err and "1 record(s) skipped" in cap.err
    assert "Traceback" not in cap.err
    assert main(["sessions", "--source", "logind", "--utmp", str(path)]) == 2


def test_sens_watch_prints_utmp_events(tmp_path: Path) -> None:
    path = tmp_path / "utmp"
    write_utmp(path, [BOOT, ALICE])
    env = dict(os.environ, PYTHONPATH=SRC, PYTHONUNBUFFERED="1")
    p = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pysens.cli import main; "
         "sys.exit(main(sys.argv[1:]))", "-v", "watch", "--utmp", str(path), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = Lines(p.stdout), Lines(p.stderr)
    try:
        err.expect(lambda line: f"watching {path} (inotify)" in line)
        put_slot(path, 2, BOB)
        event = json.loads(out.expect(lambda line: line.startswith("{")))
        assert (event["method"], event["session_id"], event["user_name"]) == (
            "Logon", "tty2", "bob")
    finally:
        p.terminate()
        p.wait(timeout=10)
        out.close()
        err.close()


class OneScreen(ProcView):
    """Windows 5001 and 5002 belong to SCREEN server 5000 (the pure diff's only I/O seam)."""

    def screen_of(self, pid: int) -> tuple[int, str] | None:
        return (5000, "5000.work") if pid in (5001, 5002) else None

    def user_of(self, pid: int) -> str | None:
        return "dave" if pid in (5001, 5002) else None


def records(*lines: str) -> list[UtmpRecord]:
    return list(iter_records(undump(list(lines)), lambda off, why: None))


def screen_window(n: int, kind: int, tty: str = "pts/0") -> str:
    user = "dave" if kind == 7 else ""
    return rec(kind, 5001 + n, f"/{n + 4}", user, f"pts/{n + 4}", f"10.0.0.3:{tty}:S.{n}",
               "0.0.0.0", "2024-01-01T12:00:00")


def feed(tracker: Tracker, obs: list[Observation]) -> list[tuple[str, str | None]]:
    return methods(tracker.feed_all(obs))


def test_screen_windows_make_one_session_and_a_bounce_between_reads_is_seen() -> None:
    now = parse_time("2024-01-01T12:30:00Z")
    state, t = UtmpState(proc=OneScreen()), Tracker(host="h")
    assert feed(t, state.load(records(BOOT), now)) == []
    assert feed(t, state.update(records(BOOT, screen_window(0, 7)), now)) == [
        ("Logon", "screen:5000"), ("PostShell", "screen:5000")]
    both = records(BOOT, screen_window(0, 7), screen_window(1, 7))
    assert feed(t, state.update(both, now)) == []  # a second window: same session
    one_closed = records(BOOT, screen_window(0, 7), screen_window(1, 8))
    assert feed(t, state.update(one_closed, now)) == []  # one window closed, one attached
    # Detached and attached again from another tty between two reads: ut_host moved.
    moved = records(BOOT, screen_window(0, 7, "pts/9"), screen_window(1, 8))
    assert feed(t, state.update(moved, now)) == [
        ("SessionDisconnect", "screen:5000"), ("SessionReconnect", "screen:5000")]
    detached = records(BOOT, screen_window(0, 8, "pts/9"), screen_window(1, 8))
    assert feed(t, state.update(detached, now)) == [] and state.pending == ["screen:5000"]
    assert feed(t, state.update(moved, now)) == [  # back before the grace ran out
        ("SessionDisconnect", "screen:5000"), ("SessionReconnect", "screen:5000")]
    assert state.detached("screen:5000", now) == []  # the late timer says nothing
    assert feed(t, state.update(detached, now)) == []
    assert feed(t, state.detached("screen:5000", now)) == [("SessionDisconnect", "screen:5000")]
    assert feed(t, state.ended("screen:5000", now)) == [("Logoff", "screen:5000")]
    assert feed(t, state.update(moved, now)) == []  # stale windows of a screen that is gone


def test_a_screen_that_quits_while_attached_is_one_logoff() -> None:
    now = parse_time("2024-01-01T12:30:00Z")
    state, t = UtmpState(proc=OneScreen()), Tracker(host="h")
    feed(t, state.load(records(BOOT, screen_window(0, 7)), now))
    assert [s.state for s in t.sessions] == ["active"]
    assert feed(t, state.update(records(BOOT, screen_window(0, 8)), now)) == []
    assert feed(t, state.ended("screen:5000", now)) == [("Logoff", "screen:5000")]


def test_a_screen_found_detached_is_adopted_disconnected() -> None:
    now = parse_time("2024-01-01T12:30:00Z")
    state, t = UtmpState(proc=OneScreen()), Tracker(host="h")
    assert feed(t, state.load(records(BOOT, screen_window(0, 8)), now)) == []
    (s,) = t.sessions
    assert (s.state, s.info.user_name, s.info.session_name) == ("disconnected", "dave",
                                                                  "5000.work")
    assert feed(t, state.update(records(BOOT, screen_window(0, 7)), now)) == [
        ("SessionReconnect", "screen:5000")]


def test_sens_watch_names_a_missing_directory(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["watch", "--utmp", str(tmp_path / "nope" / "utmp")]) == 1
    assert "the directory" in capsys.readouterr().err
