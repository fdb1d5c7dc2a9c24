"""python-dbusmock's NetworkManager template on a private system bus, driven with dbus-fast.

The start-up is the one tests/dbus_fixtures.py uses for logind (its :class:`PrivateBus`, the
mock under Debian's /usr/bin/python3 as a separate process). The template lacks the Manager's
``PrimaryConnection``: :meth:`MockNetworkManager.start` adds it with the mock's ``AddProperty``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Variant

from dbus_fixtures import DbusMock, PrivateBus

NM = "org.freedesktop.NetworkManager"
NM_PATH = "/org/freedesktop/NetworkManager"
SETTINGS_PATH = NM_PATH + "/Settings"
SETTINGS = NM + ".Settings"
MOCK = "org.freedesktop.DBus.Mock"
ACTIVATED = 2  # NM_ACTIVE_CONNECTION_STATE_ACTIVATED
DEVICE_ACTIVATED = 100


class MockNetworkManager(DbusMock):
    """The mock process and a client connection that drives it."""

    what = "NetworkManager"

    def __init__(self, address: str, log: Path) -> None:
        super().__init__(address, log, NM)

    async def start(self) -> None:
        """Start the mock, wait for its name, add PrimaryConnection ("/": none)."""
        await self.launch(["-m", "dbusmock", "--system", "--template", "networkmanager"])
        await self.mock("AddProperty", "ssv", [NM, "PrimaryConnection", Variant("o", "/")])

    async def mock(self, member: str, signature: str = "", body: list[Any] | None = None
                   ) -> list[Any]:
        """A call to the template's Mock interface on the Manager object."""
        return await self._send(NM, NM_PATH, MOCK, member, signature, body or [])

    async def add_ethernet(self, device: str, iface: str) -> str:
        """An activated wired device for interface ``iface``; its object path."""
        (path,) = await self.mock("AddEthernetDevice", "ssi", [device, iface, DEVICE_ACTIVATED])
        return str(path)

    async def activate(self, device_path: str, conn_id: str, conn_type: str) -> str:
        """A saved connection ``conn_id`` of ``conn_type``, activated on the device; the
        active connection's path."""
        settings = {"connection": {"id": Variant("s", conn_id), "type": Variant("s", conn_type),
                                   "uuid": Variant("s", str(uuid.uuid4()))}}
        (conn,) = await self._send(NM, SETTINGS_PATH, SETTINGS, "AddConnection", "a{sa{sv}}",
                                   [settings])
        name = conn_id.replace(" ", "_")
        (active,) = await self.mock("AddActiveConnection", "assssu",
                                    [[device_path], str(conn), "/", name, ACTIVATED])
        return str(active)

    async def deactivate(self, device_path: str, active_path: str) -> None:
        """The connection goes down on the device."""
        await self.mock("RemoveActiveConnection", "ss", [device_path, active_path])

    async def set_connectivity(self, value: int) -> None:
        """Manager Connectivity (4: full)."""
        await self.mock("SetConnectivity", "u", [value])

    async def set_primary(self, active_path: str) -> None:
        """Manager PrimaryConnection."""
        await self.mock("SetProperty", "sssv",
                        [NM_PATH, NM, "PrimaryConnection", Variant("o", active_path)])


class NMWorld:
    """A private bus with the NetworkManager mock on it."""

    def __init__(self, directory: Path) -> None:
        self.bus = PrivateBus(directory)
        self.mock = MockNetworkManager(self.bus.address, directory / "nm-mock.log")

    @property
    def address(self) -> str:
        """The bus address (DBUS_SYSTEM_BUS_ADDRESS for the client)."""
        return self.bus.address


@pytest.fixture
async def nm(tmp_path: Path) -> AsyncIterator[NMWorld]:
    """A private system bus with python-dbusmock's networkmanager template on it."""
    world = NMWorld(tmp_path)
    world.bus.start()
    try:
        await world.mock.start()
        yield world
    finally:
        await world.mock.stop()
        world.bus.stop()
