"""UPower properties -> :class:`~pysens.observations.PowerState`: the pure half of the
``upower`` source. No I/O and no D-Bus import.

The live source (:mod:`pysens.sources.upower`) keeps the last known properties of two objects
(unwrapped into plain Python): the manager ``/org/freedesktop/UPower`` (``OnBattery``) and the
DisplayDevice, UPower's composite of the system batteries (``Percentage``, ``State``,
``WarningLevel``, ``IsPresent``, ``Type``). :func:`power_state` turns them into one observation;
the tracker decides what it means.

* ``on_battery``: the manager's ``OnBattery``; a missing or non-boolean value counts as AC
  (a desktop's UPower says False; never invent a battery spell).
* ``percent``: the DisplayDevice's ``Percentage`` rounded to a whole number (SENS reports a
  DWORD), clamped to 0-100; None when no battery is present (``IsPresent`` false, or ``Type``
  neither battery 2 nor UPS 3) or the value is not a number.
* ``low``: ``WarningLevel`` >= 3 (UP_DEVICE_LEVEL_LOW; 4 critical, 5 action are lower still).
  UPower computes it from its configuration (PercentageLow, 20 % by default, or TimeLow), so
  pysens keeps no threshold of its own here.

A property of the wrong type is reported (one log line naming the object, the property and the
value; once per source) and treated as unknown; the rest keeps working.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import datetime
from enum import IntEnum
from typing import Any

from ..observations import PowerState

__all__ = [
    "DISPLAY_PROPERTIES",
    "MANAGER_PROPERTIES",
    "DeviceKind",
    "DeviceState",
    "WarningLevel",
    "percent_from",
    "power_state",
]

log = logging.getLogger("pysens.sources.upower")


class DeviceState(IntEnum):
    """UPower's ``State`` (UpDeviceState)."""

    UNKNOWN = 0
    CHARGING = 1
    DISCHARGING = 2
    EMPTY = 3
    FULLY_CHARGED = 4
    PENDING_CHARGE = 5
    PENDING_DISCHARGE = 6


class WarningLevel(IntEnum):
    """UPower's ``WarningLevel`` (UpDeviceLevel); DISCHARGING is only used for UPSes."""

    UNKNOWN = 0
    NONE = 1
    DISCHARGING = 2
    LOW = 3
    CRITICAL = 4
    ACTION = 5


class DeviceKind(IntEnum):
    """The UPower ``Type`` values that mean "a battery powering this machine"."""

    UNKNOWN = 0
    LINE_POWER = 1
    BATTERY = 2
    UPS = 3


#: What the source keeps of each object (and puts in ``raw``).
MANAGER_PROPERTIES = ("OnBattery",)
DISPLAY_PROPERTIES = ("Type", "State", "Percentage", "WarningLevel", "IsPresent")

def _bad(where: str, name: str, value: Any, warned: set[tuple[str, str]] | None) -> None:
    key = (where, name)
    if warned is None or key not in warned:  # once: a broken daemon would fill the log
        if warned is not None:
            warned.add(key)
        log.warning("UPower %s: %s is %r, not what UPower documents; taken as unknown",
                    where, name, value)


def _number(props: Mapping[str, Any], where: str, name: str,
            warned: set[tuple[str, str]] | None) -> float | None:
    value = props.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        _bad(where, name, value, warned)
        return None
    return float(value)


def percent_from(value: float | None) -> int | None:
    """A UPower percentage (a double) as SENS's whole ``dwBatteryLifePercent``, 0-100."""
    if value is None or math.isnan(value):
        return None
    return max(0, min(100, round(value)))


def power_state(
    manager: Mapping[str, Any], display: Mapping[str, Any], *, time: datetime,
    source: str = "upower", existing: bool = False, host: str | None = None,
    warned: set[tuple[str, str]] | None = None,
) -> PowerState:
    """The observation that UPower's ``manager`` and DisplayDevice ``display`` properties
    (plain values, any of them possibly missing) describe. ``warned``: the ``(object,
    property)`` pairs already reported as bad (a source keeps one set: one line each)."""
    on_battery = manager.get("OnBattery", False)
    if not isinstance(on_battery, bool):
        _bad("manager", "OnBattery", on_battery, warned)
        on_battery = False
    present = display.get("IsPresent", True)
    if not isinstance(present, bool):
        _bad("DisplayDevice", "IsPresent", present, warned)
        present = False
    kind = _number(display, "DisplayDevice", "Type", warned)
    battery = present and kind in (None, DeviceKind.BATTERY, DeviceKind.UPS)
    charge = _number(display, "DisplayDevice", "Percentage", warned)
    percent = percent_from(charge) if battery else None
    level = _number(display, "DisplayDevice", "WarningLevel", warned)
    low = battery and level is not None and level >= WarningLevel.LOW
    raw: dict[str, Any] = {k: manager[k] for k in MANAGER_PROPERTIES if k in manager}
    raw.update({k: display[k] for k in DISPLAY_PROPERTIES if k in display})
    return PowerState(time=time, source=source, on_battery=on_battery, percent=percent, low=low,
                      existing=existing, raw=raw, host=host)
