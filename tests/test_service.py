"""`sens serve` as a real process: socket, publish through it, watch, sessions, config errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from pysens.cli import main
from pysens.journal import Journal
from service_fixtures import (
    daemon,
    events,
    read_jsonl,
    request,
    sens_argv,
    wait_cursor,
    write_events,
)


def sock() -> Path:
    return Path(os.environ["SENS_SOCKET"])


def test_publish_through_the_daemon_is_journaled_then_delivered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sink.jsonl"
    assert main(["subscriptions", "add", "audit", "--class", "ISensLogon2", "--jsonl",
                 str(out)]) == 0
    evs = events(25)
    with daemon(tmp_path):
        hello = request(sock(), {"op": "hello"})
        assert hello["ok"] and hello["journal"] == os.environ["SENS_JOURNAL"]
        assert hello["subscriptions"] == 1
        assert main(["publish", "--json", str(write_events(tmp_path / "e.jsonl", evs))]) == 0
        assert "published 25 event(s); 0 already journaled" in capsys.readouterr().err
        assert main(["publish", "--json", str(tmp_path / "e.jsonl")]) == 0
        assert "published 0 event(s); 25 already journaled" in capsys.readouterr().err
        wait_cursor(["audit"], 25)
    with Journal() as j:
        assert [e.id for e in j.query()] == [e.id for e in evs]
    assert [r["id"] for r in read_jsonl(out)[0]] == [e.id for e in evs]


def test_subscription_added_while_the_daemon_runs_takes_effect(tmp_path: Path) -> None:
    out = tmp_path / "late.jsonl"
    with daemon(tmp_path):
        assert main(["subscriptions", "add", "late", "--class", "ISensLogon", "--method",
                     "Logoff", "--jsonl", str(out)]) == 0
        assert request(sock(), {"op": "hello"})["subscriptions"] == 1
        reply = request(sock(), {"op": "publish", "events": [e.to_json() for e in events(10)]})
        assert reply == {"ok": True, "published": 10, "already": 0, "errors": []}
        wait_cursor(["late"], 10)
    (row,), _ = read_jsonl(out)
    assert row["method"] == "Logoff" and row["seq"] == 10


def test_watch_and_sessions_use_the_daemon(tmp_path: Path) -> None:
    with daemon(tmp_path):
        watcher = subprocess.Popen(sens_argv("watch", "--json"), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        try:
            assert "through the daemon" in (watcher.stderr.readline() if watcher.stderr else "")
            # The watcher is registered once the daemon has answered it: publish until seen.
            lines: list[str] = []
            reader = threading.Thread(target=lambda: lines.append(
                watcher.stdout.readline() if watcher.stdout else ""), daemon=True)
            reader.start()
            n = 0
            while reader.is_alive() and n < 200:
                ev = events(1, user="carol", start=n)[0]
                request(sock(), {"op": "publish", "events": [ev.to_json()]})
                reader.join(0.1)
                n += 1
            assert lines and json.loads(lines[0])["user_name"] == "carol"
        finally:
            watcher.terminate()
            watcher.wait()
            for f in (watcher.stdout, watcher.stderr):
                if f:
                    f.close()
        sessions = request(sock(), {"op": "sessions"})["sessions"]
        assert {s["user_name"] for s in sessions} == {"carol"}
        result = subprocess.run(sens_argv("sessions", "--json"), capture_output=True,
                                text=True, check=True)
        assert {json.loads(x)["user_name"] for x in result.stdout.splitlines()} == {"carol"}


def test_the_socket_is_private_and_a_second_daemon_refuses(tmp_path: Path) -> None:
    with daemon(tmp_path):
        mode = stat.S_IMODE(sock().stat().st_mode)
        assert mode == 0o600
        second = subprocess.run(sens_argv("serve", "--source", "none"), capture_output=True,
                                text=True, timeout=30)
        assert second.returncode == 1
        assert f"another sens serve is running on {sock()}" in second.stderr
        assert "Traceback" not in second.stderr
    assert not sock().exists()


def test_requests_that_are_not_json_or_unknown_get_one_sentence(tmp_path: Path) -> None:
    import socket

    with daemon(tmp_path), socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock()))
        s.sendall(b"not json\n{\"op\": \"launch\"}\n{\"op\": \"publish\", \"events\": "
                  b"[{\"method\": \"Nope\"}, {\"method\": \"Logon\", \"user_name\": \"x\"}]}\n")
        with s.makefile("rb") as f:
            first, second, third = (json.loads(f.readline()) for _ in range(3))
    assert first["ok"] is False and "one JSON object" in first["error"]
    assert second["status"] == 2 and "unknown op 'launch'" in second["error"]
    assert third["published"] == 1 and third["errors"][0]["index"] == 0
    assert "unknown method 'Nope'" in third["errors"][0]["error"]


@pytest.mark.parametrize(("text", "line", "message"), [
    ("[serve]\nsources = [\"none\"]\n\n[delivery]\nmax_failures = 0\n", 5,
     "max_failures must be a positive integer"),
    ("[serve]\nsocket = 5\n", 2, "socket must be a file path"),
    ("[serve]\nsoket = \"/x\"\n", 2, "unknown key 'soket'"),
    ("[delivery]\nretry_max = 1\nretry_initial = 2\n", 3, "must not exceed retry_max"),
    ("[serve]\nsources = [\"none\"\n", 2, "sens.toml:2"),
    ("[[forward]]\nurl = \"http://x\"\n", 2, "'http://x' is not a NATS URL"),
    ("[[forward]]\nurl = [\"nats://a:4222\", \"\"]\n", 2, "has an empty server"),
    ("[wat]\n", 1, "unknown section [wat]"),
    ("\nsources = [\"utmp\"]\n", 2, "a key (sources) outside any section"),
])
def test_a_bad_config_names_file_and_line_and_nothing_starts(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    cfg = tmp_path / "sens.toml"
    cfg.write_text(text, encoding="utf-8")
    result = subprocess.run(sens_argv("serve", "--config", str(cfg)), capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 1
    assert f"{cfg}:{line}:" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr
    assert not sock().exists() and not Path(os.environ["SENS_JOURNAL"]).exists()


def test_an_unavailable_named_source_stops_the_start(tmp_path: Path) -> None:
    result = subprocess.run(sens_argv("serve", "--source", str(tmp_path / "missing.jsonl"),
                                      "--forward", "http://x"),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--forward: 'http://x' is not a NATS URL" in result.stderr


def test_replay_source_events_are_journaled_and_delivered(tmp_path: Path) -> None:
    out = tmp_path / "sink.jsonl"
    assert main(["subscriptions", "add", "all", "--class", "ISensLogon2", "--jsonl",
                 str(out)]) == 0
    src = tmp_path / "replay.jsonl"
    # A session's life as a source reports it: the tracker admits them in order.
    from pysens.events import SensEvent, parse_time

    evs = [SensEvent(method=m, user_name="dave", session_id="7", host="h", source="logind",
                     time=parse_time(f"2026-11-23T10:00:0{i}Z"))
           for i, m in enumerate(["Logon", "SessionDisconnect", "SessionReconnect", "Logoff"])]
    write_events(src, evs)
    with daemon(tmp_path, "--source", str(src)):
        wait_cursor(["all"], 4)
    assert [r["method"] for r in read_jsonl(out)[0]] == [
        "Logon", "SessionDisconnect", "SessionReconnect", "Logoff"]


def test_doctor_reports_sources_journal_and_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["doctor"])
    out = capsys.readouterr().out
    assert "sources:" in out and "logind" in out and "utmp" in out
    assert f"socket: {sock()}: no daemon answers" in out
    with daemon(tmp_path):
        main(["doctor"])
        out = capsys.readouterr().out
    assert "daemon pid" in out and "mode 0600" in out
    assert f"journal: {os.environ['SENS_JOURNAL']}: 0 event(s)" in out
