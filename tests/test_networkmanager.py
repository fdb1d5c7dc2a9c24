"""NetworkManager names and types connections: python-dbusmock's networkmanager template on a
private system bus, alone and beside the kernel's links in a network namespace."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from netns_fixtures import Namespaces, NetProbe, namespaces
from nm_fixtures import NMWorld, nm
from pysens.events import CONNECTION_LAN, CONNECTION_WAN
from pysens.sources.netlink_map import Label
from pysens.sources.networkmanager import NetworkManagerWatch, nm_present
from pysens.sources.networkmanager_map import connection_type_of, internet_of, labels_from
from test_netlink import pair, probes

__all__ = ["namespaces", "nm", "probes"]  # the fixtures, re-exported so pytest finds them


def test_types_and_connectivity() -> None:
    assert [connection_type_of(t) for t in ("gsm", "cdma", "pppoe", "vpn", "wireguard")] == [
        CONNECTION_WAN] * 5
    assert connection_type_of("802-3-ethernet") == CONNECTION_LAN
    assert connection_type_of("tun") is None and connection_type_of(None) is None
    assert [internet_of(v) for v in (0, 1, 2, 3, 4, "4", True)] == [
        None, False, False, False, True, None, None]


def test_a_vpn_does_not_rename_its_carrier_device() -> None:
    devices = {"/d/1": {"Interface": "eth0", "IpInterface": ""},
               "/d/2": {"Interface": "ttyUSB0", "IpInterface": "wwan0"}}
    active: dict[str, dict[str, Any]] = {
              "/a/0": {"Id": "Office VPN", "Type": "vpn", "Vpn": True, "Devices": ["/d/1"]},
              "/a/1": {"Id": "Office", "Type": "802-3-ethernet", "Devices": ["/d/1"]},
              "/a/2": {"Id": "Telekom", "Type": "gsm", "Devices": ["/d/2"], "State": 2},
              "/a/3": {"Id": "Old", "Type": "gsm", "Devices": ["/d/2"], "State": 4}}
    assert labels_from(active, devices, "/a/1") == {
        "eth0": Label("Office", CONNECTION_LAN, "802-3-ethernet", True),
        "wwan0": Label("Telekom", CONNECTION_WAN, "gsm")}


class Updates:
    """What a NetworkManagerWatch tells its listener, awaitable."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[dict[str, Label], bool | None]] = asyncio.Queue()

    def __call__(self, labels: dict[str, Label], internet: bool | None) -> None:
        self.queue.put_nowait((labels, internet))

    async def until(self, wanted: Any) -> tuple[dict[str, Label], bool | None]:
        while True:
            item = await asyncio.wait_for(self.queue.get(), 10)
            if wanted(*item):
                return item


async def test_labels_follow_properties_changed(nm: NMWorld) -> None:
    updates = Updates()
    watch = NetworkManagerWatch(updates, nm.address)
    try:
        assert await watch.start() and watch.labels == {} and watch.internet is True
        dev = await nm.mock.add_ethernet("eth_va", "va")
        office = await nm.mock.activate(dev, "Office LAN", "802-3-ethernet")
        labels, _ = await updates.until(lambda labels, _i: "va" in labels)
        assert labels["va"] == Label("Office LAN", CONNECTION_LAN, "802-3-ethernet")
        modem = await nm.mock.add_ethernet("modem0", "wwan0")
        await nm.mock.activate(modem, "Telekom", "gsm")
        labels, _ = await updates.until(lambda labels, _i: "wwan0" in labels)
        assert labels["wwan0"].connection_type == CONNECTION_WAN
        await nm.mock.set_primary(office)
        labels, _ = await updates.until(lambda labels, _i: labels["va"].primary)
        await nm.mock.set_connectivity(3)  # limited: no Internet
        await updates.until(lambda _l, internet: internet is False)
        await nm.mock.deactivate(dev, office)
        labels, _ = await updates.until(lambda labels, _i: "va" not in labels)
        assert set(labels) == {"wwan0"}
        await nm.mock.stop()  # NetworkManager leaves: netlink names everything again
        assert await updates.until(lambda labels, _i: not labels) == ({}, None)
    finally:
        await watch.aclose()


async def test_no_networkmanager_on_the_bus(nm: NMWorld) -> None:
    await nm.mock.stop()
    assert not await nm_present(nm.address)
    watch = NetworkManagerWatch(Updates(), nm.address)
    try:
        assert not await watch.start()
    finally:
        await watch.aclose()
    assert not await nm_present("unix:path=/nonexistent/bus")


async def test_networkmanager_names_and_types_kernel_links(
        nm: NMWorld, namespaces: Namespaces, probes: Any) -> None:
    a, b = pair(namespaces)
    namespaces.veth(a, "vw", b, "vw-peer")
    a.ip("addr", "add", "10.11.0.1/24", "dev", "vw")
    b.ip("link", "set", "vw-peer", "up")
    await nm.mock.add_ethernet("eth_va", "va")
    await nm.mock.activate("/org/freedesktop/NetworkManager/Devices/eth_va", "Office LAN",
                           "802-3-ethernet")
    probe: NetProbe = await asyncio.to_thread(probes, a, networkmanager=True,
                                              bus_address=nm.address)
    assert [(o["connection"], o["usable"]) for o in probe.ready] == [
        ("Office LAN", True), ("vw", False)]
    # An ethernet-looking link that NetworkManager knows as a mobile connection: WAN.
    modem = await nm.mock.add_ethernet("modem0", "vw")
    telekom = await nm.mock.activate(modem, "Telekom", "gsm")
    named = await asyncio.to_thread(probe.observe, lambda o: o["connection"] == "Telekom")
    assert (named["usable"], named["type"]) == (False, CONNECTION_WAN)
    a.ip("link", "set", "vw", "up")
    (made,) = await asyncio.to_thread(probe.events)
    assert (made["method"], made["connection"], made["connection_type"]) == (
        "ConnectionMade", "Telekom", CONNECTION_WAN)
    assert made["raw"]["networkmanager"]["type"] == "gsm"
    await nm.mock.deactivate(modem, telekom)  # unnamed again: no event for a new name ...
    await asyncio.to_thread(probe.observe, lambda o: o["connection"] == "vw")
    a.ip("link", "set", "vw", "down")  # ... and the Lost repeats the name the Made gave
    (lost,) = await asyncio.to_thread(probe.events)
    assert (lost["method"], lost["connection"], lost["connection_type"]) == (
        "ConnectionLost", "Telekom", CONNECTION_WAN)


@pytest.mark.parametrize("required", [True, None])
async def test_required_networkmanager_that_is_absent(nm: NMWorld, namespaces: Namespaces,
                                                      probes: Any, required: bool | None
                                                      ) -> None:
    await nm.mock.stop()
    a, _b = pair(namespaces)
    if required:
        with pytest.raises(AssertionError, match="NetworkManager is not on the system bus"):
            await asyncio.to_thread(probes, a, networkmanager=True, bus_address=nm.address)
    else:  # when present: netlink alone serves
        probe = await asyncio.to_thread(probes, a, networkmanager=None, bus_address=nm.address)
        assert [o["connection"] for o in probe.ready] == ["va"]
