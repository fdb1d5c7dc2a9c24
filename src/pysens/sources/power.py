"""The ``power`` source (ISensOnNow): UPower when it is on the system bus, else the kernel's
power supplies (sysfs and uevents).

UPower first because it already merges every battery, knows the vendor quirks and polls what
the kernel does not push; the sysfs source is the fallback for hosts without it. The choice is
made once, when the source starts (:attr:`PowerSource.chosen` says which, and why). The
observations keep the mechanism's own name as their ``source`` (``upower``, ``power_supply``).
On Windows it is :mod:`pysens.sources.win_power` (power-setting notifications).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from typing import Any

from ..observations import Observation
from . import LiveKind, SourceItem, SourceUnavailable
from .power_supply import DEFAULT_ROOT, PowerSupplySource
from .power_supply import DESCRIPTION as SYSFS_DESCRIPTION
from .power_supply_map import DEFAULT_LOW_PERCENT
from .upower import DESCRIPTION as UPOWER_DESCRIPTION
from .upower import UPowerSource
from .win_power import DESCRIPTION as WIN_DESCRIPTION
from .win_power import Win32PowerApi, WinPowerSource

__all__ = ["DESCRIPTION", "PowerSource", "open_power", "probe"]

DESCRIPTION = "the machine's power (UPower, else /sys/class/power_supply)"


class PowerSource:
    """A :class:`~pysens.sources.Source` of power states from UPower or, without it, sysfs.

    ``bus_address``: the system bus (default ``$DBUS_SYSTEM_BUS_ADDRESS``, else the standard
    one). ``root``, ``low_percent``, ``reread_interval``: the sysfs source's options.
    """

    name = "power"

    def __init__(
        self, *, bus_address: str | None = None, root: str | os.PathLike[str] = DEFAULT_ROOT,
        host: str | None = None, low_percent: int = DEFAULT_LOW_PERCENT,
        reread_interval: float | None = 30.0,
    ) -> None:
        self.bus_address = bus_address
        self.root = root
        self.host = host
        self.low_percent = low_percent
        self.reread_interval = reread_interval
        self.inner: UPowerSource | PowerSupplySource | WinPowerSource | None = None
        #: ``(name, why)`` of the mechanism in use, once started.
        self.chosen: tuple[str, str] | None = None

    @classmethod
    async def probe(cls, bus_address: str | None = None,
                    root: str | os.PathLike[str] = DEFAULT_ROOT,
                    **_options: Any) -> str | None:
        """None when UPower or the sysfs power supplies (on Windows: the power-setting API)
        can be used here, else the reasons."""
        if sys.platform == "win32":
            from .win_power import probe as win_probe

            return await win_probe()
        why_upower = await UPowerSource.probe(bus_address)
        if why_upower is None:
            return None
        why_sysfs = await PowerSupplySource.probe(root)
        if why_sysfs is None:
            return None
        return f"neither UPower ({why_upower}) nor sysfs ({why_sysfs}) can be used"

    async def _pick(self) -> UPowerSource | PowerSupplySource | WinPowerSource:
        if self.inner is not None:
            return self.inner
        if sys.platform == "win32":
            self.inner = WinPowerSource(Win32PowerApi(), host=self.host)
            self.chosen = ("win_power", WIN_DESCRIPTION)
            return self.inner
        why_upower = await UPowerSource.probe(self.bus_address)
        inner: UPowerSource | PowerSupplySource
        if why_upower is None:
            inner = UPowerSource(self.bus_address, host=self.host)
            self.chosen = ("upower", UPOWER_DESCRIPTION)
        else:
            why_sysfs = await PowerSupplySource.probe(self.root)
            if why_sysfs is not None:
                raise SourceUnavailable(f"no power source here: UPower: {why_upower}; "
                                        f"sysfs: {why_sysfs}")
            inner = PowerSupplySource(self.root, host=self.host, low_percent=self.low_percent,
                                      reread_interval=self.reread_interval)
            self.chosen = ("power_supply", f"{SYSFS_DESCRIPTION}; UPower: {why_upower}")
        self.inner = inner
        return inner

    async def snapshot(self) -> list[Observation]:
        """The power state now, as one ``PowerState(existing=True)``."""
        return await (await self._pick()).snapshot()

    async def watch(self) -> AsyncIterator[SourceItem]:
        """The state now (``existing=True``), then one observation per settled change."""
        inner = await self._pick()
        async for obs in inner.watch():
            yield obs

    async def aclose(self) -> None:
        """Stop the mechanism in use."""
        if self.inner is not None:
            await self.inner.aclose()


async def probe(**options: Any) -> str | None:
    """The registry's probe: :meth:`PowerSource.probe`."""
    return await PowerSource.probe(**options)


def open_power(
    *, bus_address: str | None = None, root: str | os.PathLike[str] = DEFAULT_ROOT,
    host: str | None = None, low_percent: int = DEFAULT_LOW_PERCENT,
    reread_interval: float | None = 30.0, **_: Any,
) -> PowerSource:
    """The ``power`` source (UPower, else sysfs); nothing is fired for the state at start
    unless the tracker includes existing states."""
    return PowerSource(bus_address=bus_address, root=root, host=host, low_percent=low_percent,
                       reread_interval=reread_interval)


#: The registry's entry (``sens watch --source power``; the daemon's ``[serve] power``).
LIVE = LiveKind(DESCRIPTION, open_power, probe)
