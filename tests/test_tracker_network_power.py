"""The ISensNetwork and ISensOnNow rules of the tracker (docs/events.md), on hand-made
observations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from pysens.criteria import compile_criteria
from pysens.events import CONNECTION_LAN, CONNECTION_WAN, SensEvent
from pysens.observations import ConnectionState, DestinationState, PowerState
from pysens.tracker import Tracker

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
QOC = {"flags": 1, "in_speed": 10_000_000_000, "out_speed": 10_000_000_000}


def at(n: int) -> datetime:
    return T0 + timedelta(seconds=n)


def link(n: int, usable: bool, *, key: str = "ifindex:3", name: str = "eth0",
         qoc: dict[str, int] | None = QOC, existing: bool = False,
         kind: int = CONNECTION_LAN) -> ConnectionState:
    return ConnectionState(at(n), "netlink", key, name, usable, kind, qoc, existing)


def methods(events: list[SensEvent]) -> list[str]:
    return [str(e.method) for e in events]


def test_made_and_lost_alternate_and_repeats_change_nothing() -> None:
    t = Tracker(host="h")
    assert methods(t.feed(link(0, True))) == ["ConnectionMade"]
    assert t.feed(link(1, True)) == []
    lost = t.feed(link(2, False))
    assert methods(lost) == ["ConnectionLost"]
    assert lost[0].connection == "eth0" and lost[0].connection_type == CONNECTION_LAN
    assert lost[0].qoc is None
    assert t.feed(link(3, False)) == []
    made = t.feed(link(4, True, qoc=None, kind=CONNECTION_WAN))
    assert methods(made) == ["ConnectionMadeNoQOCInfo"]
    assert made[0].connection_type == CONNECTION_WAN and made[0].qoc is None


def test_the_made_event_carries_qoc_and_the_lost_the_name_it_was_made_with() -> None:
    t = Tracker(host="h")
    made = t.feed(link(0, True))[0]
    assert made.qoc == QOC and made.to_json()["qoc"] == QOC
    assert t.feed(link(1, True, name="Wired connection 1")) == []  # NetworkManager named it
    assert t.network.connections[0].connection == "Wired connection 1"
    assert t.feed(link(2, False, name="Wired connection 1"))[0].connection == "eth0"


def test_nothing_for_connections_that_exist_at_start_unless_asked() -> None:
    t = Tracker(host="h")
    assert t.feed(link(0, True, existing=True)) == []
    assert [c.connection for c in t.network.connections] == ["eth0"]
    assert methods(t.feed(link(1, False))) == ["ConnectionLost"]
    t2 = Tracker(host="h", include_existing=True)
    assert methods(t2.feed(link(0, True, existing=True))) == ["ConnectionMade"]


def test_connections_are_tracked_apart_and_ids_differ() -> None:
    t = Tracker(host="h")
    a = t.feed(link(0, True, key="ifindex:3", name="eth0"))
    b = t.feed(link(0, True, key="ifindex:4", name="eth1"))
    assert methods(a + b) == ["ConnectionMade", "ConnectionMade"]
    assert a[0].id != b[0].id


def test_destination_reachable_fires_when_it_starts_to_answer() -> None:
    t = Tracker(host="h")

    def probe(n: int, ok: bool, existing: bool = False) -> list[SensEvent]:
        return t.feed(DestinationState(at(n), "probe", "git.example.com", ok, "eth0",
                                       CONNECTION_LAN, QOC if n % 2 else None, existing))

    assert probe(0, False, existing=True) == []
    first = probe(2, True)
    assert methods(first) == ["DestinationReachableNoQOCInfo"]
    assert first[0].destination == "git.example.com" and first[0].connection == "eth0"
    assert probe(3, True) == []
    assert probe(4, False) == []
    assert methods(probe(5, True)) == ["DestinationReachable"]
    assert t.network.reachable() == {"git.example.com": True}


def power(n: int, battery: bool, percent: int | None = 80, low: bool = False,
          existing: bool = False) -> PowerState:
    return PowerState(at(n), "upower", battery, percent, low, existing)


def test_ac_battery_and_one_battery_low_per_spell() -> None:
    t = Tracker(host="h")
    assert t.feed(power(0, False, existing=True)) == []
    ev = t.feed(power(1, True, 55))
    assert methods(ev) == ["OnBatteryPower"] and ev[0].battery_percent == 55
    assert t.feed(power(2, True, 30)) == []
    low = t.feed(power(3, True, 19, low=True))
    assert methods(low) == ["BatteryLow"] and low[0].battery_percent == 19
    assert t.feed(power(4, True, 12, low=True)) == []
    assert t.feed(power(5, True, 25)) == []  # recovered: re-armed
    assert methods(t.feed(power(6, True, 18, low=True))) == ["BatteryLow"]
    ac = t.feed(power(7, False, 18))
    assert methods(ac) == ["OnACPower"] and ac[0].battery_percent is None
    assert methods(t.feed(power(8, True, 17, low=True))) == ["OnBatteryPower", "BatteryLow"]


def test_a_battery_already_low_at_start_is_not_news() -> None:
    t = Tracker(host="h")
    assert t.feed(power(0, True, 10, low=True, existing=True)) == []
    assert t.feed(power(1, True, 9, low=True)) == []
    assert methods(t.feed(power(2, False))) == ["OnACPower"]
    t2 = Tracker(host="h", include_existing=True)
    assert methods(t2.feed(power(0, True, 10, low=True, existing=True))) == [
        "OnBatteryPower", "BatteryLow"]


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.booleans()), max_size=40))
def test_made_and_lost_always_alternate_per_connection(steps: list[tuple[str, bool]]) -> None:
    t = Tracker(host="h")
    seen: dict[str, list[str]] = {"a": [], "b": []}
    for n, (key, usable) in enumerate(steps):
        for e in t.feed(link(n, usable, key=key, name=key)):
            seen[e.connection or ""].append("Made" if "Made" in e.method else "Lost")
    for history in seen.values():
        assert all(x != y for x, y in pairwise(history))
        assert not history or history[0] == "Made"


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 100), st.booleans()), max_size=40))
def test_power_events_follow_the_sens_rules(steps: list[tuple[bool, int, bool]]) -> None:
    t = Tracker(host="h")
    battery = None
    in_spell = False
    for n, (on_battery, percent, low) in enumerate(steps):
        events = t.feed(power(n, on_battery, percent, low))
        names = methods(events)
        assert ("OnBatteryPower" in names) == (on_battery and battery is not True)
        assert ("OnACPower" in names) == (not on_battery and battery is not False)
        want_low = on_battery and low and not in_spell
        assert ("BatteryLow" in names) == want_low
        in_spell = on_battery and low
        battery = on_battery


def test_json_round_trip_and_criteria_on_the_new_columns() -> None:
    e = SensEvent(method="ConnectionMade", connection="eth0", connection_type=1, qoc=QOC,
                  host="h", time=T0, observed=T0)
    back = SensEvent.from_json(e.to_json_text())
    assert back == e and back.qoc == QOC
    assert SensEvent.from_stored(e.to_json(), 7).qoc == QOC
    for text, want in [
        ("ulType = 1", True), ("ulType = '1'", True), ("ulType = 0", False),
        ("ulConnectionMadeType = 1", True), ("ulConnectionLostType <> 1", False),
        ("bstrConnection = 'eth0'", True), ("bstrDestination = NULL", True),
        ("dwBatteryLifePercent = NULL", True),
    ]:
        assert compile_criteria(text).matches(e) is want, text
    low = SensEvent(method="BatteryLow", battery_percent=9, host="h")
    assert compile_criteria("dwBatteryLifePercent = 9").matches(low)
    assert compile_criteria("dwBatteryLifePercent != 10").matches(low)


def test_old_bodies_without_the_new_keys_still_read_and_logon_ids_are_unchanged() -> None:
    e = SensEvent(method="Logon", user_name="alice", session_id="3", host="web01",
                  source="logind", time=T0, observed=T0)
    body = {k: v for k, v in e.to_json().items()
            if k not in ("connection", "connection_type", "qoc", "destination",
                         "battery_percent")}
    assert SensEvent.from_stored(body, 1) == e.with_seq(1)
    # The id a Logon had before network fields existed (it is the idempotency key).
    from pysens.events import format_time, make_event_id
    assert e.id == make_event_id(T0, "web01", "logind", "Logon", format_time(T0), "3", "alice",
                                 None, None)
