"""``/sys/class/power_supply`` attributes and kernel uevents -> :class:`PowerState`: the pure
half of the ``power_supply`` source. No I/O.

The kernel's power-supply class (Documentation/ABI/testing/sysfs-class-power) gives one directory
per supply with one value per file: ``type`` (``Mains``, ``Battery``, ``UPS``, ``USB``,
``Wireless``), ``online`` (line power: 1 when it powers the machine), ``present``, ``status``
(``Charging``, ``Discharging``, ``Not charging``, ``Full``, ``Unknown``), ``capacity`` (percent),
``capacity_level`` (``Unknown``, ``Critical``, ``Low``, ``Normal``, ``High``, ``Full``),
``scope`` (``System``, ``Device``: a mouse's or a headset's battery is ``Device``),
``energy_now``/``energy_full`` (µWh) or ``charge_now``/``charge_full`` (µAh).

How they become a power state (UPower's reading of the same files, simplified):

* Batteries are the supplies of type Battery or UPS that are present and not of scope Device.
* ``on_battery``: when the machine has line-power supplies (Mains, USB, Wireless), none of them
  online and a battery present; without any line-power supply (some tablets, a UPS-only
  desktop), a battery whose status is Discharging.
* ``percent``: one battery's ``capacity``; several: their energy (or charge) added up, else the
  mean of their capacities.
* ``low``: a battery's ``capacity_level`` is Low or Critical (the firmware's own verdict), else
  on battery with ``percent`` <= ``low_percent`` (20 by default: UPower's PercentageLow).

A value that cannot be read as documented is logged once (naming the file) and treated as
unknown; the rest of the supply still counts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..observations import PowerState

__all__ = [
    "ATTRIBUTES",
    "BATTERY_TYPES",
    "DEFAULT_LOW_PERCENT",
    "LINE_POWER_TYPES",
    "Supply",
    "Uevent",
    "parse_uevent",
    "power_state",
    "supply_from_attributes",
]

log = logging.getLogger("pysens.sources.power_supply")

#: The files read from each supply's directory.
ATTRIBUTES = ("type", "online", "present", "status", "capacity", "capacity_level", "scope",
              "energy_now", "energy_full", "charge_now", "charge_full")
LINE_POWER_TYPES = frozenset({"Mains", "USB", "Wireless"})
BATTERY_TYPES = frozenset({"Battery", "UPS"})
DEFAULT_LOW_PERCENT = 20
_LOW_LEVELS = frozenset({"Low", "Critical"})
_STATUSES = frozenset({"Unknown", "Charging", "Discharging", "Not charging", "Full"})
_LEVELS = frozenset({"Unknown", "Critical", "Low", "Normal", "High", "Full"})


@dataclass(frozen=True, slots=True)
class Supply:
    """One ``/sys/class/power_supply/NAME`` directory, its values parsed (None: absent or bad)."""

    name: str
    type: str | None = None
    online: bool | None = None
    present: bool | None = None
    status: str | None = None
    capacity: int | None = None
    capacity_level: str | None = None
    scope: str | None = None
    energy_now: int | None = None
    energy_full: int | None = None
    charge_now: int | None = None
    charge_full: int | None = None
    raw: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_line_power(self) -> bool:
        """A supply that powers the machine from outside (AC adapter, USB-C charger)."""
        return self.type in LINE_POWER_TYPES or (self.type or "").startswith("USB")

    @property
    def is_system_battery(self) -> bool:
        """A battery powering this machine (not a peripheral's), and present."""
        return (self.type in BATTERY_TYPES and self.present is not False
                and self.scope != "Device")


def _warn(warned: set[str] | None, where: str, text: str) -> None:
    if warned is None or where not in warned:
        if warned is not None:
            warned.add(where)  # once per file: a broken driver would otherwise fill the log
        log.warning("%s: %s; taken as unknown", where, text)


def supply_from_attributes(
    name: str, attrs: Mapping[str, str], *, where: str | None = None,
    warned: set[str] | None = None,
) -> Supply:
    """The :class:`Supply` that the file contents ``attrs`` (name -> text) describe.

    ``where`` names the directory in log lines (default: ``NAME``); ``warned`` holds the files
    already reported as bad (a source keeps one set)."""
    place = where or name
    values = {k: v.strip() for k, v in attrs.items() if k in ATTRIBUTES}

    def number(key: str, low: int, high: int | None = None) -> int | None:
        text = values.get(key)
        if text is None or text == "":
            return None
        try:
            value = int(text)
        except ValueError:
            _warn(warned, f"{place}/{key}", f"{text[:40]!r} is not a number")
            return None
        if value < low or (high is not None and value > high):
            _warn(warned, f"{place}/{key}", f"{value} is out of range")
            return None
        return value

    def word(key: str, allowed: frozenset[str] | None = None) -> str | None:
        text = values.get(key)
        if not text:
            return None
        if allowed is not None and text not in allowed:
            _warn(warned, f"{place}/{key}", f"{text[:40]!r} is not a documented value")
            return None
        return text

    def flag(key: str) -> bool | None:
        value = number(key, 0)
        return None if value is None else value != 0

    return Supply(
        name=name, type=word("type"), online=flag("online"), present=flag("present"),
        status=word("status", _STATUSES), capacity=number("capacity", 0, 100),
        capacity_level=word("capacity_level", _LEVELS), scope=word("scope"),
        energy_now=number("energy_now", 0), energy_full=number("energy_full", 0),
        charge_now=number("charge_now", 0), charge_full=number("charge_full", 0), raw=values,
    )


def _ratio(pairs: list[tuple[int | None, int | None]]) -> int | None:
    if not pairs or any(now is None or not full for now, full in pairs):
        return None
    now_sum = sum(now or 0 for now, _ in pairs)
    full_sum = sum(full or 0 for _, full in pairs)
    return max(0, min(100, round(100 * now_sum / full_sum)))


def _percent(batteries: list[Supply]) -> int | None:
    if len(batteries) == 1 and batteries[0].capacity is not None:
        return batteries[0].capacity
    for pairs in ([(b.energy_now, b.energy_full) for b in batteries],
                  [(b.charge_now, b.charge_full) for b in batteries]):
        ratio = _ratio(pairs)
        if ratio is not None:
            return ratio
    capacities = [b.capacity for b in batteries if b.capacity is not None]
    return round(sum(capacities) / len(capacities)) if capacities else None


def power_state(
    supplies: Iterable[Supply], *, time: datetime, low_percent: int = DEFAULT_LOW_PERCENT,
    source: str = "power_supply", existing: bool = False, host: str | None = None,
) -> PowerState:
    """The observation that these supplies (every directory under the class) describe."""
    supplies = sorted(supplies, key=lambda s: s.name)
    lines = [s for s in supplies if s.is_line_power]
    batteries = [s for s in supplies if s.is_system_battery]
    if lines:
        on_battery = bool(batteries) and not any(s.online for s in lines)
    else:
        on_battery = any(b.status == "Discharging" for b in batteries)
    percent = _percent(batteries)
    low = any(b.capacity_level in _LOW_LEVELS for b in batteries) or (
        on_battery and percent is not None and percent <= low_percent)
    raw: dict[str, Any] = {s.name: dict(s.raw) for s in supplies}
    return PowerState(time=time, source=source, on_battery=on_battery, percent=percent,
                      low=low, existing=existing, raw=raw, host=host)


@dataclass(frozen=True, slots=True)
class Uevent:
    """One kernel uevent: ``action@devpath`` and its ``KEY=value`` lines."""

    action: str
    devpath: str
    env: Mapping[str, str]

    @property
    def is_power_supply(self) -> bool:
        """About a power supply (its subsystem, or its path under ``/power_supply/``)."""
        return (self.env.get("SUBSYSTEM") == "power_supply"
                or "/power_supply/" in self.devpath)


def parse_uevent(data: bytes) -> Uevent | None:
    """A kernel uevent datagram (``action@devpath\\0KEY=value\\0...``), or None when ``data``
    is not one (libudev's own messages start with ``libudev\\0``; anything else is garbled)."""
    if data.startswith(b"libudev\0"):
        return None
    head, _, rest = data.partition(b"\0")
    action, at, devpath = head.partition(b"@")
    if not at or not action or not devpath.startswith(b"/"):
        return None
    try:
        text_action, text_path = action.decode("ascii"), devpath.decode("utf-8")
    except UnicodeDecodeError:
        return None
    env: dict[str, str] = {}
    for item in rest.split(b"\0"):
        key, eq, value = item.partition(b"=")
        if eq and key:
            env[key.decode("ascii", "replace")] = value.decode("utf-8", "replace")
    return Uevent(text_action, text_path, env)
