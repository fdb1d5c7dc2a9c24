"""``sens import`` as a user runs it: journal contents, idempotence, bad input, exit codes."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from conftest import SHARED_DATA
from pysens.cli import main
from pysens.events import SensEvent
from pysens.journal import Journal
from wtmp_fixtures import parse_last, session_rows

WTMP = SHARED_DATA / "wtmp"
WITH_HOST = WTMP / "utmp-rs__with_host_32.utmp"  # 19 records, 8 sessions


def journal_events(path: Path) -> list[SensEvent]:
    with Journal(path) as j:
        return list(j.query())


def history_seqs(path: Path) -> set[int]:
    with closing(sqlite3.connect(path)) as db:
        return {row[0] for row in db.execute("SELECT seq FROM history")}


def test_import_then_reimport_adds_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "j.db"
    assert main(["--journal", str(journal), "import", "wtmp", str(WITH_HOST)]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == "sens: imported 22 events from 1 file (0 already journaled, 22 new)"
    events = journal_events(journal)
    assert len(events) == 22
    oracle = parse_last((WTMP / "utmp-rs__with_host_32.utmp.last-wx-iso.txt").read_text())
    assert session_rows(events) == oracle

    assert main(["--journal", str(journal), "import", "wtmp", str(WITH_HOST)]) == 0
    _, err = capsys.readouterr()
    assert "(22 already journaled, 0 new)" in err
    assert [e.id for e in journal_events(journal)] == [e.id for e in events]


def test_json_prints_the_journaled_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "j.db"
    code = main(["--journal", str(journal), "import", "wtmp", "--json",
                 str(WTMP / "linux-utmpx__alice_login_logout.dump")])
    assert code == 0
    out, _ = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["seq"], r["method"], r["user_name"]) for r in rows] == [
        (1, "Logon", "alice"), (2, "PostShell", "alice"), (3, "Logoff", "alice")]
    assert rows[0]["time"] == "2021-03-23T06:49:58.716235Z"
    assert rows[2]["time"] == "2021-03-24T06:49:58.716235Z"


def test_bad_records_are_reported_rest_imported_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "j.db"
    code = main(["--journal", str(journal), "import", "wtmp",
                 str(WTMP / "plaso__utmp_corrupted"), str(WTMP / "plaso__wtmp.1")])
    assert code == 1
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    # Oldest file first: wtmp.1 is from 2011.
    assert "plaso__wtmp.1: offset 1536: the last record is cut short" in lines[0]
    assert "plaso__utmp_corrupted: record at offset 384: ut_type 99" in lines[1]
    assert lines[-1] == ("sens: imported 6 events from 2 files (0 already journaled, 6 new); "
                         "4 bad records skipped")
    assert "Traceback" not in err
    users = sorted({e.user_name or "" for e in journal_events(journal)})
    assert users == ["alice", "bob", "userA"]


def test_unreadable_files_do_not_stop_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\xff" * 2000)
    journal = tmp_path / "j.db"
    code = main(["--journal", str(journal), "import", "wtmp", str(junk),
                 str(tmp_path / "absent"), str(WTMP / "linux-utmpx__alice_login_logout.dump")])
    assert code == 1
    _, err = capsys.readouterr()
    assert f"sens: {junk} is not a utmp/wtmp file" in err
    assert f"cannot read {tmp_path / 'absent'}" in err
    assert err.strip().splitlines()[-1] == (
        "sens: imported 3 events from 1 file (0 already journaled, 3 new); 2 files were not read")
    assert len(journal_events(journal)) == 3


def test_wtmpdb_with_another_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "wtmp.db"
    with closing(sqlite3.connect(db)) as c:
        c.execute("CREATE TABLE wtmp(id INTEGER, who TEXT)")
    assert main(["--journal", str(tmp_path / "j.db"), "import", "wtmpdb", str(db)]) == 1
    _, err = capsys.readouterr()
    assert "is not a wtmpdb database: its table 'wtmp' has columns id, who" in err
    assert "1 file was not read" in err


def test_host_option_and_history_marking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "j.db"
    src = str(WTMP / "linux-utmpx__alice_login_logout.dump")
    assert main(["--journal", str(journal), "import", "wtmp", "--host", "web01", src]) == 0
    events = journal_events(journal)
    assert {e.host for e in events} == {"web01"}
    # Not delivered to persistent subscriptions: every imported seq is marked history.
    assert history_seqs(journal) == {1, 2, 3}
    assert main(["--journal", str(journal), "import", "wtmp", "--host", "web02", "--deliver",
                 src]) == 0
    assert len(journal_events(journal)) == 6  # another host: other ids
    assert history_seqs(journal) == {1, 2, 3}
    capsys.readouterr()


def test_jsonl_round_trip_keeps_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = tmp_path / "a.db"
    assert main(["--journal", str(first), "import", "wtmp", "--json",
                 str(WTMP / "artemis__ubuntu18.04_wtmp")]) == 0
    out, _ = capsys.readouterr()
    dump = tmp_path / "events.jsonl"
    dump.write_text(out + "not json at all\n")
    second = tmp_path / "b.db"
    assert main(["--journal", str(second), "import", "jsonl", str(dump)]) == 1
    _, err = capsys.readouterr()
    assert f"{dump}:12: " in err and "line skipped" in err
    assert [e.id for e in journal_events(second)] == [e.id for e in journal_events(first)]


def test_bad_usage_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", "lastlog", str(tmp_path)]) == 2
    assert main(["import", "wtmp"]) == 2
    _, err = capsys.readouterr()
    assert "invalid choice: 'lastlog'" in err


def test_verbose_reports_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pysens.cli import importcmd

    monkeypatch.setattr(importcmd, "_VERBOSE_EVERY", 10)
    src = str(WITH_HOST)
    assert main(["--journal", str(tmp_path / "j.db"), "import", "wtmp", src]) == 0
    _, quiet = capsys.readouterr()
    assert "records" not in quiet  # stderr is not a terminal and no -v: summary only
    assert main(["--journal", str(tmp_path / "j.db"), "-v", "import", "wtmp", src]) == 0
    _, err = capsys.readouterr()
    assert f"sens import: {src}: 10 records (" in err  # with how far through the file


def test_a_long_import_on_a_terminal_draws_a_bar(tmp_path: Path) -> None:
    import os
    import pty
    import subprocess
    import sys
    from datetime import UTC, datetime, timedelta

    from wtmp_fixtures import utmpdump_line, write_wtmp

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    lines = []
    for i in range(15_000):  # 30,000 records, ~11.5 MB: several reading chunks
        t = t0 + timedelta(seconds=10 * i)
        tty = f"pts/{i % 30}"
        lines.append(utmpdump_line(7, f"u{i % 7}", tty, t, pid=1000 + i, id=tty[-4:],
                                   host="10.0.0.9", addr="10.0.0.9"))
        lines.append(utmpdump_line(8, "", tty, t + timedelta(seconds=5), pid=1000 + i,
                                   id=tty[-4:]))
    wtmp = write_wtmp(tmp_path / "wtmp", lines)
    leader, follower = pty.openpty()  # stderr a real terminal, as for a person at one
    proc = subprocess.Popen(
        [sys.executable, "-m", "pysens.cli", "--journal", str(tmp_path / "j.db"), "import",
         "wtmp", str(wtmp)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=follower)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(60) == 0
    text = out.decode()
    frames = [f for f in text.split("\r") if "sens import:" in f]
    assert frames, text
    first = frames[0].split(f"{wtmp}: ", 1)[1]
    assert first.startswith("[") and "%" in first and "10,000 records" in first
    bar = first[1:first.index("]")]
    assert set(bar) <= {"#", "."} and 0 < bar.count("#") < len(bar)
    assert text.rstrip().endswith("sens: imported 45000 events from 1 file (0 already "
                                  "journaled, 45000 new)")


def test_jsonl_from_standard_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    event = SensEvent(method="Logon", user_name="alice", session_id="3", host="pc1",
                      source="api")
    monkeypatch.setattr("sys.stdin", io.StringIO(event.to_json_text() + "\n"))
    assert main(["--journal", str(tmp_path / "j.db"), "import", "jsonl", "-"]) == 0
    assert [e.id for e in journal_events(tmp_path / "j.db")] == [event.id]
    capsys.readouterr()


def test_evtx_files_are_read_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    security = SHARED_DATA / "evtx" / "omerbenamram__security.evtx"
    not_evtx = tmp_path / "notes.evtx"
    not_evtx.write_text("plain text, not an event log\n" * 200)
    journal = tmp_path / "j.db"
    args = ["--journal", str(journal), "import", "evtx", str(security), str(not_evtx),
            str(tmp_path / "gone.evtx")]
    assert main(args) == 1
    _, err = capsys.readouterr()
    assert f"{not_evtx} is not an .evtx file" in err
    assert f"cannot read {tmp_path / 'gone.evtx'}" in err
    assert "from 1 file (0 already journaled, " in err and "2 files were not read" in err
    count = len(journal_events(journal))
    assert count > 0
    assert main(["--journal", str(journal), "import", "evtx", str(security)]) == 0
    _, err = capsys.readouterr()
    assert f"({count} already journaled, 0 new)" in err
