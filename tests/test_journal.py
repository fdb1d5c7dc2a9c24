"""The journal: idempotent append, seq, queries, cursors, migrations, group commit."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pysens.events import SensEvent
from pysens.journal import MIGRATIONS, AppendResult, Journal, JournalError, JournalWriter

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ev(i: int, method: str = "Logon", user: str = "alice") -> SensEvent:
    return SensEvent(method=method, user_name=user, session_id=str(i),
                     time=T0 + timedelta(minutes=i), observed=T0, host="h", source="test")


def test_append_assigns_seq_and_is_idempotent(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as j:
        first = j.append(ev(1))
        assert first.inserted and first.event.seq == 1
        again = j.append(ev(1))
        assert not again.inserted and again.event.seq == 1
        results = j.append_many([ev(2), ev(1), ev(3)])
        assert [(r.event.seq, r.inserted) for r in results] == [(2, True), (1, False), (3, True)]
        assert j.count() == 3 and j.last_seq() == 3
        stored = j.get(ev(2).id)
        assert stored is not None and stored.seq == 2
        assert stored.evolve(seq=None) == ev(2)


def test_events_survive_reopen_exactly(tmp_path: Path) -> None:
    e = SensEvent(method="SessionReconnect", user_name="bob", domain="CORP", session_id="3",
                  time=T0, host="h", remote=True, client_address="10.0.0.1",
                  raw={"EventID": 4778, "nested": {"a": [1, 2]}})
    with Journal(tmp_path / "j.db") as j:
        j.append(e)
    with Journal(tmp_path / "j.db") as j:
        (back,) = list(j.query())
    assert back.seq == 1 and back.evolve(seq=None) == e


def test_query_by_time_seq_predicate_and_limit(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as j:
        j.append_many([ev(i, user="alice" if i % 2 else "bob") for i in range(1, 11)])
        window = list(j.query(since=T0 + timedelta(minutes=3), until=T0 + timedelta(minutes=6)))
        assert [e.session_id for e in window] == ["3", "4", "5"]
        after = list(j.query(after_seq=8))
        assert [e.seq for e in after] == [9, 10]
        bobs = list(j.query(where=lambda e: e.user_name == "bob", limit=2))
        assert [e.session_id for e in bobs] == ["2", "4"]
        # small batches still stream everything, in order
        assert [e.seq for e in j.query(batch=3)] == list(range(1, 11))


def test_cursors(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as j:
        assert j.cursor("sink:a") == 0
        j.set_cursor("sink:a", 5)
        j.set_cursor("sink:a", 7)
        assert j.cursor("sink:a") == 7
        j.delete_cursor("sink:a")
        assert j.cursor("sink:a") == 0


def test_schema_version_and_migrations(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with Journal(path) as j:
        assert j.version == len(MIGRATIONS)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=999")
    with pytest.raises(JournalError, match="newer than this pysens knows"):
        Journal(path)


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalError, match=str(path)):
        Journal(path)


def test_wal_mode(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as j:
        assert j._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_group_commit_batches_concurrent_appends(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    calls: list[int] = []
    original = j.append_many

    def counting(events: Sequence[SensEvent], *, history: bool = False) -> list[AppendResult]:
        calls.append(len(events))
        return original(events, history=history)

    j.append_many = counting  # type: ignore[method-assign]
    w = JournalWriter(j)
    results = await asyncio.gather(*(w.append(ev(i)) for i in range(200)))
    assert sorted(r.event.seq for r in results) == list(range(1, 201))  # type: ignore[type-var]
    assert all(r.inserted for r in results)
    assert sum(calls) == 200 and len(calls) < 10, calls  # a burst is a few commits, not 200
    again = await w.append_many([ev(3), ev(500)])
    assert [r.inserted for r in again] == [False, True]
    j.close()


def test_a_damaged_page_is_one_line_naming_the_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pysens.cli import main

    path = tmp_path / "j.db"
    t0 = datetime(2026, 11, 23, tzinfo=UTC)
    with Journal(path) as j:
        j.append_many([SensEvent("Logon", user_name=f"u{i}", session_id=str(i), host="h",
                                 time=t0 + timedelta(seconds=i), raw={"pad": "x" * 300})
                       for i in range(2000)])
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert path.stat().st_size > 80 * 4096
    with path.open("r+b") as f:  # opening still works: the damage is deep in the file
        f.seek(60 * 4096)
        f.write(bytes(range(256)) * 48)
    assert main(["--journal", str(path), "history"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"sens: cannot read the journal {path}: database disk image is "
                          "malformed")
    with Journal(path) as j, pytest.raises(JournalError, match=r"sqlite3 .* \.recover"):
        list(j.query())


@pytest.mark.parametrize("live", [False, True], ids=["at rest", "with a live writer"])
def test_someone_who_may_only_read_the_journal_can_read_it(tmp_path: Path, live: bool) -> None:
    # Before: "attempt to write a readonly database" for anyone but the journal's owner, even
    # with the file world-readable (a WAL journal is opened for writing by default).
    import os
    import shutil
    import subprocess
    import tempfile

    if os.geteuid() != 0:
        pytest.fail("this test switches to uid 65534 and needs root (CI has it)")
    shared = Path(tempfile.mkdtemp(prefix="pysens-ro-", dir="/tmp"))
    try:
        shared.chmod(0o755)
        shutil.copytree(Path(__file__).parents[1] / "src" / "pysens", shared / "pysens")
        for p in shared.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        path = shared / "journal.db"
        t0 = datetime(2026, 11, 23, tzinfo=UTC)
        writer = Journal(path)
        writer.append(SensEvent("Logon", user_name="alice", session_id="1", host="h", time=t0))
        if not live:
            writer.close()  # checkpointed: no -wal, no -shm left
        else:  # the daemon holds it open, with an event only in the -wal file
            writer.append(SensEvent("Logoff", user_name="alice", session_id="1", host="h",
                                    time=t0 + timedelta(minutes=5)))
            assert Path(f"{path}-wal").stat().st_size > 0
        path.chmod(0o644)

        def sens(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["/usr/bin/python3", "-m", "pysens.cli", "--journal", str(path), *argv],
                capture_output=True, text=True, timeout=60, cwd="/",
                env={"PYTHONPATH": str(shared), "PATH": "/usr/bin:/bin", "HOME": "/"},
                preexec_fn=_become_nobody,
            )

        shown = sens("history")
        assert shown.returncode == 0, shown.stderr
        assert [line.split()[2] for line in shown.stdout.splitlines()] == (
            ["Logon", "Logoff"] if live else ["Logon"])
        assert sens("timeline", "--json").returncode == 0
        refused = sens("publish", "Logon", "--user", "mallory")
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        if live:
            writer.close()
        with Journal(path) as j:
            assert j.count() == (2 if live else 1)  # nothing written by the reader
    finally:
        shutil.rmtree(shared)


def _become_nobody() -> None:
    os.setgid(65534)
    os.setuid(65534)
