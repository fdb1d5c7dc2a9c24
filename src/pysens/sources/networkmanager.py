"""NetworkManager on the system bus: connection names and types for the netlink source.

When ``org.freedesktop.NetworkManager`` is on the bus, each interface is named after its
active connection (``Id``: "Office", "Telekom") and typed from its ``Type`` (gsm, cdma, pppoe,
vpn, wireguard: WAN), and the Manager's ``Connectivity`` says whether the Internet answers
(``NETWORK_ALIVE_INTERNET``). The kernel stays the trigger: NetworkManager only labels what
netlink reports, and without it netlink alone serves.

What it listens to, and why: ``PropertiesChanged`` under ``/org/freedesktop/NetworkManager``
(the Manager's ``ActiveConnections`` / ``Connectivity`` / ``PrimaryConnection``, an active
connection's ``Id`` / ``Devices`` / ``State``, a device's ``ActiveConnection``) and the bus's
``NameOwnerChanged`` for NetworkManager — subscribed before the first read. Not the Manager's
``StateChanged``: it says only a global state, and python-dbusmock's template even sends it from
the wrong object path. A burst of signals (activating a connection sends several) is read once:
signals that arrive while a read runs schedule one more read, not one each.

dbus-fast is imported inside functions (``pysens[linux]``): this module imports on every OS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from .dbus import (
    CallFailed,
    add_matches,
    bus_address_for,
    bus_errors,
    connect_bus,
    get_all,
    has_name,
    owner_rule,
    properties_rule,
)
from .netlink_map import Label
from .networkmanager_map import internet_of, labels_from

__all__ = ["NM_BUS_NAME", "NetworkManagerWatch", "nm_present"]

NM_BUS_NAME = "org.freedesktop.NetworkManager"
NM_PATH = "/org/freedesktop/NetworkManager"
NM_MANAGER = "org.freedesktop.NetworkManager"
NM_ACTIVE = "org.freedesktop.NetworkManager.Connection.Active"
NM_DEVICE = "org.freedesktop.NetworkManager.Device"
_RELEVANT = frozenset({NM_MANAGER, NM_ACTIVE, NM_DEVICE})
_RULES = (properties_rule(NM_BUS_NAME, path_namespace=NM_PATH), owner_rule(NM_BUS_NAME))

log = logging.getLogger("pysens.sources.networkmanager")

Listener = Callable[[dict[str, Label], bool | None], None]


async def nm_present(bus_address: str | None = None,
                     timeout: float = 2.0) -> bool:  # noqa: ASYNC109 - a probe must end
    """Whether NetworkManager is on the system bus (False when dbus-fast or the bus is not)."""
    try:
        import dbus_fast  # noqa: F401
    except ImportError:
        return False
    try:
        bus = await connect_bus(bus_address_for(bus_address), timeout)
    except bus_errors(TimeoutError):  # no bus here: no NetworkManager either
        return False
    try:
        return await has_name(bus, NM_BUS_NAME, activatable=False, timeout=timeout)
    except CallFailed:
        return False
    finally:
        bus.disconnect()


class NetworkManagerWatch:
    """Keeps :attr:`labels` (interface name -> connection name and type) and :attr:`internet`
    up to date, and calls ``listener(labels, internet)`` after each change."""

    def __init__(self, listener: Listener, bus_address: str | None = None, *,
                 timeout: float = 5.0) -> None:
        self.listener = listener
        self.address = bus_address_for(bus_address)
        self.timeout = timeout
        self.labels: dict[str, Label] = {}
        self.internet: bool | None = None
        self.present = False
        self._bus: Any = None
        self._reading: asyncio.Task[None] | None = None
        self._again = False

    async def start(self) -> bool:
        """Connect, subscribe and read; True when NetworkManager is on the bus now. Raises
        OSError-like exceptions when the bus itself cannot be reached."""
        bus = await connect_bus(self.address, self.timeout)
        bus.add_message_handler(self._on_message)
        try:
            await add_matches(bus, _RULES, self.timeout)
            owned = await has_name(bus, NM_BUS_NAME, activatable=False, timeout=self.timeout)
        except BaseException:
            bus.disconnect()
            raise
        self._bus = bus
        self.present = owned
        if self.present:
            await self._read(notify=False)
        return self.present

    async def aclose(self) -> None:
        """Disconnect."""
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading
        if self._bus is not None:
            self._bus.disconnect()
            self._bus = None

    def _on_message(self, msg: Any) -> None:
        if msg.message_type.name != "SIGNAL":
            return
        if msg.member == "NameOwnerChanged":
            self.present = bool(msg.body[2]) if len(msg.body) > 2 else False
            if not self.present:
                log.info("NetworkManager left the bus; naming connections by interface")
                self._publish({}, None)
                return
        elif not msg.body or msg.body[0] not in _RELEVANT:
            return  # statistics, access points, IP configs: not what names a connection
        self._schedule()

    def _schedule(self) -> None:
        if self._reading is not None and not self._reading.done():
            self._again = True
            return
        self._reading = asyncio.get_running_loop().create_task(self._read_loop())

    async def _read_loop(self) -> None:
        while True:
            self._again = False
            await self._read(notify=True)
            if not self._again:
                return

    async def _get_all(self, path: str, interface: str) -> dict[str, Any]:
        try:
            return await get_all(self._bus, NM_BUS_NAME, path, interface, self.timeout)
        except CallFailed as e:
            log.debug("reading %s: %s", path, e)
            return {}

    async def _read(self, *, notify: bool) -> None:
        if self._bus is None or not self.present:
            return
        manager = await self._get_all(NM_PATH, NM_MANAGER)
        active: dict[str, dict[str, Any]] = {}
        devices: dict[str, dict[str, Any]] = {}
        for path in manager.get("ActiveConnections") or []:
            props = await self._get_all(str(path), NM_ACTIVE)
            active[str(path)] = props
            for dev in props.get("Devices") or []:
                if str(dev) not in devices:
                    devices[str(dev)] = await self._get_all(str(dev), NM_DEVICE)
        primary = manager.get("PrimaryConnection")  # absent from older NetworkManagers
        labels = labels_from(active, devices, primary if isinstance(primary, str) else None)
        internet = internet_of(manager.get("Connectivity"))
        if not notify:
            self.labels, self.internet = labels, internet
        elif (labels, internet) != (self.labels, self.internet):
            self._publish(labels, internet)

    def _publish(self, labels: dict[str, Label], internet: bool | None) -> None:
        self.labels, self.internet = labels, internet
        try:
            self.listener(labels, internet)
        except Exception:  # a listener's bug must not end the watch
            log.exception("a NetworkManager listener failed")
