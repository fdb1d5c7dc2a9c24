"""Windows power settings -> :class:`~pysens.observations.PowerState`: the pure half of the
``win_power`` source. No I/O and no ctypes (buffers are decoded with :mod:`struct`).

What Windows reports (learn.microsoft.com, "Power Setting GUIDs", ``POWERBROADCAST_SETTING``,
``SYSTEM_POWER_STATUS``):

* ``PowerSettingRegisterNotification(GUID, DEVICE_NOTIFY_CALLBACK, ...)`` calls back with a
  ``POWERBROADCAST_SETTING`` {GUID PowerSetting (16 bytes); DWORD DataLength; UCHAR Data[]} at
  once with the current value, then on every change (callback type PBT_POWERSETTINGCHANGE).
  ``GUID_ACDC_POWER_SOURCE``: a DWORD, 0 AC (PoAc), 1 battery (PoDc), 2 a short-term source
  such as a UPS (PoHot). ``GUID_BATTERY_PERCENTAGE_REMAINING``: a DWORD, 0-100.
* ``GetSystemPowerStatus``: {BYTE ACLineStatus (0 offline, 1 online, 255 unknown); BYTE
  BatteryFlag (1 high, 2 low, 4 critical, 8 charging, 128 no system battery, 255 unknown);
  BYTE BatteryLifePercent (0-100, 255 unknown); BYTE SystemStatusFlag; DWORD BatteryLifeTime;
  DWORD BatteryFullLifeTime} — 12 bytes; the state before the first callbacks, and the only
  place that says "no system battery".

The rules:

* ``on_battery``: ACDC source 1 or 2 (a UPS-powered machine is on a limited supply too); before
  any callback, ACLineStatus 0.
* ``percent``: the last BATTERY_PERCENTAGE_REMAINING (before one, BatteryLifePercent); None when
  BatteryFlag says there is no system battery or the value is unknown.
* ``low``: ``percent`` <= the active power scheme's "Low battery level" (the battery subgroup's
  BATLEVELLOW, its on-battery value: what makes Windows show its own low-battery warning; 10 %
  by default), read again with every percentage change because the user may change it.
  GetSystemPowerStatus's BatteryFlag "low" is not used: it is a fixed "under 33 %".
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..observations import PowerState

__all__ = [
    "DEFAULT_LOW_LEVEL",
    "GUID_ACDC_POWER_SOURCE",
    "GUID_BATLEVEL_LOW",
    "GUID_BATTERY_PERCENTAGE_REMAINING",
    "GUID_BATTERY_SUBGROUP",
    "PBT_POWERSETTINGCHANGE",
    "PowerSettingError",
    "PowerTranslator",
    "SystemPowerStatus",
    "guid_bytes",
    "parse_power_setting",
    "parse_system_power_status",
    "power_setting_bytes",
]

GUID_ACDC_POWER_SOURCE = "5d3e9a59-e9d5-4b00-a6bd-ff34ff516548"
GUID_BATTERY_PERCENTAGE_REMAINING = "a7ad8041-b45a-4cae-87a3-eecbb468a9e1"
GUID_BATTERY_SUBGROUP = "e73a048d-bf27-4f12-9731-8b2076e8891f"
GUID_BATLEVEL_LOW = "8183ba9a-e910-48da-8769-14ae6dc1170a"
PBT_POWERSETTINGCHANGE = 0x8013
DEFAULT_LOW_LEVEL = 10  # Windows' default "Low battery level"
_HEADER = 20  # GUID + DataLength
_NO_BATTERY = 128
_UNKNOWN = 255


class PowerSettingError(ValueError):
    """A power buffer that does not have the documented layout."""


def guid_bytes(guid: str) -> bytes:
    """A GUID as Windows lays it out in memory (Data1-3 little-endian)."""
    return uuid.UUID(guid).bytes_le


def power_setting_bytes(guid: str, value: int) -> bytes:
    """A POWERBROADCAST_SETTING carrying one DWORD (what Windows passes for both GUIDs)."""
    return guid_bytes(guid) + struct.pack("<II", 4, value)


def parse_power_setting(data: bytes) -> tuple[str, int]:
    """``(guid, value)`` from a POWERBROADCAST_SETTING whose data is a DWORD."""
    if len(data) < _HEADER:
        raise PowerSettingError(f"POWERBROADCAST_SETTING of {len(data)} bytes, shorter than "
                                f"its {_HEADER}-byte header")
    guid = str(uuid.UUID(bytes_le=bytes(data[:16])))
    (length,) = struct.unpack_from("<I", data, 16)
    if length != 4:
        raise PowerSettingError(f"POWERBROADCAST_SETTING for {{{guid}}} says DataLength "
                                f"{length}, not the DWORD (4) documented")
    if len(data) < _HEADER + 4:
        raise PowerSettingError(f"POWERBROADCAST_SETTING for {{{guid}}} ends after "
                                f"{len(data)} bytes, inside its DWORD")
    return guid, int(struct.unpack_from("<I", data, _HEADER)[0])


@dataclass(frozen=True, slots=True)
class SystemPowerStatus:
    """GetSystemPowerStatus's answer."""

    ac_line_status: int
    battery_flag: int
    battery_life_percent: int
    system_status_flag: int = 0
    battery_life_time: int = 0xFFFFFFFF
    battery_full_life_time: int = 0xFFFFFFFF

    @property
    def has_battery(self) -> bool:
        """False when Windows says there is no system battery."""
        return self.battery_flag == _UNKNOWN or not self.battery_flag & _NO_BATTERY

    def pack(self) -> bytes:
        """The 12-byte structure (tests record statuses with it)."""
        return struct.pack("<BBBBII", self.ac_line_status, self.battery_flag,
                           self.battery_life_percent, self.system_status_flag,
                           self.battery_life_time, self.battery_full_life_time)


def parse_system_power_status(data: bytes) -> SystemPowerStatus:
    """A SYSTEM_POWER_STATUS (12 bytes)."""
    if len(data) < 12:
        raise PowerSettingError(f"SYSTEM_POWER_STATUS of {len(data)} bytes, not 12")
    return SystemPowerStatus(*struct.unpack_from("<BBBBII", data))


class PowerTranslator:
    """What Windows said so far -> the power state, reported when it changes."""

    def __init__(self, *, source: str = "win_power", host: str | None = None,
                 low_level: int = DEFAULT_LOW_LEVEL) -> None:
        self.source = source
        self.host = host
        self.low_level = low_level
        self.acdc: int | None = None
        self.percent: int | None = None
        self.has_battery = True
        self.seen: set[str] = set()
        self._last: tuple[bool, int | None, bool] | None = None

    def prime(self, status: SystemPowerStatus) -> None:
        """The state GetSystemPowerStatus gives, for what no callback has said yet."""
        self.has_battery = status.has_battery
        if self.acdc is None and status.ac_line_status in (0, 1):
            self.acdc = 1 - status.ac_line_status
        if self.percent is None and status.battery_life_percent <= 100:
            self.percent = status.battery_life_percent

    def setting(self, guid: str, value: int) -> bool:
        """Apply one notification; False when its GUID or value is not one pysens reads."""
        if guid == GUID_ACDC_POWER_SOURCE and value in (0, 1, 2):
            self.acdc = value
        elif guid == GUID_BATTERY_PERCENTAGE_REMAINING and 0 <= value <= 100:
            self.percent = value
        else:
            return False
        self.seen.add(guid)
        return True

    def state(self, time: datetime, *, existing: bool = False) -> PowerState:
        """The power state now."""
        on_battery = self.acdc in (1, 2)
        percent = self.percent if self.has_battery else None
        low = percent is not None and percent <= self.low_level
        raw: dict[str, Any] = {"AcDcPowerSource": self.acdc, "BatteryPercentage": self.percent,
                               "LowBatteryLevel": self.low_level,
                               "SystemBattery": self.has_battery}
        return PowerState(time=time, source=self.source, on_battery=on_battery,
                          percent=percent, low=low, existing=existing, raw=raw, host=self.host)

    def changed(self, time: datetime, *, existing: bool = False) -> PowerState | None:
        """The state when it differs from the last one returned here (always with
        ``existing``), else None."""
        st = self.state(time, existing=existing)
        key = (st.on_battery, st.percent, st.low)
        if key == self._last and not existing:
            return None
        self._last = key
        return st
