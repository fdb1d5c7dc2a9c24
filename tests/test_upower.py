"""The ``upower`` source against python-dbusmock's upower template on a private system bus, its
observations fed through the real tracker; and its pure half (:mod:`pysens.sources.upower_map`).

"Nothing happened" is never waited for: each test follows a change that must fire nothing with
one that must fire something, and checks that the latter is the next event.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dbus_fast import Variant

from dbus_fixtures import PrivateBus
from pysens.events import Method
from pysens.observations import PowerState
from pysens.sources import SourceUnavailable
from pysens.sources.upower import UPowerSource
from pysens.sources.upower_map import percent_from, power_state
from upower_fixtures import (
    CHARGING,
    DISCHARGING,
    LEVEL_CRITICAL,
    LEVEL_LOW,
    LEVEL_NONE,
    MockUPower,
    UPowerWorld,
    blocking,
    upower,
)

__all__ = ["upower"]  # the fixture, imported for pytest

M = Method
T = datetime(2026, 1, 1, tzinfo=UTC)


def methods(events: list) -> list[tuple[str, int | None]]:  # type: ignore[type-arg]
    return [(e.method, e.battery_percent) for e in events]


# -- the pure half --------------------------------------------------------------------------

def test_map_ac_with_a_charging_battery() -> None:
    st = power_state({"OnBattery": False},
                     {"Type": 2, "State": 1, "Percentage": 79.6, "WarningLevel": 1,
                      "IsPresent": True}, time=T, existing=True, host="h")
    assert (st.on_battery, st.percent, st.low, st.existing, st.host) == (False, 80, False,
                                                                         True, "h")
    assert st.raw == {"OnBattery": False, "Type": 2, "State": 1, "Percentage": 79.6,
                      "WarningLevel": 1, "IsPresent": True}


@pytest.mark.parametrize(("level", "low"), [(0, False), (1, False), (2, False), (3, True),
                                             (4, True), (5, True)])
def test_map_low_is_warning_level_low_or_worse(level: int, low: bool) -> None:
    st = power_state({"OnBattery": True}, {"Type": 2, "Percentage": 9.0, "WarningLevel": level,
                                           "IsPresent": True}, time=T)
    assert st.low is low and st.percent == 9


def test_map_no_battery_has_no_percent_and_is_never_low() -> None:
    # A desktop: UPower's DisplayDevice is there with IsPresent false.
    st = power_state({"OnBattery": False}, {"Type": 0, "Percentage": 0.0, "IsPresent": False,
                                            "WarningLevel": 4}, time=T)
    assert (st.on_battery, st.percent, st.low) == (False, None, False)
    nothing = power_state({}, {}, time=T)  # nothing known yet: AC, no battery
    assert (nothing.on_battery, nothing.percent, nothing.low) == (False, None, False)


def test_map_percent_rounding_and_clamping() -> None:
    assert [percent_from(v) for v in (None, -3.0, 0.4, 19.5, 20.5, 99.6, 140.0)] == [
        None, 0, 0, 20, 20, 100, 100]
    assert percent_from(float("nan")) is None


def test_map_bad_values_give_one_line_each_and_count_as_unknown(
        caplog: pytest.LogCaptureFixture) -> None:
    warned: set[tuple[str, str]] = set()
    with caplog.at_level(logging.WARNING, "pysens.sources.upower"):
        for _ in range(3):
            st = power_state({"OnBattery": "yes"},
                             {"Percentage": "ninety", "WarningLevel": [3], "IsPresent": True},
                             time=T, warned=warned)
    assert (st.on_battery, st.percent, st.low) == (False, None, False)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines  # one per object and property, not one per reading
    assert any("manager: OnBattery is 'yes'" in line for line in lines)
    assert any("DisplayDevice: Percentage is 'ninety'" in line for line in lines)


# -- the live source against the mock ---------------------------------------------------------

async def test_ac_to_battery_and_back(upower: UPowerWorld) -> None:
    await upower.mock.setup_display(percentage=80.0, state=CHARGING)
    c = await upower.watch()
    first = c.observations[0]
    assert isinstance(first, PowerState)
    assert (first.on_battery, first.percent, first.low, first.existing) == (False, 80, False,
                                                                            True)
    await upower.mock.unplug()
    assert methods(await c.next()) == [(M.OnBatteryPower, 80)]
    await upower.mock.plug()
    (ac,) = await c.next()
    assert (ac.method, ac.battery_percent, ac.source, ac.host) == (M.OnACPower, None, "upower",
                                                                   "testhost")
    assert ac.raw["OnBattery"] is False
    await upower.mock.unplug()
    assert methods(await c.next()) == [(M.OnBatteryPower, 80)]
    assert c.pending() == []


async def test_nothing_fired_at_start(upower: UPowerWorld) -> None:
    await upower.restart_mock(on_battery=True)
    await upower.mock.setup_display(percentage=12.0, warning_level=LEVEL_LOW)
    c = await upower.watch()
    (first,) = c.observations
    assert isinstance(first, PowerState)
    assert (first.on_battery, first.percent, first.low, first.existing) == (True, 12, True, True)
    # Already low at start: draining further is no news; AC is.
    await upower.mock.set_display(Percentage=10.0, WarningLevel=LEVEL_CRITICAL)
    await upower.mock.plug()
    assert methods(await c.next()) == [(M.OnACPower, None)]
    assert c.pending() == []


async def test_include_existing_reports_the_state_at_start(upower: UPowerWorld) -> None:
    await upower.restart_mock(on_battery=True)
    await upower.mock.setup_display(percentage=12.0, warning_level=LEVEL_LOW)
    c = await upower.watch(include_existing=True)
    assert methods(await c.next(2)) == [(M.OnBatteryPower, 12), (M.BatteryLow, 12)]


async def test_discharging_battery_crosses_the_low_level_once_per_spell(
        upower: UPowerWorld) -> None:
    await upower.mock.setup_display(percentage=30.0, state=CHARGING)
    c = await upower.watch()
    await upower.mock.unplug()
    assert methods(await c.next()) == [(M.OnBatteryPower, 30)]
    await upower.mock.set_display(Percentage=25.0)  # draining, not low yet: nothing
    await upower.mock.set_display(Percentage=19.0, WarningLevel=LEVEL_LOW)
    assert methods(await c.next()) == [(M.BatteryLow, 19)]
    await upower.mock.set_display(Percentage=15.0)  # the same spell
    await upower.mock.set_display(Percentage=4.0, WarningLevel=LEVEL_CRITICAL)  # still it
    await upower.mock.plug()
    assert methods(await c.next()) == [(M.OnACPower, None)]
    # Charged a little on AC, unplugged again still under the level: a new spell, reported at
    # once after OnBatteryPower.
    await upower.mock.set_display(Percentage=8.0)
    await upower.mock.unplug()
    assert methods(await c.next(2)) == [(M.OnBatteryPower, 8), (M.BatteryLow, 8)]
    await upower.mock.plug()
    assert methods(await c.next()) == [(M.OnACPower, None)]
    await upower.mock.set_display(Percentage=60.0, WarningLevel=LEVEL_NONE)
    await upower.mock.unplug()
    assert methods(await c.next()) == [(M.OnBatteryPower, 60)]
    assert c.pending() == []


async def test_signals_that_arrive_together_make_one_observation(upower: UPowerWorld) -> None:
    await upower.restart_mock(on_battery=True)
    c = await upower.watch()
    assert [(o.percent, o.low) for o in c.observations] == [(None, False)]  # type: ignore[union-attr]

    async def battery_appears_low(mock: MockUPower) -> None:
        # Eleven PropertiesChanged (IsPresent ninth, WarningLevel last): one at a time, the
        # source would first see a battery that is not low, then a low one.
        await mock.setup_display(percentage=9.0, warning_level=LEVEL_LOW)

    blocking(upower.address, battery_appears_low)
    obs = await c.observation()
    assert isinstance(obs, PowerState)
    assert (obs.on_battery, obs.percent, obs.low, obs.existing) == (True, 9, True, False)
    assert methods(await c.next()) == [(M.BatteryLow, 9)]

    async def unplug_at_once(mock: MockUPower) -> None:
        await mock.set_on_battery(False)
        await mock.set_display(State=CHARGING, Percentage=10.0, WarningLevel=LEVEL_NONE)
        await mock.set_on_battery(True)
        await mock.set_display(State=DISCHARGING, Percentage=11.0)

    blocking(upower.address, unplug_at_once)
    obs = await c.observation()
    assert isinstance(obs, PowerState)
    # Off and back on battery within one burst: settled, it is one state, a recovered battery.
    assert (obs.on_battery, obs.percent, obs.low) == (True, 11, False)
    assert len(c.observations) == 3  # the first look, then one per burst
    await upower.mock.plug()
    assert methods(await c.next()) == [(M.OnACPower, None)]


async def test_a_burst_longer_than_one_socket_read_is_still_one_observation(
        upower: UPowerWorld) -> None:
    await upower.restart_mock(on_battery=True)
    await upower.mock.setup_display(percentage=90.0)
    c = await upower.watch()

    async def drain(mock: MockUPower) -> None:
        # 100 signals, ~20 KB: dbus-fast reads 8 KiB at a time, so several reads and loop
        # turns (more than the kernel's socket buffer, ~200 KB, would stay in dbus-daemon's
        # queue: not queued here yet, so not "arrived together").
        for tenth in range(900, 100, -8):
            await mock.set_display(Percentage=tenth / 10)
        await mock.set_display(WarningLevel=LEVEL_LOW)

    blocking(upower.address, drain)
    obs = await c.observation()
    assert isinstance(obs, PowerState)
    assert (obs.percent, obs.low) == (11, True)
    assert methods(await c.next()) == [(M.BatteryLow, 11)]
    assert len(c.observations) == 2


async def test_upower_restarting_with_another_state_is_a_change(upower: UPowerWorld) -> None:
    await upower.mock.setup_display(percentage=50.0, state=CHARGING)
    c = await upower.watch()
    await upower.restart_mock(on_battery=True)  # the new daemon: on battery, no battery yet
    assert methods(await c.next()) == [(M.OnBatteryPower, None)]  # no battery known yet
    await upower.mock.setup_display(percentage=40.0)
    await upower.mock.plug()
    assert methods(await c.next()) == [(M.OnACPower, None)]


async def test_the_bus_going_away_and_back_is_resynced(upower: UPowerWorld) -> None:
    await upower.mock.setup_display(percentage=50.0, state=CHARGING)
    c = await upower.watch()
    await upower.mock.stop()
    upower.bus.stop()  # every connection drops
    upower.bus.start()
    upower.mock = MockUPower(upower.address, upower.directory / "dbusmock.log")
    await upower.mock.start(on_battery=True)
    await upower.mock.setup_display(percentage=45.0)
    # The source reconnects, reads again, and reports the difference (the battery may or may
    # not have been read by then: the percentage is the only thing that can differ).
    (event,) = await c.next()
    assert event.method == M.OnBatteryPower
    await upower.mock.plug()
    assert methods(await c.next()) == [(M.OnACPower, None)]


async def test_bad_property_types_log_one_line_and_keep_working(
        upower: UPowerWorld, caplog: pytest.LogCaptureFixture) -> None:
    await upower.mock.setup_display(percentage=50.0, state=CHARGING)
    c = await upower.watch()
    with caplog.at_level(logging.WARNING, "pysens.sources.upower"):
        await upower.mock.set_display(Percentage=Variant("s", "full-ish"))
        await upower.mock.unplug()
        (event,) = await c.next()
    assert (event.method, event.battery_percent) == (M.OnBatteryPower, None)
    assert [r.getMessage() for r in caplog.records] == [
        "UPower DisplayDevice: Percentage is 'full-ish', not what UPower documents; taken as "
        "unknown"]
    await upower.mock.set_display(Percentage=33.0)
    await upower.mock.plug()
    assert methods(await c.next()) == [(M.OnACPower, None)]


async def test_snapshot_and_probe(upower: UPowerWorld) -> None:
    await upower.mock.setup_display(percentage=64.4, state=CHARGING)
    assert await UPowerSource.probe(upower.address) is None
    source = UPowerSource(upower.address, host="h1")
    try:
        (st,) = await source.snapshot()
    finally:
        await source.aclose()
    assert isinstance(st, PowerState)
    assert (st.on_battery, st.percent, st.low, st.existing, st.source, st.host) == (
        False, 64, False, True, "upower", "h1")


async def test_probe_and_open_without_upower(tmp_path: Path) -> None:
    bus = PrivateBus(tmp_path)
    bus.start()
    try:
        why = await UPowerSource.probe(bus.address)
        assert why == (f"org.freedesktop.UPower is not on the system bus at {bus.address} "
                       "(no upowerd running)")
        source = UPowerSource(bus.address)
        with pytest.raises(SourceUnavailable, match="not on the system bus"):
            await source.snapshot()
    finally:
        bus.stop()
    gone = f"unix:path={tmp_path / 'nothing-here'}"
    why = await UPowerSource.probe(gone)
    assert why is not None and why.startswith(f"the system bus at {gone} is not reachable")
