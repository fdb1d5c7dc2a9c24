"""The live UPower source: the machine's power over D-Bus, ``org.freedesktop.UPower``.

What it watches, and why:

* ``PropertiesChanged`` of the manager ``/org/freedesktop/UPower`` (``OnBattery``) and of the
  DisplayDevice (``Percentage``, ``State``, ``WarningLevel``) and the bus's ``NameOwnerChanged``
  for ``org.freedesktop.UPower``, all subscribed (AddMatch) *before* the first read, so nothing
  falls in between. Everything is pushed; there is no polling loop (UPower itself polls the
  batteries the kernel does not report, and signals what it finds).
* The values a signal carries are applied in the order the bus delivers them, replies to our
  own reads included: a read's value never overwrites a newer signal that arrived behind it.
* Coalescing: UPower (and python-dbusmock's ``SetupDisplayDevice``) sends one PropertiesChanged
  per object or even per property, and a plug or unplug touches two objects. Each message only
  updates the cached properties; the decision (a :class:`~pysens.observations.PowerState`) is
  made once the loop has polled the bus socket again and found nothing more queued — two
  ``call_soon`` hops, microseconds, never a sleep. A state is reported only when
  ``(on_battery, percent, low)`` differs from the last one reported.
* When UPower leaves and comes back (``NameOwnerChanged``) or the bus drops (then the source
  reconnects with backoff), everything is read again and a difference is reported as a change.

dbus-fast is imported inside functions: this module imports on every OS (``pysens[linux]``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from ..observations import Observation, PowerState
from .dbus import (
    DBUS,
    PROPERTIES,
    BusSource,
    CallFailed,
    add_matches,
    bus_call,
    owner_rule,
    plain,
    properties_rule,
)
from .upower_map import power_state

__all__ = ["DESCRIPTION", "UPowerSource"]

DESCRIPTION = "UPower on the system bus"
UPOWER = "org.freedesktop.UPower"
MANAGER_PATH = "/org/freedesktop/UPower"
DEVICE = "org.freedesktop.UPower.Device"
DISPLAY_PATH = "/org/freedesktop/UPower/devices/DisplayDevice"

log = logging.getLogger("pysens.sources.upower")


def _now() -> datetime:
    return datetime.now(UTC)


def _rule(path: str) -> str:
    return properties_rule(UPOWER, path=path)


class UPowerSource(BusSource):
    """A :class:`~pysens.sources.Source` of :class:`PowerState` from UPower (module text).

    ``bus_address`` defaults to ``$DBUS_SYSTEM_BUS_ADDRESS``, else the standard system bus.
    ``max_backoff`` caps the delay between reconnection attempts (seconds).
    """

    name = "upower"
    bus_name = UPOWER
    missing = "no upowerd running"

    def __init__(
        self, bus_address: str | None = None, *, host: str | None = None,
        call_timeout: float = 10.0, max_backoff: float = 5.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._init_bus(bus_address, call_timeout, max_backoff)
        self.host = host
        self._clock = clock or _now
        self._queue: asyncio.Queue[tuple[str, datetime, Any]] = asyncio.Queue()
        self._manager: dict[str, Any] = {}
        self._display: dict[str, Any] = {}
        self._display_path = DISPLAY_PATH
        # Stream order of what the bus delivered: the position of each message, of the last
        # signal that set each property, and of each awaited reply.
        self._pos = 0
        self._set_at: dict[tuple[str, str], int] = {}
        self._awaiting: set[int] = set()
        self._reply_at: dict[int, int] = {}
        self._refetch: set[str] = set()
        self._resync = False
        self._changed_at: datetime | None = None
        self._seen = False
        self._settling = False
        self._last: tuple[bool, int | None, bool] | None = None
        self._warned_body = False
        self._warned: set[tuple[str, str]] = set()
        #: Set once :meth:`watch` has subscribed and read the first state.
        self.ready = asyncio.Event()

    @classmethod
    async def probe(cls, bus_address: str | None = None, **_options: Any) -> str | None:
        """None when UPower is on (or can be started by) the system bus, else why not."""
        return await cls._probe_bus(bus_address)

    # -- the Source protocol ---------------------------------------------------------------

    async def snapshot(self) -> list[Observation]:
        """The power state now, as one ``PowerState(existing=True)``."""
        if self._bus is None:
            await self._first_connect()
        await self._read_all()
        return [self._state(self._clock(), existing=True)]

    async def watch(self) -> AsyncIterator[Observation]:
        """The state now (``existing=True``), then one observation per settled change."""
        if self._bus is None:
            await self._first_connect()
        await self._read_all()
        first = self._state(self._clock(), existing=True)
        self._remember(first)
        self.ready.set()
        yield first
        while not self._closing:
            kind, time, item = await self._queue.get()
            if kind == "stop":
                break
            if kind == "lost":
                if item is not self._bus:
                    continue  # an old connection's farewell, already handled
                if not await self._reconnect():
                    break
            elif self._resync:
                await self._read_all()
            elif self._refetch:
                for path in sorted(self._refetch):
                    await self._read(path)
            state = self._state(time)
            if self._remember(state):
                yield state

    async def aclose(self) -> None:
        """Disconnect from the bus and stop watching."""
        self._close_bus()
        self._queue.put_nowait(("stop", self._clock(), None))

    # -- state -----------------------------------------------------------------------------

    def _state(self, time: datetime, *, existing: bool = False) -> PowerState:
        return power_state(self._manager, self._display, time=time, source=self.name,
                           existing=existing, host=self.host, warned=self._warned)

    def _remember(self, state: PowerState) -> bool:
        """Whether ``state`` differs from the last one reported (and remember it)."""
        key = (state.on_battery, state.percent, state.low)
        if key == self._last:
            return False
        self._last = key
        return True

    # -- the connection --------------------------------------------------------------------

    def _rules(self) -> tuple[str, ...]:
        return (owner_rule(UPOWER), _rule(MANAGER_PATH), _rule(self._display_path))

    def _on_bus_lost(self, bus: Any) -> None:
        self._queue.put_nowait(("lost", self._clock(), bus))

    async def _reconnect(self) -> bool:
        if await self._reconnect_bus() is None:
            return False
        await self._read_all()
        return True

    # -- reading ---------------------------------------------------------------------------

    async def _read_all(self) -> None:
        """Both objects, afresh (the start, UPower back on the bus, a new bus connection)."""
        self._resync = False
        try:
            (path,) = await bus_call(self._bus, UPOWER, MANAGER_PATH, UPOWER,
                                     "GetDisplayDevice", timeout=self.call_timeout)
        except CallFailed as e:
            log.debug("GetDisplayDevice: %s; using %s", e, DISPLAY_PATH)
            path = DISPLAY_PATH
        if isinstance(path, str) and path != self._display_path:
            self._display_path = path
            try:
                await add_matches(self._bus, [_rule(path)], self.call_timeout)
            except CallFailed as e:
                log.warning("cannot subscribe to UPower's %s: %s", path, e)
        await self._read(MANAGER_PATH)
        await self._read(self._display_path)

    async def _read(self, path: str) -> None:
        """GetAll of one object, applied where no newer signal has been seen."""
        self._refetch.discard(path)
        bus = self._bus
        if bus is None or not bus.connected:
            return
        interface = UPOWER if path == MANAGER_PATH else DEVICE
        serial = bus.next_serial()
        self._awaiting.add(serial)
        try:
            (props,) = await bus_call(bus, UPOWER, path, PROPERTIES, "GetAll", "s",
                                      [interface], self.call_timeout, serial=serial)
        except CallFailed as e:
            log.warning("cannot read UPower's %s: %s", path, e)
            return
        finally:
            self._awaiting.discard(serial)
            at = self._reply_at.pop(serial, self._pos)
        values = plain(props)
        if not isinstance(values, dict):
            log.warning("UPower's %s: GetAll answered %r, not a dictionary", path, values)
            return
        target = self._manager if path == MANAGER_PATH else self._display
        for name, value in values.items():
            if self._set_at.get((path, name), -1) <= at:
                target[name] = value

    # -- what the bus delivers (synchronously, in order) ---------------------------------------

    def _on_bus_message(self, bus: Any, msg: Any) -> None:
        if bus is not self._bus and self._bus is not None:
            return
        self._pos += 1
        kind = msg.message_type.name
        if kind in ("METHOD_RETURN", "ERROR"):
            if msg.reply_serial in self._awaiting:
                self._reply_at[msg.reply_serial] = self._pos
            return
        if kind != "SIGNAL":
            return
        body = msg.body
        if msg.interface == DBUS and msg.member == "NameOwnerChanged":
            if len(body) > 2 and body[0] == UPOWER:
                if body[2]:
                    log.info("%s is on the bus (%s)", UPOWER, body[2])
                    self._resync = True
                    self._touch()
                else:
                    log.warning("%s left the bus; keeping its last state until it is back",
                                UPOWER)
            return
        if msg.interface != PROPERTIES or msg.member != "PropertiesChanged":
            return
        if msg.path == MANAGER_PATH:
            target, interface = self._manager, UPOWER
        elif msg.path == self._display_path:
            target, interface = self._display, DEVICE
        else:
            return
        if len(body) < 2 or not isinstance(body[1], dict) or not isinstance(body[0], str):
            if not self._warned_body:
                self._warned_body = True
                log.warning("UPower's %s: PropertiesChanged with body %r ignored", msg.path,
                            body)
            return
        if body[0] != interface:
            return
        for name, value in body[1].items():
            target[name] = plain(value)
            self._set_at[(msg.path, name)] = self._pos
        if len(body) > 2 and body[2]:
            self._refetch.add(msg.path)  # invalidated: the values must be read
        self._touch()

    def _touch(self) -> None:
        if self._changed_at is None:
            self._changed_at = self._clock()
        self._seen = True
        if not self._settling:
            self._settling = True
            asyncio.get_running_loop().call_soon(self._settle)

    def _settle(self) -> None:
        # Runs once per loop iteration while messages keep coming: each iteration polls the
        # bus socket first, so when nothing arrived since the last hop, nothing is queued.
        if self._seen:
            self._seen = False
            asyncio.get_running_loop().call_soon(self._settle)
            return
        self._settling = False
        time, self._changed_at = self._changed_at or self._clock(), None
        self._queue.put_nowait(("settled", time, None))
