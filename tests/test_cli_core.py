"""The core commands, called as a user would: publish, history, watch (replay), exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pysens.cli import main
from pysens.events import SensEvent


def lines(text: str) -> list[str]:
    return [x for x in text.splitlines() if x.strip()]


def write_jsonl(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def event_line(method: str, user: str, sid: str, minute: int, **kw: object) -> str:
    e = SensEvent(method=method, user_name=user, session_id=sid, host="web01", source="logind",
                  time=f"2026-11-23T10:{minute:02d}:00Z", **kw)  # type: ignore[arg-type]
    return json.dumps(e.to_json())


def test_publish_then_history_round_trip(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["publish", "SessionReconnect", "--user", "CORP\\alice", "--session", "3",
                 "--client-address", "10.0.0.7", "--time", "2026-11-23T10:00:00Z"]) == 0
    assert main(["history", "--json"]) == 0
    (obj,) = [json.loads(x) for x in lines(capsys.readouterr().out)]
    assert obj["method"] == "SessionReconnect" and obj["classes"] == ["ISensLogon2"]
    assert obj["user_name"] == "alice" and obj["domain"] == "CORP" and obj["session_id"] == "3"
    assert obj["client_address"] == "10.0.0.7" and obj["remote"] is True and obj["seq"] == 1
    assert obj["time"] == "2026-11-23T10:00:00.000000Z"


def test_publishing_the_same_ids_again_adds_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = write_jsonl(tmp_path / "e.jsonl", [event_line("Logon", "a", "1", 0),
                                           event_line("Logoff", "a", "1", 5)])
    assert main(["publish", "--json", str(f)]) == 0
    assert main(["publish", "--json", str(f)]) == 0
    assert "0 event(s); 2 already journaled" in capsys.readouterr().err
    assert main(["history"]) == 0
    assert len(lines(capsys.readouterr().out)) == 2


def test_history_filter_and_time_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [event_line("Logon", "alice", "1", 0), event_line("Logon", "bob", "2", 10),
            event_line("SessionDisconnect", "alice", "1", 20),
            event_line("Logoff", "ALICE", "1", 30)]
    main(["publish", "--json", str(write_jsonl(tmp_path / "e.jsonl", rows))])
    capsys.readouterr()
    assert main(["history", "--json", "--filter", "bstrUserName = 'alice'"]) == 0
    got = [json.loads(x)["method"] for x in lines(capsys.readouterr().out)]
    assert got == ["Logon", "SessionDisconnect", "Logoff"]  # user names: case-insensitive
    assert main(["history", "--json", "--since", "2026-11-23T10:05:00Z",
                 "--until", "2026-11-23T10:25:00Z"]) == 0
    got = [json.loads(x)["method"] for x in lines(capsys.readouterr().out)]
    assert got == ["Logon", "SessionDisconnect"]


def test_bad_filter_is_exit_2_with_the_position(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "--filter", "bstrUserName = "]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sens: bad filter") and "position" in err
    assert len(lines(err)) == 1


def test_unknown_method_lists_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["publish", "Reconnect", "--user", "x"]) == 2
    err = capsys.readouterr().err
    assert "SessionReconnect" in err and "Traceback" not in err


def test_watch_replays_a_file_through_the_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [event_line("Logon", "alice", "1", 0), event_line("SessionDisconnect", "alice", "1", 1),
            event_line("SessionDisconnect", "alice", "1", 2),  # a duplicate: collapsed
            event_line("SessionReconnect", "alice", "1", 3), event_line("Logoff", "alice", "1", 4)]
    f = write_jsonl(tmp_path / "e.jsonl", rows)
    assert main(["watch", "--source", str(f), "--json"]) == 0
    got = [json.loads(x) for x in lines(capsys.readouterr().out)]
    assert [g["method"] for g in got] == ["Logon", "SessionDisconnect", "SessionReconnect",
                                          "Logoff"]
    assert got[0]["id"] == json.loads(rows[0])["id"]  # replayed events keep their ids


def test_watch_filter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [event_line("Logon", "alice", "1", 0), event_line("Logon", "bob", "2", 1)]
    f = write_jsonl(tmp_path / "e.jsonl", rows)
    assert main(["watch", "--source", str(f), "--filter", "bstrUserName = 'bob'"]) == 0
    out = lines(capsys.readouterr().out)
    assert len(out) == 1 and "bob" in out[0] and "Logon" in out[0]


def test_malformed_lines_are_named_skipped_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [event_line("Logon", "alice", "1", 0), "{not json", json.dumps({"method": "Nope"}),
            event_line("Logoff", "alice", "1", 4)]
    f = write_jsonl(tmp_path / "e.jsonl", rows)
    assert main(["watch", "--source", str(f), "--json"]) == 1
    captured = capsys.readouterr()
    assert [json.loads(x)["method"] for x in lines(captured.out)] == ["Logon", "Logoff"]
    err = lines(captured.err)
    assert any(f"{f}:2" in x for x in err) and any(f"{f}:3" in x for x in err)
    assert err[-1] == "sens: 2 line(s) skipped as malformed"
    assert "Traceback" not in captured.err
    assert main(["publish", "--json", str(f)]) == 1
    assert "2 line(s) skipped" in capsys.readouterr().err


def test_watch_replay_from_stdin_via_the_real_command(tmp_path: Path) -> None:
    rows = [event_line("Logon", "alice", "1", 0)]
    proc = subprocess.run(
        [sys.executable, "-m", "pysens.cli", "watch", "--source", "-", "--json"],
        input="\n".join(rows) + "\n", capture_output=True, text=True, timeout=60,
        env={"SENS_JOURNAL": str(tmp_path / "j.db"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["user_name"] == "alice"


def test_control_characters_are_printed_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = write_jsonl(tmp_path / "e.jsonl", [event_line("Logon", "ev\x1b[31mil\n", "1", 0)])
    assert main(["watch", "--source", str(f)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b" in out and out.count("\n") == 1


def test_help_explains(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for word in ("watch", "sessions", "publish", "history"):
        assert word in out
    assert main(["nonsense"]) == 2


def test_history_host_filter_on_the_local_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [event_line("Logon", "alice", "1", 0),
            json.dumps(SensEvent(method="Logon", user_name="bob", session_id="2", host="DB01",
                                 time="2026-11-23T10:01:00Z").to_json())]  # type: ignore[arg-type]
    main(["publish", "--json", str(write_jsonl(tmp_path / "e.jsonl", rows))])
    capsys.readouterr()
    assert main(["history", "--json", "--host", "db01"]) == 0
    assert [json.loads(x)["user_name"] for x in lines(capsys.readouterr().out)] == ["bob"]
    assert main(["history", "--json", "--host", "web01", "--filter", "bstrUserName = 'bob'"]) == 0
    assert lines(capsys.readouterr().out) == []
