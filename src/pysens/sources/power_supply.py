"""The sysfs power source: ``/sys/class/power_supply`` plus kernel uevents, for hosts without
UPower (servers, minimal installs, containers that see the host's sysfs).

What it watches, and why:

* A ``NETLINK_KOBJECT_UEVENT`` socket bound to group 1 (the kernel's own uevents, before udev),
  opened *before* the first read so nothing falls in between. Any uevent about a power supply
  (``change@/devices/.../power_supply/BAT0``, and ``add`` / ``remove`` when one comes or goes)
  makes the source read every supply again. The datagrams already queued are all taken before
  that read, so a plug (one uevent for the adapter, one for the battery) is read once.
* A uevent only says "look again": the state always comes from the files. So a datagram from
  another sender (only root can send to this group, and the kernel's own carry sender port 0) is
  harmless and is accepted, which is also how the tests inject one in a private network
  namespace.
* The re-read timer. The kernel pushes what matters for OnBatteryPower / OnACPower: the adapter's
  ``online`` and the battery's ``status`` change with a uevent (power_supply_changed()). It does
  not push every percentage step: ACPI batteries notify on status changes and on the firmware's
  alarm, many drivers never, which is why UPower polls batteries (every 30 s while discharging,
  120 s otherwise: up-constants.h). Only one SENS event depends on a percentage the kernel may
  not push: BatteryLow. So the source re-reads every ``reread_interval`` seconds (default 30, as
  UPower) only while on battery and not yet low, the one state where a silent percentage change
  can mean an event. On AC, and once low, nothing is read until a uevent comes (the next event
  there, OnACPower, comes with one). ``reread_interval=None`` turns it off.
* Reading sysfs batteries may call into the firmware (ACPI, the embedded controller) and take
  milliseconds: the reads run in a thread.

Linux only at run time (``probe`` says why elsewhere); the module imports on every OS.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..observations import Observation, PowerState
from . import SourceUnavailable
from .power_supply_map import (
    ATTRIBUTES,
    DEFAULT_LOW_PERCENT,
    Supply,
    parse_uevent,
    power_state,
    supply_from_attributes,
)

__all__ = ["DEFAULT_ROOT", "DESCRIPTION", "PowerSupplySource", "open_uevent_socket"]

DESCRIPTION = "the kernel's power supplies (/sys/class/power_supply and uevents)"
DEFAULT_ROOT = "/sys/class/power_supply"
NETLINK_KOBJECT_UEVENT = 15
UEVENT_KERNEL_GROUP = 1
log = logging.getLogger("pysens.sources.power_supply")


def _now() -> datetime:
    return datetime.now(UTC)


def open_uevent_socket() -> socket.socket:
    """A non-blocking socket receiving the kernel's uevents (group 1). Raises OSError."""
    if not sys.platform.startswith("linux"):
        raise OSError(errno.ENOSYS, "kernel uevents are a Linux facility")
    family = socket.AF_NETLINK  # type: ignore[attr-defined,unused-ignore]
    sock = socket.socket(family, socket.SOCK_DGRAM, NETLINK_KOBJECT_UEVENT)
    try:
        # A burst (a dock with several supplies) must not overflow before we drain it; an
        # overflow (ENOBUFS) is still handled: it only means "read everything again".
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((0, UEVENT_KERNEL_GROUP))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def read_supplies(root: Path, warned: set[str] | None = None) -> list[Supply]:
    """Every supply under ``root`` now (a supply that vanishes while read is skipped)."""
    supplies = []
    try:
        entries = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    for name in entries:
        directory = root / name
        attrs: dict[str, str] = {}
        for attr in ATTRIBUTES:
            try:
                attrs[attr] = (directory / attr).read_text(errors="replace")
            except FileNotFoundError:
                continue
            except OSError as e:  # ENODEV/EIO: the battery is gone or the firmware failed
                log.debug("%s/%s: %s", directory, attr, e)
        if attrs:
            supplies.append(supply_from_attributes(name, attrs, where=str(directory),
                                                   warned=warned))
    return supplies


class PowerSupplySource:
    """A :class:`~pysens.sources.Source` of :class:`PowerState` from sysfs (module text).

    ``root``: the class directory (tests use a temporary tree). ``low_percent``: the level under
    which a discharging battery is low when the driver gives no ``capacity_level`` verdict.
    ``reread_interval``: seconds between re-reads while on battery and not low (None: never).
    ``uevents``: a function opening the uevent socket (the default binds group 1 here).
    """

    name = "power_supply"

    def __init__(
        self, root: str | os.PathLike[str] = DEFAULT_ROOT, *, host: str | None = None,
        low_percent: int = DEFAULT_LOW_PERCENT, reread_interval: float | None = 30.0,
        uevents: Callable[[], socket.socket] = open_uevent_socket,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.root = Path(root)
        self.host = host
        self.low_percent = low_percent
        self.reread_interval = reread_interval
        self._open_uevents = uevents
        self._clock = clock or _now
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[str, datetime]] = asyncio.Queue()
        self._pending = False
        self._timer: asyncio.TimerHandle | None = None
        self._last: tuple[bool, int | None, bool] | None = None
        self._closing = False
        self._warned: set[str] = set()
        self._warned_datagram = False
        #: How many times the files were read (the first look included).
        self.reads = 0

    @classmethod
    async def probe(cls, root: str | os.PathLike[str] = DEFAULT_ROOT,
                    **_options: Any) -> str | None:
        """None when the class directory and the kernel's uevents are there, else why not."""
        if not sys.platform.startswith("linux"):
            return f"needs Linux (sysfs power supplies); this is {sys.platform}"
        if not await asyncio.to_thread(Path(root).is_dir):
            return f"{root} does not exist (no power-supply class in this kernel)"
        try:
            open_uevent_socket().close()
        except OSError as e:
            return f"cannot listen to kernel uevents ({e.strerror or e})"
        return None

    @property
    def rereading(self) -> bool:
        """Whether the re-read timer is armed now (on battery and not low)."""
        return self._timer is not None

    # -- the Source protocol ---------------------------------------------------------------

    async def snapshot(self) -> list[Observation]:
        """The power state now, as one ``PowerState(existing=True)``."""
        return [await self._read(self._clock(), existing=True)]

    async def watch(self) -> AsyncIterator[Observation]:
        """The state now (``existing=True``), then one observation per settled change."""
        self._loop = asyncio.get_running_loop()
        try:
            self._sock = self._open_uevents()
        except OSError as e:
            raise SourceUnavailable(f"cannot listen to kernel uevents ({e.strerror or e})"
                                    ) from None
        self._loop.add_reader(self._sock.fileno(), self._on_readable)
        try:
            first = await self._read(self._clock(), existing=True)
            self._remember(first)
            self._arm(first)
            yield first
            while not self._closing:
                kind, time = await self._queue.get()
                if kind == "stop":
                    break
                self._pending = False
                state = await self._read(time)
                self._arm(state)
                if self._remember(state):
                    yield state
        finally:
            self._release()

    async def aclose(self) -> None:
        """Stop listening and cancel the re-read timer."""
        self._closing = True
        self._release()
        self._queue.put_nowait(("stop", self._clock()))

    # -- internals -------------------------------------------------------------------------

    def _release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        sock, self._sock = self._sock, None
        if sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
            sock.close()

    async def _read(self, time: datetime, *, existing: bool = False) -> PowerState:
        supplies = await asyncio.to_thread(read_supplies, self.root, self._warned)
        self.reads += 1
        return power_state(supplies, time=time, low_percent=self.low_percent,
                           source=self.name, existing=existing, host=self.host)

    def _remember(self, state: PowerState) -> bool:
        key = (state.on_battery, state.percent, state.low)
        if key == self._last:
            return False
        self._last = key
        return True

    def _arm(self, state: PowerState) -> None:
        """The re-read timer: on only while a silent percentage change could mean BatteryLow."""
        wanted = (self.reread_interval is not None and state.on_battery and not state.low
                  and not self._closing)
        if not wanted:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        if self._timer is None and self._loop is not None and self.reread_interval is not None:
            self._timer = self._loop.call_later(self.reread_interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._changed("reread")

    def _changed(self, kind: str) -> None:
        if not self._pending:
            self._pending = True
            self._queue.put_nowait((kind, self._clock()))

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        relevant = False
        while True:  # take every datagram already queued: one read for the whole burst
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # overflowed: something was missed, read all
                    log.debug("uevent socket overflowed; reading every supply again")
                    relevant = True
                    continue
                log.warning("uevent socket: %s; reading every supply again", e)
                relevant = True
                break
            event = parse_uevent(data)
            if event is None:
                if not data.startswith(b"libudev\0") and not self._warned_datagram:
                    self._warned_datagram = True
                    log.warning("uevent socket: a %d-byte datagram that is not a kernel "
                                "uevent (%r...), ignored", len(data), data[:32])
                continue
            relevant = relevant or event.is_power_supply
        if relevant:
            self._changed("uevent")
