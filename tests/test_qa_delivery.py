"""A hostile pass over persistent delivery and the daemon: what an admin can get wrong, and what
a crash or a restart in the middle of a delivery must not cost. Real files, real programs, a
real `sens serve`."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from pysens.cli import main
from pysens.criteria import MAX_DEPTH, CriteriaError, compile_criteria
from pysens.delivery import DeliveryManager, DeliveryPolicy
from pysens.events import SensEvent, parse_time
from pysens.journal import Journal, SubscriptionStore
from pysens.sinks import SinkError, make_sink
from service_fixtures import daemon, events, read_jsonl, start_daemon, stop, write_events

EV = SensEvent(method="Logon", user_name="alice", session_id="1", host="web01",
               time="2026-11-23T10:00:00Z")  # type: ignore[arg-type]


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


# -- the jsonl sink never cuts what it did not write ----------------------------------------


async def test_jsonl_keeps_a_foreign_file_without_a_line_break_in_its_tail(
    tmp_path: Path,
) -> None:
    # Pointed at a file it does not own (longer than it looks back, no line break at all):
    # it used to truncate it to nothing.
    path = tmp_path / "precious.bin"
    data = bytes(b % 255 + 1 for b in range(200_000)).replace(b"\n", b"x")
    path.write_bytes(data)
    sink = make_sink("jsonl", {"path": str(path)})
    await sink.deliver([EV])
    await sink.aclose()
    got = path.read_bytes()
    assert got.startswith(data + b"\n")
    assert got[len(data) + 1:].decode().splitlines() == [
        line.strip() for line in [__import__("json").dumps(EV.to_json(), ensure_ascii=False)]]


async def test_jsonl_keeps_someone_elses_last_line_and_starts_its_own(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("first\nlast line without a break", encoding="utf-8")
    sink = make_sink("jsonl", {"path": str(path)})
    await sink.deliver([EV])
    await sink.aclose()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[:2] == ["first", "last line without a break"]
    assert len(lines) == 3 and lines[2].startswith('{"id": ')


async def test_jsonl_still_cuts_its_own_torn_line_when_it_is_the_whole_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"id": "torn by a cr', encoding="utf-8")
    sink = make_sink("jsonl", {"path": str(path)})
    await sink.deliver([EV])
    await sink.aclose()
    rows, torn = read_jsonl(path)
    assert torn == 0 and [r["id"] for r in rows] == [EV.id]


# -- the exec sink: loud programs, killed programs ------------------------------------------


async def test_exec_names_the_last_words_of_a_program_that_printed_megabytes() -> None:
    # 20 MB on stderr and stdout, then the reason: only the tail is kept, and it is the reason.
    code = ("import sys; sys.stdout.write('o' * 20_000_000); sys.stderr.write('e' * 20_000_000);"
            " sys.stderr.write('\\nthe disk is full\\n'); sys.exit(4)")
    sink = make_sink("exec", {"argv": py(code)}, timeout=60)
    with pytest.raises(SinkError, match=r"exited with status 4: 'the disk is full'$"):
        await sink.deliver([EV])


async def test_exec_a_program_killed_by_a_signal_says_which() -> None:
    sink = make_sink("exec", {"argv": py("import os, signal; os.kill(os.getpid(), "
                                         "signal.SIGKILL)")}, timeout=30)
    with pytest.raises(SinkError, match="was killed by SIGKILL"):
        await sink.deliver([EV])


def test_a_user_name_full_of_shell_is_only_data_for_the_hook(tmp_path: Path) -> None:
    out, pwned = tmp_path / "out", tmp_path / "pwned"
    evil = f"$(touch {pwned}) `touch {pwned}`; touch {pwned} \"'\ntouch {pwned}"
    code = f"import os; open({str(out)!r}, 'w').write(os.environ['SENS_USER_NAME'])"
    assert main(["subscriptions", "add", "hook", "--class", "ISensLogon", "--exec",
                 sys.executable, "-c", code, f"$(touch {pwned})"]) == 0
    with daemon(tmp_path):
        assert main(["publish", "Logon", "--user", evil, "--session", "1"]) == 0
        end = time.monotonic() + 30
        while not out.exists() and time.monotonic() < end:
            time.sleep(0.05)
    assert out.read_text() == evil
    assert not pwned.exists()


# -- webhook addresses http.client would misread --------------------------------------------


@pytest.mark.parametrize(("url", "why"), [
    ("http://127.0.0.1:99999/", "Port out of range"),
    ("http://hooks.example:abc/", "Port could not be cast"),
    ("http://hooks.example:0/", "port 0"),
    ("http://user:pw@hooks.example/x", "user name or password"),
    ("http://hooks.example/a\r\nX-Evil: 1", "control characters"),
    ("http://hooks.example/a b", "spaces"),
    ("http://[::1/", "Invalid IPv6 URL"),
    ("http:///path", "no host"),
])
def test_a_webhook_url_that_cannot_work_is_refused_at_add(
    url: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["subscriptions", "add", "w", "--class", "ISensLogon", "--webhook", url]) == 2
    err = capsys.readouterr().err
    assert why in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_stored_subscription_the_daemon_cannot_use_is_failing_with_the_reason(
    tmp_path: Path,
) -> None:
    # Stored by an older pysens (or by hand): the worker must not die with a traceback.
    with Journal() as j:
        SubscriptionStore(j).close()
    with sqlite3.connect(str(tmp_path / "journal.db")) as db:
        db.execute(
            "INSERT INTO subscriptions(id, name, event_class, method, criteria, enabled, "
            "per_user, owner, parallel, sink, settings, state, failures, last_error, created) "
            "VALUES ('x1', 'old', 'ISensLogon', NULL, NULL, 1, 0, NULL, 0, 'webhook', "
            "'{\"url\": \"http://h:abc/\"}', 'ok', 0, NULL, '')")
    proc = start_daemon(tmp_path)
    try:
        with Journal() as j:
            store = SubscriptionStore(j)
            end = time.monotonic() + 30
            while store.get("old").state != "failing" and time.monotonic() < end:
                time.sleep(0.05)
            sub = store.get("old")
            store.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=30)[1].decode()
    assert sub.state == "failing"
    assert sub.last_error is not None and sub.last_error.startswith("cannot start: ")
    assert "Port could not be cast" in sub.last_error
    assert "Traceback" not in err


# -- cursors: a restart repeats little, a failing subscription tries exactly N times --------


def _seqs(path: Path, word: str) -> list[int]:
    if not path.exists():
        return []
    return [int(line.split()[0]) for line in path.read_text().splitlines()
            if line.endswith(word)]


def test_a_restart_in_the_middle_of_slow_hooks_repeats_at_most_the_one_in_flight(
    tmp_path: Path,
) -> None:
    # Each run takes 0.3 s, so the worker hands the hook one event at a time and saves its
    # cursor after each; the cursor used to stay put until the whole batch had gone through,
    # and every restart ran every hook of the batch again.
    out = tmp_path / "runs"
    code = ("import os, time; s = os.environ['SENS_SEQ']; "
            f"f = open({str(out)!r}, 'a'); f.write(s + ' start\\n'); f.flush(); "
            "time.sleep(0.3); f.write(s + ' done\\n')")
    assert main(["subscriptions", "add", "slow", "--class", "ISensLogon", "--exec",
                 sys.executable, "-c", code]) == 0
    n = 12
    burst = write_events(tmp_path / "burst.jsonl", events(n))
    proc = start_daemon(tmp_path)
    try:
        assert main(["publish", "--json", str(burst)]) == 0
        end = time.monotonic() + 60
        while len(_seqs(out, "done")) < 4 and time.monotonic() < end:
            time.sleep(0.02)
    finally:
        stop(proc, signal.SIGTERM)
    done_before = _seqs(out, "done")
    with Journal() as j:
        store = SubscriptionStore(j)
        cursor = j.cursor(store.get("slow").cursor)
        store.close()
    assert len(done_before) >= 4
    # Everything whose run finished is behind the cursor, but perhaps the very last one
    # (stopped between its end and the save).
    assert cursor >= max(done_before) - 1
    with daemon(tmp_path):
        end = time.monotonic() + 60
        while len(set(_seqs(out, "done"))) < n and time.monotonic() < end:
            time.sleep(0.05)
    done = _seqs(out, "done")
    assert sorted(set(done)) == list(range(1, n + 1))  # at least once, none skipped
    assert len(done) - n <= 1


def test_failing_subscriptions_are_tried_exactly_max_failures_times(tmp_path: Path) -> None:
    # Many subscriptions failing at once change the table under the manager's feet; a worker
    # that had just given up was restarted from a stale row and tried once more.
    counts = tmp_path / "tries"
    code = f"open({str(counts)!r}, 'a').write(__import__('sys').argv[1] + '\\n'); exit(1)"
    names = [f"f{i}" for i in range(8)]
    for name in names:
        assert main(["subscriptions", "add", name, "--class", "ISensLogon", "--exec",
                     sys.executable, "-c", code, name]) == 0
    config = "[delivery]\nmax_failures = 3\nretry_initial = 0.01\nretry_max = 0.02\n"
    with daemon(tmp_path, config=config):
        assert main(["publish", "Logon", "--user", "alice", "--session", "1"]) == 0
        with Journal() as j:
            store = SubscriptionStore(j)
            end = time.monotonic() + 60
            while (any(s.state != "failing" for s in store.list())
                   and time.monotonic() < end):
                time.sleep(0.05)
            subs = store.list()
            store.close()
        time.sleep(0.5)  # room for a stray extra attempt to show itself
    tries = counts.read_text().split()
    assert {s.name: (s.state, s.failures) for s in subs} == {n: ("failing", 3) for n in names}
    assert {n: tries.count(n) for n in names} == {n: 3 for n in names}


async def test_a_per_user_failure_keeps_cursor_and_presence_together(tmp_path: Path) -> None:
    # alice logs on (delivered), off (not subscribed: Logons only), on again (fails once),
    # off; then bob logs on while alice has no session: not for her. The retry must start
    # where the presence it knows was true, not past her Logoff.
    out, failed_once = tmp_path / "out", tmp_path / "failed-once"
    code = ("import json, os, sys; e = json.load(sys.stdin); "
            f"m = {str(failed_once)!r}\n"
            "if e['session_id'] == '3' and not os.path.exists(m):\n"
            "    open(m, 'w').close(); sys.exit(1)\n"
            f"open({str(out)!r}, 'a').write(e['id'] + '\\n')")
    evs = [SensEvent(method=m, user_name=u, session_id=s, host="web01", id=f"E{i}",
                     time=parse_time(f"2026-11-23T10:00:0{i}Z"))
           for i, (m, u, s) in enumerate([("Logon", "alice", "1"), ("Logoff", "alice", "1"),
                                           ("Logon", "alice", "3"), ("Logoff", "alice", "3"),
                                           ("Logon", "bob", "5")])]
    with Journal() as j:
        store = SubscriptionStore(j)
        store.add("mine", event_class="ISensLogon2", method="Logon", per_user=True,
                  owner="alice", sink="exec", settings={"argv": py(code)})
        j.append_many(evs)
        manager = DeliveryManager(j, store, DeliveryPolicy(
            max_failures=5, retry_initial=0.01, retry_max=0.02, timeout=30), poll=0.05)
        sub = store.get("mine")
        task = asyncio.create_task(manager.run())
        try:
            async with asyncio.timeout(60):
                while j.cursor(sub.cursor) < 5:  # noqa: ASYNC110 - polls another process's file or database: nothing to await
                    await asyncio.sleep(0.02)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await manager.aclose()
        store.close()
    assert failed_once.exists()
    assert out.read_text().split() == ["E0", "E2"]


# -- criteria that nest too deeply say where ------------------------------------------------


def test_nesting_too_deep_names_the_position_where_it_went_too_deep() -> None:
    text = "(" * (MAX_DEPTH + 20) + "method = 'Logon'" + ")" * (MAX_DEPTH + 20)
    with pytest.raises(CriteriaError) as info:
        compile_criteria(text)
    assert info.value.position == MAX_DEPTH
    assert f"position {MAX_DEPTH}" in str(info.value)
    nots = "NOT " * MAX_DEPTH + "method = 'Logon'"
    assert compile_criteria(nots).matches(EV) is (MAX_DEPTH % 2 == 0)


def test_a_word_glued_to_a_number_is_named_whole(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "--filter", "dwSessionId = 12abc"]) == 2
    err = capsys.readouterr().err
    assert err == "sens: bad filter: syntax error at position 14: unexpected '12abc'\n"


# -- the daemon's configuration and sources -------------------------------------------------


@pytest.mark.parametrize(("config", "message"), [
    ("[delivery]\ntimeout = nan\n", "sens.toml:2: [delivery] timeout must be a positive number"),
    ("[delivery]\n\nretry_max = inf\n", "sens.toml:3: [delivery] retry_max must be a positive"),
    ('[[forward]]\nurl = "nats://127.0.0.1:1"\n\nbogus = 3\n',
     "sens.toml:4: unknown key 'bogus' in [[forward]]; known keys are: url, "),
    ('[[forward]]\nurl = "nats://127.0.0.1:1"\n[[forward]]\nurl = "nats://127.0.0.1:2"\n'
     'stream = 3\n', "sens.toml:5: [[forward]] stream must be text, not 3"),
    ('[serve]\nsources = ["logindd"]\n', "unknown source 'logindd' ([serve] sources in "),
    ('[serve]\njournal.x = "a"\n', "sens.toml:2: [serve] journal must be a file path"),
])
def test_a_bad_config_is_one_line_naming_file_and_line(
    tmp_path: Path, config: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "sens.toml"
    cfg.write_text(config, encoding="utf-8")
    assert main(["serve", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "sens.sock").exists()


@pytest.mark.parametrize("source", ["bogus", "replay"])
def test_serve_with_a_source_that_is_not_one_refuses_to_start(
    source: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--source", source]) == 1
    err = capsys.readouterr().err
    assert f"unknown source {source!r}" in err and err.count("\n") == 1


def test_watch_source_replay_without_a_file_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["watch", "--source", "replay"]) == 2
    assert "JSON-lines file" in capsys.readouterr().err


# -- sens publish -----------------------------------------------------------------------------


def test_publish_refuses_bytes_that_are_not_utf8_instead_of_replacing_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "in.jsonl"
    f.write_bytes(b'{"method": "Logon", "user_name": "caf\xe9", "id": "bad"}\n'
                  b'{"method": "Logon", "user_name": "ok", "id": "good"}\n')
    assert main(["publish", "--json", str(f)]) == 1
    err = capsys.readouterr().err
    assert f"{f}:1: field 'user_name'" in err and "line skipped" in err
    with Journal() as j:
        assert [e.id for e in j.query()] == ["good"]


@pytest.mark.parametrize("user", ["", "CORP\\", "  "])
def test_publish_with_no_user_name_is_a_usage_error(
    user: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["publish", "Logon", "--user", user]) == 2
    assert "has no user name" in capsys.readouterr().err
    with Journal() as j:
        assert list(j.query()) == []
