"""A private system-type dbus-daemon with python-dbusmock's ``upower`` template, driven with
dbus-fast, and a collector that runs a power source through the tracker.

The mock runs as a separate process under Debian's /usr/bin/python3 (python3-dbusmock), like the
logind mock in :mod:`dbus_fixtures`. Its quirks, kept as they are because real UPower shares
them in part: ``SetupDisplayDevice`` and ``SetDeviceProperties`` emit one PropertiesChanged per
property (real UPower: one per object and main-loop turn), and a plug or unplug is two changes
on two objects (the manager's ``OnBattery``, the DisplayDevice's ``State``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Variant
from dbus_fast.aio import MessageBus

from dbus_fixtures import DbusMock, PrivateBus
from pysens.events import SensEvent
from pysens.observations import Observation
from pysens.sources import Source
from pysens.sources.upower import UPowerSource
from pysens.tracker import Tracker

UPOWER = "org.freedesktop.UPower"
MANAGER_PATH = "/org/freedesktop/UPower"
DISPLAY = "/org/freedesktop/UPower/devices/DisplayDevice"
DEVICE = "org.freedesktop.UPower.Device"
MOCK = "org.freedesktop.DBus.Mock"
PROPERTIES = "org.freedesktop.DBus.Properties"
SYSTEM_PYTHON = "/usr/bin/python3"

# UPower's numbers (up-types.h)
KIND_BATTERY = 2
CHARGING, DISCHARGING, FULL = 1, 2, 4
LEVEL_NONE, LEVEL_LOW, LEVEL_CRITICAL = 1, 3, 4

_TYPES = {"Percentage": "d", "Energy": "d", "EnergyFull": "d", "EnergyRate": "d",
          "TimeToEmpty": "x", "TimeToFull": "x", "IsPresent": "b", "IconName": "s",
          "Type": "u", "State": "u", "WarningLevel": "u"}


def variants(props: dict[str, Any]) -> dict[str, Variant]:
    """UPower device properties with their documented D-Bus types."""
    return {k: v if isinstance(v, Variant) else Variant(_TYPES[k], v) for k, v in props.items()}


class MockUPower(DbusMock):
    """The upower mock process and a client connection that drives it."""

    what = "upower"

    def __init__(self, address: str, log: Path) -> None:
        super().__init__(address, log, UPOWER)

    async def start(self, *, on_battery: bool = False) -> None:
        """Start the mock (``OnBattery`` as given, a DisplayDevice with no battery yet) and
        wait until it owns org.freedesktop.UPower."""
        await self.launch(["-m", "dbusmock", "--system", "--template", "upower",
                           "--parameters", json.dumps({"OnBattery": on_battery})])

    # -- what UPower does ------------------------------------------------------------------

    async def set_on_battery(self, value: bool) -> None:
        """The manager's OnBattery changes (one PropertiesChanged)."""
        await self.call(MANAGER_PATH, PROPERTIES, "Set", "ssv",
                        [UPOWER, "OnBattery", Variant("b", value)])

    async def setup_display(self, *, percentage: float, state: int = DISCHARGING,
                            warning_level: int = LEVEL_NONE, present: bool = True) -> None:
        """``SetupDisplayDevice``: a battery behind the DisplayDevice, eleven signals."""
        await self.call(MANAGER_PATH, MOCK, "SetupDisplayDevice", "uuddddxxbsu", [
            KIND_BATTERY, state, percentage, percentage, 100.0, 10.0, 3600, 0, present,
            "battery", warning_level,
        ])

    async def set_display(self, **props: Any) -> None:
        """``SetDeviceProperties`` on the DisplayDevice: one PropertiesChanged per property,
        in the order given."""
        await self.call(MANAGER_PATH, MOCK, "SetDeviceProperties", "oa{sv}",
                        [DISPLAY, variants(props)])

    async def unplug(self) -> None:
        """AC goes away as UPower reports it: OnBattery, then the battery discharges."""
        await self.set_on_battery(True)
        await self.set_display(State=DISCHARGING)

    async def plug(self) -> None:
        """AC comes back: OnBattery false, then the battery charges."""
        await self.set_on_battery(False)
        await self.set_display(State=CHARGING)


def blocking(address: str, action: Callable[[MockUPower], Awaitable[None]]) -> None:
    """Run ``action`` on a fresh client in another thread and wait for it *without* letting the
    caller's event loop run: whatever the mock emits meanwhile is queued on the source's socket
    when the loop resumes (a deterministic "many messages at once")."""
    failure: list[BaseException] = []

    async def run() -> None:
        mock = MockUPower(address, Path(os.devnull))
        mock.client = await MessageBus(bus_address=address).connect()
        try:
            await action(mock)
            # A round trip to the bus after the mock's reply: its signals, sent before that
            # reply, have been routed to every subscriber by then.
            await mock._send("org.freedesktop.DBus", "/org/freedesktop/DBus",
                             "org.freedesktop.DBus", "GetId", "", [])
        finally:
            mock.client.disconnect()

    def main() -> None:
        try:
            asyncio.run(run())
        except BaseException as e:  # noqa: BLE001 - handed back, raised in the test's thread
            failure.append(e)

    thread = threading.Thread(target=main)
    thread.start()
    thread.join(10)
    if failure:
        raise failure[0]


class PowerCollector:
    """Runs a power source through a tracker in a task; tests await what it produces."""

    def __init__(self, source: Source, tracker: Tracker) -> None:
        self.source = source
        self.tracker = tracker
        self.observations: list[Observation] = []
        self.events: list[SensEvent] = []
        self._queue: asyncio.Queue[SensEvent] = asyncio.Queue()
        self._seen = asyncio.Event()
        self.ready = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for obs in self.source.watch():
            assert not isinstance(obs, SensEvent)
            self.observations.append(obs)
            self._seen.set()
            self.ready.set()
            for event in self.tracker.feed(obs):
                self.events.append(event)
                self._queue.put_nowait(event)

    async def _wait(self, fut: Awaitable[Any], timeout: float, what: str) -> Any:  # noqa: ASYNC109 - a test's hang guard
        task = asyncio.ensure_future(fut)
        done, _ = await asyncio.wait({task, self.task}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if task not in done:
            task.cancel()
            if self.task.done():
                self.task.result()
            raise AssertionError(what)
        return task.result()

    async def started(self) -> None:
        """Wait for the source's first observation (its look at the system)."""
        await self._wait(self.ready.wait(), 10, "the source reported nothing within 10 s")

    async def next(self, n: int = 1, timeout: float = 10.0) -> list[SensEvent]:  # noqa: ASYNC109 - a test's hang guard
        """The next ``n`` events (fails when they do not come within ``timeout``)."""
        out: list[SensEvent] = []
        for _ in range(n):
            out.append(await self._wait(self._queue.get(), timeout,
                                        f"expected {n} event(s), got {out} then nothing"))
        return out

    async def observation(self, timeout: float = 10.0) -> Observation:  # noqa: ASYNC109 - a test's hang guard
        """Wait for the next observation after the ones already seen."""
        count = len(self.observations)
        while len(self.observations) == count:
            self._seen.clear()
            await self._wait(self._seen.wait(), timeout, "no further observation came")
        return self.observations[count]

    def pending(self) -> list[SensEvent]:
        """Events produced but not yet taken with :meth:`next`."""
        out = []
        while not self._queue.empty():
            out.append(self._queue.get_nowait())
        return out

    async def close(self) -> None:
        """Stop the task and the source."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.source.aclose()


class UPowerWorld:
    """A private bus with the upower mock on it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.bus = PrivateBus(directory)
        self.mock = MockUPower(self.bus.address, directory / "dbusmock.log")
        self.collectors: list[PowerCollector] = []

    @property
    def address(self) -> str:
        """The bus address (for DBUS_SYSTEM_BUS_ADDRESS)."""
        return self.bus.address

    async def watch(self, *, include_existing: bool = False) -> PowerCollector:
        """A started collector over a fresh UPower source on this bus."""
        source = UPowerSource(self.address, max_backoff=0.2)
        c = PowerCollector(source, Tracker(host="testhost", include_existing=include_existing))
        self.collectors.append(c)
        await c.started()
        return c

    async def restart_mock(self, *, on_battery: bool) -> None:
        """UPower leaves the bus and a fresh one (with a new state) takes its name."""
        await self.mock.stop()
        self.mock = MockUPower(self.bus.address, self.directory / "dbusmock.log")
        await self.mock.start(on_battery=on_battery)

    async def close(self) -> None:
        """Stop everything this world started."""
        for c in self.collectors:
            await c.close()
        await self.mock.stop()
        self.bus.stop()


@pytest.fixture
async def upower(tmp_path: Path) -> AsyncIterator[UPowerWorld]:
    """A private system bus with the python-dbusmock upower template on it (AC, no battery)."""
    world = UPowerWorld(tmp_path)
    world.bus.start()
    try:
        await world.mock.start()
        yield world
    finally:
        await world.close()
