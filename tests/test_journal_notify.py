"""The daemon learns of other processes' commits to the journal by inotify, never by a timer.

Another process journals events (``sens import --deliver``) or changes the subscriptions (a
``sens subscriptions add`` whose reload never reaches the daemon): the journal watch wakes the
delivery manager, which a timer set to an hour could not have done within the test. An idle
daemon does not wake at all: its threads make no context switch while nothing happens.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pysens.delivery import DeliveryManager, DeliveryPolicy
from pysens.inotify import Flag, InotifyEvent
from pysens.journal import Journal, SubscriptionStore
from pysens.journal.notify import JournalWatch
from service_fixtures import (
    daemon,
    events,
    read_jsonl,
    request,
    sens_argv,
    wait_cursor,
    write_events,
)

FAST = DeliveryPolicy(max_failures=3, retry_initial=0.01, retry_max=0.04, timeout=10)
HOUR = 3600.0  # the manager's fallback timer: never reached in these tests


def append_elsewhere(journal: Path, n: int, start: int = 0) -> None:
    """``n`` events journaled by another process (its own connection and its own commit)."""
    code = ("import sys; from pysens.journal import Journal; "
            "sys.path.insert(0, sys.argv[2]); from service_fixtures import events; "
            "j = Journal(sys.argv[1]); j.append_many(events(int(sys.argv[3]), "
            "start=int(sys.argv[4]))); j.close()")
    subprocess.run([sys.executable, "-c", code, str(journal), str(Path(__file__).parent),
                    str(n), str(start)], check=True, timeout=60)


async def until(check: Callable[[], bool], timeout: float = 30) -> None:  # noqa: ASYNC109 - a test's hang guard
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 - the state is another process's file
            await asyncio.sleep(0.02)


async def test_the_watch_sees_another_process_commit(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    seen = asyncio.Event()
    with Journal(path):
        watch = JournalWatch(path, seen.set)
        assert watch.start() and watch.active
        try:
            (tmp_path / "sink.jsonl").write_text("not the journal\n")
            await asyncio.to_thread(append_elsewhere, path, 3)
            async with asyncio.timeout(30):
                await seen.wait()
        finally:
            watch.close()
    assert not watch.active


def test_only_the_journal_files_count() -> None:
    calls: list[None] = []
    watch = JournalWatch("/var/lib/pysens/journal.db", lambda: calls.append(None))
    watch._files = {5: watch.wal}
    watch._events([InotifyEvent(1, Flag.CREATE, 0, "sink.jsonl"),
                   InotifyEvent(1, Flag.MOVED_TO, 0, "journal.db-shm")])
    assert calls == []
    watch._events([InotifyEvent(5, Flag.MODIFY, 0, ""), InotifyEvent(5, Flag.MODIFY, 0, "")])
    assert len(calls) == 1  # one batch read, one call
    watch._events([InotifyEvent(-1, Flag.Q_OVERFLOW, 0, "")])
    assert len(calls) == 2
    watch._events([InotifyEvent(5, Flag.IGNORED, 0, "")])  # the -wal was deleted
    assert watch._files == {}


def test_a_journal_in_memory_is_not_watched() -> None:
    assert JournalWatch(":memory:", lambda: None).start() is False


async def test_the_manager_delivers_another_process_events_and_subscriptions(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    with Journal(path) as j:
        store = SubscriptionStore(j)
        sub = store.add("first", event_class="ISensLogon2", sink="jsonl",
                        settings={"path": str(first)})
        manager = DeliveryManager(j, store, FAST, poll=HOUR)
        task = asyncio.create_task(manager.run())
        try:
            await until(lambda: bool(manager.workers) and manager.watching)
            await asyncio.to_thread(append_elsewhere, path, 5)
            await until(lambda: j.cursor(sub.cursor) == 5)
            assert len(read_jsonl(first)[0]) == 5
            # A subscription added by another process, no reload sent: it starts all the same.
            add = sens_argv("--journal", str(path), "subscriptions", "add", "second",
                            "--class", "ISensLogon2", "--jsonl", str(second))
            await asyncio.to_thread(subprocess.run, add, check=True, timeout=60,
                                    capture_output=True)
            await until(lambda: len(manager.workers) == 2)
            await asyncio.to_thread(append_elsewhere, path, 2, 5)
            later = SubscriptionStore(j).get("second")
            await until(lambda: j.cursor(later.cursor) == 7 and j.cursor(sub.cursor) == 7)
            assert [r["session_id"] for r in read_jsonl(second)[0]] == ["5", "6"]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await manager.aclose()
            store.close()


def _switches(pid: int) -> int:
    """Context switches of all the process's threads so far."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        for line in status.read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def test_an_idle_daemon_does_not_wake_and_still_hears_other_processes(tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"
    with daemon(tmp_path) as proc:
        # Added behind the daemon's back (no reload request): the journal watch notices it.
        with Journal() as j:
            store = SubscriptionStore(j)
            store.add("audit", event_class="ISensLogon2", sink="jsonl",
                      settings={"path": str(out)})
            store.close()
        end = time.monotonic() + 30
        while request(os.environ["SENS_SOCKET"], {"op": "hello"})["subscriptions"] != 1:
            assert time.monotonic() < end, "the daemon did not notice the new subscription"
            time.sleep(0.05)
        time.sleep(1.0)  # let the start and that change settle
        before = _switches(proc.pid)
        time.sleep(3.0)
        assert _switches(proc.pid) == before, "the idle daemon woke up"
        # `sens import --deliver` journals in its own process: delivered without a timer.
        feed = write_events(tmp_path / "feed.jsonl", events(4))
        done = subprocess.run(sens_argv("import", "jsonl", "--deliver", str(feed)),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        wait_cursor(["audit"], 4)
    assert [r["id"] for r in read_jsonl(out)[0]] == [e.id for e in events(4)]
