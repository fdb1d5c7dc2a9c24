"""The event system: subscriptions, SENS interface objects, results, isolation, limits."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pysens import (
    CriteriaError,
    EventSystem,
    FireResult,
    SensEvent,
    SensLogon,
    SensLogon2,
    SensNetwork,
    SensOnNow,
)


def ev(method: str, user: str = "alice", sid: str = "3", **kw: Any) -> SensEvent:
    return SensEvent(method=method, user_name=user, session_id=sid, host="h", **kw)


def test_callable_with_class_method_and_criteria() -> None:
    es = EventSystem()
    got: list[SensEvent] = []
    es.subscribe(got.append, event_class="ISensLogon2", method="SessionReconnect",
                 criteria="bstrUserName = 'alice'")
    assert es.fire(ev("SessionReconnect")) is FireResult.S_OK
    assert es.fire(ev("SessionReconnect", user="bob")) is FireResult.EVENT_S_NOSUBSCRIBERS
    assert es.fire(ev("SessionDisconnect")) is FireResult.EVENT_S_NOSUBSCRIBERS
    assert [e.user_name for e in got] == ["alice"]


def test_sens_interface_object_gets_only_what_it_implements() -> None:
    calls: list[tuple[str, str | None, str | None]] = []

    class Sink(SensLogon2):
        def session_reconnect(self, user_name: str, session_id: str) -> None:
            calls.append(("reconnect", user_name, session_id))

        def logoff(self, user_name: str, session_id: str) -> None:
            calls.append(("logoff", user_name, session_id))

    es = EventSystem()
    sub = es.subscribe(Sink())
    assert set(sub.handlers) == {"SessionReconnect", "Logoff"}
    assert es.fire(ev("SessionReconnect")) is FireResult.S_OK
    assert es.fire(ev("Logon")) is FireResult.EVENT_S_NOSUBSCRIBERS
    es.fire(ev("Logoff", user="bob", sid="7"))
    assert calls == [("reconnect", "alice", "3"), ("logoff", "bob", "7")]


def test_logon_and_shell_reach_both_logon_classes() -> None:
    seen: list[str] = []

    class Old(SensLogon):
        def logon(self, user_name: str) -> None:
            seen.append(f"ISensLogon.logon({user_name})")

        def start_shell(self, user_name: str) -> None:
            seen.append(f"ISensLogon.start_shell({user_name})")

    class New(SensLogon2):
        def logon(self, user_name: str, session_id: str) -> None:
            seen.append(f"ISensLogon2.logon({user_name},{session_id})")

        def post_shell(self, user_name: str, session_id: str) -> None:
            seen.append(f"ISensLogon2.post_shell({user_name},{session_id})")

    es = EventSystem()
    es.subscribe(Old(), event_class="ISensLogon")
    es.subscribe(New())
    es.fire(ev("Logon"))
    es.fire(ev("PostShell"))
    assert sorted(seen) == sorted([
        "ISensLogon.logon(alice)", "ISensLogon2.logon(alice,3)",
        "ISensLogon.start_shell(alice)", "ISensLogon2.post_shell(alice,3)"])
    got: list[SensEvent] = []
    es.subscribe(got.append, event_class="ISensLogon", method="StartShell")
    es.fire(ev("PostShell"))
    assert len(got) == 1


def test_wrong_signatures_are_refused_at_subscribe_time() -> None:
    class Bad(SensLogon2):
        def session_reconnect(self, user_name: str) -> None:  # type: ignore[override]
            pass

    es = EventSystem()
    with pytest.raises(TypeError, match=r"session_reconnect must take \(bstrUserName, dwSessionId"):
        es.subscribe(Bad())
    with pytest.raises(TypeError, match="one argument"):
        es.subscribe(lambda: None)
    with pytest.raises(ValueError, match="unknown event class"):
        es.subscribe(print, event_class="ISensFoo")
    with pytest.raises(ValueError, match="does not exist"):
        es.subscribe(print, event_class="ISensLogon2", method="DisplayLock")
    with pytest.raises(CriteriaError):
        es.subscribe(print, criteria="bstrUserName =")
    with pytest.raises(TypeError, match="implements none"):
        es.subscribe(SensLogon2())


def test_failures_never_stop_the_others_and_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    es = EventSystem()
    got: list[str] = []

    def boom(e: SensEvent) -> None:
        raise RuntimeError("subscriber bug")

    es.subscribe(boom, name="boom")
    es.subscribe(lambda e: got.append("second"))
    es.subscribe(boom, criteria="ALL", name="boom2")
    es.subscribe(lambda e: got.append("fourth"), criteria="ALL")
    e = ev("Logon")
    with caplog.at_level(logging.ERROR, logger="pysens.eventsystem"):
        assert es.fire(e) is FireResult.EVENT_S_SOME_SUBSCRIBERS_FAILED
    assert got == ["second", "fourth"]
    assert sum(e.id in r.getMessage() for r in caplog.records) == 2
    only = EventSystem()
    only.subscribe(boom)
    assert only.fire(e) is FireResult.EVENT_E_ALL_SUBSCRIBERS_FAILED


async def test_async_subscribers_are_awaited_and_time_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    es = EventSystem()
    got: list[str] = []

    async def slow(e: SensEvent) -> None:
        await asyncio.sleep(10)

    async def quick(e: SensEvent) -> None:
        await asyncio.sleep(0)
        got.append(e.user_name or "")

    es.subscribe(slow, timeout=0.05, name="slow")
    es.subscribe(quick)
    with caplog.at_level(logging.ERROR, logger="pysens.eventsystem"):
        result = await es.afire(ev("Logon"))
    assert result is FireResult.EVENT_S_SOME_SUBSCRIBERS_FAILED
    assert got == ["alice"]
    assert any("slow" in r.getMessage() and "limit" in r.getMessage() for r in caplog.records)


async def test_parallel_async_subscribers_run_together() -> None:
    es = EventSystem()
    running = 0
    peak = 0

    async def sub(e: SensEvent) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1

    for _ in range(5):
        es.subscribe(sub, parallel=True)
    assert await es.afire(ev("Logon")) is FireResult.S_OK
    assert peak == 5
    serial = EventSystem()
    peak = 0
    for _ in range(3):
        serial.subscribe(sub)
    await serial.afire(ev("Logon"))
    assert peak == 1


def test_fire_runs_async_subscribers_outside_a_loop() -> None:
    es = EventSystem()
    got: list[str] = []

    class Sink(SensLogon2):
        async def logon(self, user_name: str, session_id: str) -> None:
            await asyncio.sleep(0)
            got.append(user_name)

    es.subscribe(Sink())
    assert es.fire(ev("Logon")) is FireResult.S_OK
    assert got == ["alice"]


def test_sync_overrun_is_reported() -> None:
    import time

    es = EventSystem()
    es.subscribe(lambda e: time.sleep(0.05), timeout=0.01, criteria="ALL")
    assert es.fire(ev("Logon")) is FireResult.EVENT_E_ALL_SUBSCRIBERS_FAILED


def test_enabled_and_unsubscribe() -> None:
    es = EventSystem()
    got: list[SensEvent] = []
    sub = es.subscribe(got.append, enabled=False)
    assert es.fire(ev("Logon")) is FireResult.EVENT_S_NOSUBSCRIBERS
    sub.enabled = True
    assert es.fire(ev("Logon")) is FireResult.S_OK
    assert es.unsubscribe(sub) and not es.unsubscribe(sub)
    assert es.fire(ev("Logon")) is FireResult.EVENT_S_NOSUBSCRIBERS
    assert len(got) == 1


def test_per_user_delivered_only_while_the_owner_has_a_session() -> None:
    es = EventSystem()
    got: list[str] = []
    es.subscribe(lambda e: got.append(f"{e.method}:{e.user_name}"), per_user=True,
                 owner="Alice")
    es.fire(ev("Logon", user="bob", sid="1"))
    es.fire(ev("Logon", user="alice", sid="2"))  # the owner's logon itself is delivered
    es.fire(ev("SessionDisconnect", user="bob", sid="1"))
    es.fire(ev("Logoff", user="alice", sid="2"))  # and the logoff that ends it
    es.fire(ev("Logoff", user="bob", sid="1"))
    assert got == ["Logon:alice", "SessionDisconnect:bob", "Logoff:alice"]
    with pytest.raises(ValueError, match="owner"):
        es.subscribe(print, per_user=True)
    provided = EventSystem(session_provider=lambda user: user == "carol")
    seen: list[str] = []
    provided.subscribe(lambda e: seen.append(e.user_name or ""), per_user=True, owner="carol")
    provided.fire(ev("Logon", user="dave"))
    assert seen == ["dave"]


def test_indexed_and_unindexed_subscribers_mix() -> None:
    es = EventSystem()
    got: list[str] = []
    for i in range(100):
        es.subscribe(lambda e, i=i: got.append(f"user{i}"), criteria=f"bstrUserName = 'user{i}'")
    es.subscribe(lambda e: got.append("session9"), criteria="dwSessionId = 9")
    es.subscribe(lambda e: got.append("host"), criteria="host = 'h' AND remote = FALSE")
    es.subscribe(lambda e: got.append("any"))
    es.subscribe(lambda e: got.append("or"), criteria="bstrUserName = 'USER42' OR host = 'x'")
    assert es.fire(ev("Logon", user="User42", sid="9")) is FireResult.S_OK
    assert sorted(got) == sorted(["user42", "session9", "host", "any", "or"])


def test_on_now_and_network_parameters_come_from_the_event_fields() -> None:
    got: list[int] = []

    class Power(SensOnNow):
        def battery_low(self, battery_life_percent: int) -> None:
            got.append(battery_life_percent)

    es = EventSystem()
    es.subscribe(Power(), event_class="ISensOnNow")
    es.fire(SensEvent(method="BatteryLow", battery_percent=7))
    assert got == [7]
    made: list[tuple[str, int, object]] = []

    class Net(SensNetwork):
        def connection_made(self, connection: str, type_: int, qoc_info: object) -> None:
            made.append((connection, type_, qoc_info))

    es.subscribe(Net(), event_class="ISensNetwork")
    qoc = {"flags": 1, "in_speed": 100, "out_speed": 100}
    es.fire(SensEvent(method="ConnectionMade", connection="eth0", connection_type=0, qoc=qoc))
    assert made == [("eth0", 0, qoc)]


def test_plain_callables_fast_path_still_isolates_failures() -> None:
    es = EventSystem()
    got: list[str] = []

    def boom(e: SensEvent) -> None:
        raise RuntimeError("bug")

    assert es.fire(ev("SessionReconnect")) is FireResult.EVENT_S_NOSUBSCRIBERS
    es.subscribe(boom)
    assert es.fire(ev("SessionReconnect")) is FireResult.EVENT_E_ALL_SUBSCRIBERS_FAILED
    es.subscribe(lambda e: got.append("ok"))
    assert es.fire(ev("SessionReconnect")) is FireResult.EVENT_S_SOME_SUBSCRIBERS_FAILED
    assert got == ["ok"]
