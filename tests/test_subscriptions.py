"""Persistent subscriptions: the store, `sens subscriptions`, and the delivery loop's promises."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from pysens.cli import main
from pysens.delivery import DeliveryManager, DeliveryPolicy
from pysens.journal import Journal, SubscriptionError, SubscriptionStore
from service_fixtures import events, read_jsonl

FAST = DeliveryPolicy(max_failures=3, retry_initial=0.01, retry_max=0.04, timeout=10)


def test_add_list_disable_enable_remove(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "a.jsonl"
    assert main(["subscriptions", "add", "audit", "--class", "isenslogon2", "--method",
                 "session_reconnect", "--jsonl", str(out)]) == 0
    assert main(["subscriptions", "add", "hook", "--class", "ISensLogon", "--webhook",
                 "http://127.0.0.1:9/x", "--secret", "k", "--parallel"]) == 0
    assert main(["subscriptions", "add", "run", "--class", "ISensLogon2", "--per-user",
                 "alice", "--exec", "/bin/echo", "--flag", "x y"]) == 0
    capsys.readouterr()
    assert main(["subscriptions", "list", "--json"]) == 0
    rows = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["audit"]["method"] == "SessionReconnect"
    assert rows["audit"]["settings"] == {"path": str(out)}
    assert rows["hook"]["settings"]["secret"] == "***" and rows["hook"]["parallel"] is True
    assert rows["run"]["settings"]["argv"] == ["/bin/echo", "--flag", "x y"]
    assert rows["run"]["per_user"] is True and rows["run"]["owner"] == "alice"
    assert all(r["state"] == "ok" and r["enabled"] and r["cursor"] == 0 for r in rows.values())
    assert main(["subscriptions", "disable", "audit"]) == 0
    assert main(["subscriptions", "list"]) == 0
    assert "audit  ISensLogon2.SessionReconnect  disabled" in capsys.readouterr().out
    assert main(["subscriptions", "enable", "audit"]) == 0
    assert main(["subscriptions", "remove", "hook"]) == 0
    capsys.readouterr()
    assert main(["subscriptions", "list"]) == 0
    listing = capsys.readouterr().out
    assert "hook" not in listing and "2 subscription(s)." in listing


@pytest.mark.parametrize(("argv", "message"), [
    (["--class", "ISensNope", "--jsonl", "x"], "unknown event class 'ISensNope'"),
    (["--class", "ISensLogon2", "--method", "DisplayLock", "--jsonl", "x"],
     "ISensLogon2 has no method 'DisplayLock'"),
    (["--class", "ISensLogon2", "--webhook", "ftp://x"], "http:// or https://"),
    (["--class", "ISensLogon2", "--jsonl", "x", "--secret", "s"], "--secret goes with"),
    (["--class", "ISensLogon2", "--exec"], "--exec needs a program"),
])
def test_bad_subscriptions_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["subscriptions", "add", "s", *argv]) == 2
    assert message in capsys.readouterr().err


def test_unknown_names_and_duplicates_are_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["subscriptions", "enable", "ghost"]) == 1
    assert "no subscription named 'ghost'" in capsys.readouterr().err
    assert main(["subscriptions", "add", "a", "--class", "ISensLogon2", "--jsonl", "x"]) == 0
    assert main(["subscriptions", "add", "a", "--class", "ISensLogon2", "--jsonl", "y"]) == 1
    assert "exists already" in capsys.readouterr().err


def test_new_subscriptions_start_at_the_end_of_the_journal_unless_from_start() -> None:
    with Journal() as j:
        j.append_many(events(5))
        store = SubscriptionStore(j)
        late = store.add("late", event_class="ISensLogon2", sink="jsonl", settings={"path": "x"})
        early = store.add("early", event_class="ISensLogon2", sink="jsonl",
                          settings={"path": "x"}, from_start=True)
        assert j.cursor(late.cursor) == 5 and j.cursor(early.cursor) == 0
        store.remove("late")
        assert j.cursor(late.cursor) == 0
        with pytest.raises(SubscriptionError):
            store.get("late")
        store.close()


async def _deliver_until(manager: DeliveryManager, check: object, timeout: float = 20) -> None:  # noqa: ASYNC109 - a test's hang guard
    task = asyncio.create_task(manager.run())
    try:
        async with asyncio.timeout(timeout):
            while not check():  # type: ignore[operator]  # noqa: ASYNC110 - polls another process's file or database: nothing to await
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await manager.aclose()


async def test_delivery_in_journal_order_with_method_filter_and_history_skipped(
    tmp_path: Path,
) -> None:
    all_out, logoff_out = tmp_path / "all.jsonl", tmp_path / "logoff.jsonl"
    with Journal() as j:
        store = SubscriptionStore(j)
        store.add("all", event_class="ISensLogon2", sink="jsonl", settings={"path": str(all_out)})
        store.add("logoffs", event_class="ISensLogon", method="Logoff", sink="jsonl",
                  settings={"path": str(logoff_out)})
        live = j.append_many(events(30))
        imported = j.append_many(events(10, start=100))
        j.mark_history([r.event.seq or 0 for r in imported])
        more = j.append_many(events(10, start=200))
        manager = DeliveryManager(j, store, FAST)
        last = more[-1].event.seq or 0
        await _deliver_until(manager, lambda: all(
            j.cursor(s.cursor) == last for s in store.list()))
        got = [r["id"] for r in read_jsonl(all_out)[0]]
        assert got == [r.event.id for r in live + more]
        logoffs = [r["id"] for r in read_jsonl(logoff_out)[0]]
        assert logoffs == [r.event.id for r in live + more if r.event.method == "Logoff"]
        store.close()


async def test_failing_after_n_attempts_then_enable_resumes_from_the_cursor(
    tmp_path: Path,
) -> None:
    out, gate = tmp_path / "out.jsonl", tmp_path / "gate"
    # Fails while the gate file is missing; appends the event otherwise.
    code = (f"import sys, os; sys.exit(1) if not os.path.exists({str(gate)!r}) else "
            f"open({str(out)!r}, 'a').write(sys.stdin.read())")
    with Journal() as j:
        store = SubscriptionStore(j)
        sub = store.add("flaky", event_class="ISensLogon2", sink="exec",
                        settings={"argv": [sys.executable, "-c", code]})
        good = store.add("good", event_class="ISensLogon2", sink="jsonl",
                         settings={"path": str(tmp_path / "good.jsonl")})
        appended = j.append_many(events(3))
        manager = DeliveryManager(j, store, FAST, poll=0.05)
        await _deliver_until(manager, lambda: store.get("flaky").state == "failing"
                             and j.cursor(good.cursor) == 3)
        failing = store.get("flaky")
        assert failing.failures == 3 and "exited with status 1" in (failing.last_error or "")
        assert j.cursor(sub.cursor) == 0 and not out.exists()
        gate.touch()
        store.set_enabled("flaky", True)
        manager = DeliveryManager(j, store, FAST, poll=0.05)
        await _deliver_until(manager, lambda: j.cursor(sub.cursor) == 3)
        assert [r["id"] for r in read_jsonl(out)[0]] == [r.event.id for r in appended]
        assert store.get("flaky").state == "ok" and store.get("flaky").failures == 0
        store.close()


async def test_a_hanging_sink_is_bounded_and_does_not_hold_up_the_others(
    tmp_path: Path,
) -> None:
    with Journal() as j:
        store = SubscriptionStore(j)
        store.add("hangs", event_class="ISensLogon2", sink="exec",
                  settings={"argv": ["sleep", "60"]}, timeout=0.3)
        fine = store.add("fine", event_class="ISensLogon2", sink="jsonl",
                         settings={"path": str(tmp_path / "fine.jsonl")})
        policy = DeliveryPolicy(max_failures=2, retry_initial=0.01, retry_max=0.02)
        j.append_many(events(4))
        manager = DeliveryManager(j, store, policy, poll=0.05)
        await _deliver_until(manager, lambda: j.cursor(fine.cursor) == 4
                             and store.get("hangs").state == "failing")
        assert "time limit of 0.3 s" in (store.get("hangs").last_error or "")
        store.close()


async def test_per_user_delivers_only_while_the_owner_has_a_session(tmp_path: Path) -> None:
    from pysens.events import SensEvent, parse_time

    out = tmp_path / "alice.jsonl"

    def ev(method: str, user: str, sid: str, n: int) -> SensEvent:
        return SensEvent(method=method, user_name=user, session_id=sid, host="h",
                         time=parse_time(f"2026-11-23T10:00:{n:02d}Z"))

    with Journal() as j:
        store = SubscriptionStore(j)
        sub = store.add("mine", event_class="ISensLogon2", sink="jsonl", per_user=True,
                        owner="Alice", settings={"path": str(out)})
        seq = [ev("Logon", "bob", "1", 0),           # alice not here: not delivered
               ev("Logon", "alice", "2", 1),         # her logon: delivered
               ev("SessionDisconnect", "bob", "1", 2),  # while she is here: delivered
               ev("Logoff", "ALICE", "2", 3),        # her logoff: delivered
               ev("Logoff", "bob", "1", 4)]          # she is gone: not delivered
        j.append_many(seq)
        manager = DeliveryManager(j, store, FAST)
        await _deliver_until(manager, lambda: j.cursor(sub.cursor) == 5)
        assert [r["id"] for r in read_jsonl(out)[0]] == [e.id for e in seq[1:4]]
        store.close()


def test_bad_criteria_is_exit_2_with_the_position(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["subscriptions", "add", "c", "--class", "ISensLogon2", "--criteria",
                 "bstrUserName = 'alice' AND (", "--jsonl", "x"]) == 2
    err = capsys.readouterr().err
    assert "bad criteria" in err and "position 28" in err and "Traceback" not in err
    assert main(["subscriptions", "add", "c", "--class", "ISensLogon2", "--criteria",
                 "nosuchcolumn = 1", "--jsonl", "x"]) == 2
    assert main(["subscriptions", "list"]) == 0
    assert "0 subscription(s)." in capsys.readouterr().out


async def test_criteria_choose_what_a_subscription_receives(tmp_path: Path) -> None:
    out = tmp_path / "alice.jsonl"
    with Journal() as j:
        store = SubscriptionStore(j)
        sub = store.add("alice", event_class="ISensLogon2", sink="jsonl",
                        criteria="bstrUserName = 'ALICE' AND NOT method = 'Logoff'",
                        settings={"path": str(out)})
        evs = events(10) + events(10, user="bob", start=10)
        j.append_many(evs)
        manager = DeliveryManager(j, store, FAST)
        await _deliver_until(manager, lambda: j.cursor(sub.cursor) == 20)
        assert [r["id"] for r in read_jsonl(out)[0]] == [
            e.id for e in evs if e.user_name == "alice" and e.method != "Logoff"]
        store.close()


def test_a_sink_that_cannot_work_yet_is_added_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("not a program\n")
    plain.chmod(0o644)
    cases = [
        (["--exec", str(tmp_path / "absent-hook")], "absent-hook is not an executable file"),
        (["--exec", str(plain)], "plain.txt is not an executable file"),
        (["--exec", "no-such-program-here", "x"], "no-such-program-here is not found on this"),
        (["--jsonl", str(tmp_path / "no-dir" / "x.jsonl")], "no-dir/x.jsonl does not exist"),
        (["--exec", sys.executable, "-c", "pass"], None),
        (["--jsonl", str(tmp_path / "x.jsonl")], None),
    ]
    for n, (sink, warning) in enumerate(cases):
        assert main(["subscriptions", "add", f"s{n}", "--class", "ISensLogon2", *sink]) == 0
        out, err = capsys.readouterr()
        assert out.startswith(f"sens: added subscription s{n} ")
        if warning is None:
            assert err == ""
        else:
            assert warning in err and err.startswith("sens: warning: ") and err.count("\n") == 1
