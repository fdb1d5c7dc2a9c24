"""Power states -> ISensOnNow events. Pure: no I/O.

The rules (from SENS; docs/events.md):

* OnBatteryPower (with the battery percentage) when the machine goes from AC to battery,
  OnACPower when it goes back; a repeated report changes nothing.
* BatteryLow (with the percentage) once per low spell: on battery and low, fired when that
  begins (going to battery already low included), re-armed when the battery recovers or AC
  returns.
* The state found when the source starts (``existing``) is recorded without an event, unless
  the tracker was told to include existing ones; a battery already low then fires nothing
  until it has recovered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..events import Method, SensEvent, format_time, parse_time
from ..observations import PowerState

__all__ = ["Power", "PowerTracker"]

M = Method


@dataclass(frozen=True, slots=True)
class Power:
    """The power state in the tracker's table (what ``sens power`` shows)."""

    on_battery: bool
    percent: int | None
    low: bool
    since: datetime
    source: str

    def to_json(self) -> dict[str, Any]:
        """A JSON object for ``sens power --json`` (and the daemon's answer)."""
        return {"on_battery": self.on_battery, "power": "battery" if self.on_battery else "AC",
                "battery_percent": self.percent, "low": self.low,
                "since": format_time(self.since), "source": self.source}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Power:
        """The state a :meth:`to_json` object describes."""
        percent = obj.get("battery_percent")
        return cls(bool(obj.get("on_battery")), None if percent is None else int(percent),
                   bool(obj.get("low")), parse_time(str(obj.get("since"))),
                   str(obj.get("source")))


class PowerTracker:
    """Turns :class:`PowerState` observations into OnACPower, OnBatteryPower and BatteryLow."""

    def __init__(self, *, host: str, include_existing: bool,
                 clock: Callable[[], datetime]) -> None:
        self.host = host
        self.include_existing = include_existing
        self._clock = clock
        self._state: dict[str, Power] = {}
        self._low_spell: dict[str, bool] = {}

    def state(self, host: str | None = None) -> Power | None:
        """The last power state seen on ``host`` (default: the tracker's), None before any."""
        return self._state.get(host or self.host)

    def feed(self, obs: PowerState) -> list[SensEvent]:
        """The events ``obs`` means, in order (often none)."""
        host = obs.host or self.host
        before = self._state.get(host)
        low = obs.on_battery and obs.low
        changed = before is None or before.on_battery != obs.on_battery
        since = obs.time if changed or before is None else before.since
        self._state[host] = Power(obs.on_battery, obs.percent, obs.low, since, obs.source)
        if before is None and obs.existing and not self.include_existing:
            self._low_spell[host] = low  # already low at start: not news until it recovers
            return []
        out: list[SensEvent] = []
        if changed:
            if obs.on_battery:
                out.append(self._event(M.OnBatteryPower, obs, host, obs.percent))
            else:
                out.append(self._event(M.OnACPower, obs, host, None))
        if low and not self._low_spell.get(host, False):
            out.append(self._event(M.BatteryLow, obs, host, obs.percent))
        self._low_spell[host] = low
        return out

    def _event(self, method: Method, obs: PowerState, host: str,
               percent: int | None) -> SensEvent:
        return SensEvent.trusted(method, obs.time, self._clock(), host, obs.source,
                                 battery_percent=percent, raw=obs.raw)
