"""The ``power_supply`` source on a temporary sysfs-shaped tree, woken by real kernel uevent
datagrams: the test enters a private network namespace (root), where a datagram sent to the
uevent group 1 reaches the source's netlink socket and nobody else's (never the host's udev).
Its observations go through the real tracker. And the pure half
(:mod:`pysens.sources.power_supply_map`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from power_supply_fixtures import SupplyTree, private_netns, tree
from pysens.events import Method
from pysens.observations import PowerState
from pysens.sources.power_supply import PowerSupplySource, read_supplies
from pysens.sources.power_supply_map import (
    Supply,
    parse_uevent,
    power_state,
    supply_from_attributes,
)
from pysens.tracker import Tracker
from upower_fixtures import PowerCollector

M = Method
T = datetime(2026, 1, 1, tzinfo=UTC)

__all__ = ["private_netns", "tree"]  # fixtures, imported for pytest


async def watch(tree: SupplyTree, *, include_existing: bool = False,
                **options: object) -> PowerCollector:
    source = PowerSupplySource(tree.root, **options)  # type: ignore[arg-type]
    c = PowerCollector(source, Tracker(host="testhost", include_existing=include_existing))
    await c.started()
    return c


def methods(events: list) -> list[tuple[str, int | None]]:  # type: ignore[type-arg]
    return [(e.method, e.battery_percent) for e in events]


# -- the live source --------------------------------------------------------------------------


@pytest.mark.root
async def test_unplug_and_plug_with_uevents(tree: SupplyTree) -> None:
    c = await watch(tree)
    try:
        (first,) = c.observations
        assert isinstance(first, PowerState)
        assert (first.on_battery, first.percent, first.low, first.existing) == (False, 80,
                                                                                False, True)
        assert first.raw["AC"] == {"type": "Mains", "online": "1"}
        tree.ac(False)
        tree.battery(status="Discharging")
        tree.inject("AC")
        tree.inject("BAT0")  # the kernel sends both; they are read once
        (event,) = await c.next()
        assert (event.method, event.battery_percent, event.source) == (
            M.OnBatteryPower, 80, "power_supply")
        tree.ac(True)
        tree.battery(status="Charging")
        tree.inject("AC")
        assert methods(await c.next()) == [(M.OnACPower, None)]
        assert c.pending() == []
    finally:
        await c.close()


@pytest.mark.root
async def test_low_by_capacity_level_then_by_percent_once_per_spell(tree: SupplyTree) -> None:
    c = await watch(tree, reread_interval=None)
    try:
        tree.ac(False)
        tree.battery(status="Discharging", capacity=30)
        tree.inject("AC")
        assert methods(await c.next()) == [(M.OnBatteryPower, 30)]
        # The firmware says Low at 24 %: its verdict wins over the 20 % rule.
        tree.battery(capacity=24, capacity_level="Low")
        tree.inject("BAT0")
        assert methods(await c.next()) == [(M.BatteryLow, 24)]
        tree.battery(capacity=5, capacity_level="Critical")  # the same spell
        tree.inject("BAT0")
        tree.ac(True)
        tree.battery(status="Charging", capacity=6, capacity_level="Normal")
        tree.inject("AC")
        assert methods(await c.next()) == [(M.OnACPower, None)]
        # A driver without a verdict (capacity_level Unknown): 20 % or less while discharging.
        tree.battery(capacity=35, capacity_level="Unknown")
        tree.inject("BAT0")
        tree.ac(False)
        tree.battery(status="Discharging")
        tree.inject("AC")
        assert methods(await c.next()) == [(M.OnBatteryPower, 35)]
        tree.battery(capacity=21)
        tree.inject("BAT0")
        tree.battery(capacity=20)
        tree.inject("BAT0")
        assert methods(await c.next()) == [(M.BatteryLow, 20)]
        assert c.pending() == []
    finally:
        await c.close()


@pytest.mark.root
async def test_low_percent_is_an_option(tree: SupplyTree) -> None:
    tree.ac(False)
    tree.battery(status="Discharging", capacity=30, capacity_level="Unknown")
    c = await watch(tree, low_percent=35, include_existing=True)
    try:
        assert methods(await c.next(2)) == [(M.OnBatteryPower, 30), (M.BatteryLow, 30)]
    finally:
        await c.close()


@pytest.mark.root
async def test_rereads_only_on_battery_until_low(tree: SupplyTree) -> None:
    # Percentage steps the driver never announces: found by the re-read, and only while they
    # can still mean BatteryLow.
    c = await watch(tree, reread_interval=0.05)
    source = c.source
    assert isinstance(source, PowerSupplySource)
    try:
        assert not source.rereading  # on AC: nothing to look for
        tree.ac(False)
        tree.battery(status="Discharging", capacity_level="Unknown")
        tree.inject("AC")
        assert methods(await c.next()) == [(M.OnBatteryPower, 80)]
        assert source.rereading
        tree.battery(capacity=19)  # no uevent
        assert methods(await c.next()) == [(M.BatteryLow, 19)]
        assert not source.rereading  # low: the next event (AC) comes with a uevent
        tree.ac(True)
        tree.inject("AC")
        assert methods(await c.next()) == [(M.OnACPower, None)]
        assert not source.rereading
    finally:
        await c.close()


@pytest.mark.root
async def test_other_uevents_and_garbage_are_ignored(
        tree: SupplyTree, caplog: pytest.LogCaptureFixture) -> None:
    c = await watch(tree, reread_interval=None)
    source = c.source
    assert isinstance(source, PowerSupplySource)
    try:
        with caplog.at_level(logging.WARNING, "pysens.sources.power_supply"):
            tree.send(b"change@/devices/virtual/net/lo\0ACTION=change\0SUBSYSTEM=net\0")
            tree.send(b"\xff\xfe not a uevent at all")
            tree.send(b"libudev\0\xfe\xed\xca\xfe")  # udev's own format: not ours, silent
            tree.ac(False)
            tree.battery(status="Discharging")
            tree.inject("AC")
            assert methods(await c.next()) == [(M.OnBatteryPower, 80)]
        assert source.reads == 2  # the first look and the power-supply uevent only
        assert [r.getMessage() for r in caplog.records] == [
            "uevent socket: a 22-byte datagram that is not a kernel uevent "
            "(b'\\xff\\xfe not a uevent at all'...), ignored"]
    finally:
        await c.close()


@pytest.mark.root
async def test_garbled_files_give_one_line_each_and_the_rest_counts(
        tree: SupplyTree, caplog: pytest.LogCaptureFixture) -> None:
    c = await watch(tree, reread_interval=None)
    try:
        with caplog.at_level(logging.WARNING, "pysens.sources.power_supply"):
            tree.ac(False)
            tree.battery(status="Discharging", capacity="eighty")
            tree.inject("AC")
            assert methods(await c.next()) == [(M.OnBatteryPower, None)]
            tree.inject("BAT0")  # read again: no second line for the same file
            tree.battery(capacity=50)
            tree.ac(True)
            tree.inject("AC")
            assert methods(await c.next()) == [(M.OnACPower, None)]
        bat = tree.root / "BAT0" / "capacity"
        assert [r.getMessage() for r in caplog.records] == [
            f"{bat}: 'eighty' is not a number; taken as unknown"]
    finally:
        await c.close()


@pytest.mark.root
async def test_a_battery_added_later(tmp_path: Path, private_netns: None) -> None:
    tree = SupplyTree(tmp_path / "ps")
    tree.ac(True)
    c = await watch(tree)
    try:
        first = c.observations[0]
        assert isinstance(first, PowerState) and first.percent is None
        tree.battery("BAT1", status="Discharging", capacity=55)
        tree.ac(False)
        tree.inject("BAT1", action="add")
        assert methods(await c.next()) == [(M.OnBatteryPower, 55)]
    finally:
        await c.close()
        tree.close()


async def test_probe_and_snapshot(tmp_path: Path) -> None:
    tree = SupplyTree(tmp_path / "ps")
    tree.ac(False)
    tree.battery(status="Discharging", capacity=42)
    assert await PowerSupplySource.probe(tree.root) is None
    assert await PowerSupplySource.probe(tmp_path / "none") == (
        f"{tmp_path / 'none'} does not exist (no power-supply class in this kernel)")
    source = PowerSupplySource(tree.root, host="h")
    (st,) = await source.snapshot()
    await source.aclose()
    assert isinstance(st, PowerState)
    assert (st.on_battery, st.percent, st.low, st.existing, st.host) == (True, 42, False, True,
                                                                         "h")


# -- the pure half ----------------------------------------------------------------------------

def sup(name: str, **attrs: object) -> Supply:
    return supply_from_attributes(name, {k: f"{v}\n" for k, v in attrs.items()})


def test_map_a_laptop() -> None:
    ac = sup("AC", type="Mains", online=1)
    bat = sup("BAT0", type="Battery", present=1, status="Charging", capacity=81,
              capacity_level="Normal")
    st = power_state([bat, ac], time=T)
    assert (st.on_battery, st.percent, st.low) == (False, 81, False)
    assert list(st.raw) == ["AC", "BAT0"]
    off = sup("AC", type="Mains", online=0)
    st = power_state([bat, off], time=T)
    assert (st.on_battery, st.percent, st.low) == (True, 81, False)


def test_map_no_supplies_is_ac_without_battery() -> None:
    st = power_state([], time=T)
    assert (st.on_battery, st.percent, st.low) == (False, None, False)
    # An adapter offline but no battery at all: the machine cannot be on battery.
    st = power_state([sup("AC", type="Mains", online=0)], time=T)
    assert st.on_battery is False


def test_map_without_line_power_the_battery_status_decides() -> None:
    bat = sup("battery", type="Battery", status="Discharging", capacity=50)
    assert power_state([bat], time=T).on_battery is True
    bat = sup("battery", type="Battery", status="Full", capacity=100)
    assert power_state([bat], time=T).on_battery is False


def test_map_ignores_peripheral_and_absent_batteries() -> None:
    ac = sup("AC", type="Mains", online=0)
    mouse = sup("hidpp_battery_0", type="Battery", scope="Device", status="Discharging",
                capacity=5, capacity_level="Critical")
    absent = sup("BAT1", type="Battery", present=0, capacity=0)
    st = power_state([ac, mouse, absent], time=T)
    assert (st.on_battery, st.percent, st.low) == (False, None, False)


def test_map_two_batteries_weighted_by_energy() -> None:
    a = sup("BAT0", type="Battery", status="Discharging", capacity=90, energy_now=45_000_000,
            energy_full=50_000_000)
    b = sup("BAT1", type="Battery", status="Discharging", capacity=10, energy_now=2_000_000,
            energy_full=20_000_000)
    ac = sup("AC", type="Mains", online=0)
    assert power_state([a, b, ac], time=T).percent == 67  # 47/70, not the mean 50
    c = sup("BAT1", type="Battery", capacity=10)  # no energy or charge: the mean
    assert power_state([a, c, ac], time=T).percent == 50


def test_map_low_rules() -> None:
    off = sup("AC", type="Mains", online=0)
    on = sup("AC", type="Mains", online=1)
    bat = sup("BAT0", type="Battery", status="Discharging", capacity=20,
              capacity_level="Unknown")
    assert power_state([off, bat], time=T).low is True
    assert power_state([off, bat], time=T, low_percent=15).low is False
    assert power_state([on, bat], time=T).low is False  # 20 % on AC: not low by the rule
    said_low = sup("BAT0", type="Battery", status="Discharging", capacity=40,
                   capacity_level="Low")
    assert power_state([off, said_low], time=T).low is True


def test_map_usb_c_and_ups() -> None:
    usb = sup("ucsi-source-psy-USBC000:001", type="USB", online=1)
    bat = sup("BAT0", type="Battery", status="Charging", capacity=70)
    assert power_state([usb, bat], time=T).on_battery is False
    ups = sup("ups", type="UPS", status="Discharging", capacity=60)
    assert power_state([ups], time=T).on_battery is True


def test_map_bad_values_are_unknown_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    warned: set[str] = set()
    with caplog.at_level(logging.WARNING, "pysens.sources.power_supply"):
        for _ in range(2):
            s = supply_from_attributes("BAT0", {"type": "Battery\n", "capacity": "140\n",
                                                "status": "Exploding\n", "online": "x"},
                                       where="/sys/class/power_supply/BAT0", warned=warned)
    assert (s.capacity, s.status, s.online, s.type) == (None, None, None, "Battery")
    assert sorted(r.getMessage() for r in caplog.records) == [
        "/sys/class/power_supply/BAT0/capacity: 140 is out of range; taken as unknown",
        "/sys/class/power_supply/BAT0/online: 'x' is not a number; taken as unknown",
        "/sys/class/power_supply/BAT0/status: 'Exploding' is not a documented value; taken as "
        "unknown",
    ]


def test_read_supplies_from_a_tree(tmp_path: Path) -> None:
    tree = SupplyTree(tmp_path / "ps")
    tree.ac(True)
    tree.battery(capacity=12, status="Discharging")
    (tree.root / "BAT0" / "uevent").write_text("POWER_SUPPLY_NAME=BAT0\n")  # not read
    names = [(s.name, s.type, s.capacity, s.online) for s in read_supplies(tree.root)]
    assert names == [("AC", "Mains", None, True), ("BAT0", "Battery", 12, None)]
    assert read_supplies(tmp_path / "missing") == []


def test_parse_uevent() -> None:
    ev = parse_uevent(b"change@/devices/LNXSYSTM:00/PNP0C0A:00/power_supply/BAT0\0"
                      b"ACTION=change\0SUBSYSTEM=power_supply\0POWER_SUPPLY_CAPACITY=55\0")
    assert ev is not None and ev.is_power_supply
    assert (ev.action, ev.devpath, ev.env["POWER_SUPPLY_CAPACITY"]) == (
        "change", "/devices/LNXSYSTM:00/PNP0C0A:00/power_supply/BAT0", "55")
    net = parse_uevent(b"add@/devices/virtual/net/veth0\0SUBSYSTEM=net\0")
    assert net is not None and not net.is_power_supply
    for junk in (b"", b"libudev\0\xfe\xed", b"no at sign\0", b"change@relative\0",
                 b"\xff@/x\0", b"@/devices/x\0"):
        assert parse_uevent(junk) is None, junk
