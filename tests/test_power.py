"""The combined ``power`` source: UPower when it is on the bus, else sysfs; events through the
real tracker either way."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbus_fixtures import PrivateBus
from power_supply_fixtures import SupplyTree, private_netns
from pysens.events import Method
from pysens.sources import SourceUnavailable
from pysens.sources.power import PowerSource, open_power, probe
from pysens.tracker import Tracker
from upower_fixtures import CHARGING, PowerCollector, UPowerWorld, upower

__all__ = ["private_netns", "upower"]  # fixtures, imported for pytest

M = Method


async def test_upower_when_it_is_there(upower: UPowerWorld, tmp_path: Path) -> None:
    await upower.mock.setup_display(percentage=70.0, state=CHARGING)
    assert await probe(bus_address=upower.address, root=tmp_path / "none") is None
    source = open_power(bus_address=upower.address, root=tmp_path / "none", host="h")
    c = PowerCollector(source, Tracker(host="h", include_existing=False))
    try:
        await c.started()
        assert source.chosen == ("upower", "UPower on the system bus")
        await upower.mock.unplug()
        (event,) = await c.next()
        assert (event.method, event.battery_percent, event.source) == (M.OnBatteryPower, 70,
                                                                       "upower")
    finally:
        await c.close()


@pytest.mark.root
async def test_sysfs_without_upower(tmp_path: Path, private_netns: None) -> None:
    bus = PrivateBus(tmp_path)  # a system bus without UPower on it
    bus.start()
    tree = SupplyTree(tmp_path / "power_supply")
    tree.ac(True)
    tree.battery(status="Charging", capacity=66)
    source = PowerSource(bus_address=bus.address, root=tree.root)
    c = PowerCollector(source, Tracker(host="h", include_existing=False))
    try:
        await c.started()
        assert source.chosen is not None and source.chosen[0] == "power_supply"
        assert "org.freedesktop.UPower is not on the system bus" in source.chosen[1]
        tree.ac(False)
        tree.battery(status="Discharging")
        tree.inject("AC")
        (event,) = await c.next()
        assert (event.method, event.battery_percent, event.source) == (M.OnBatteryPower, 66,
                                                                       "power_supply")
    finally:
        await c.close()
        tree.close()
        bus.stop()


async def test_neither(tmp_path: Path) -> None:
    gone = f"unix:path={tmp_path / 'no-bus'}"
    why = await PowerSource.probe(gone, tmp_path / "no-sysfs")
    assert why is not None and why.startswith("neither UPower (the system bus at")
    assert f"sysfs ({tmp_path / 'no-sysfs'} does not exist" in why
    with pytest.raises(SourceUnavailable, match="no power source here"):
        await PowerSource(bus_address=gone, root=tmp_path / "no-sysfs").snapshot()
