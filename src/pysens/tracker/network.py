"""Connection and destination states -> ISensNetwork events. Pure: no I/O.

The rules (from SENS; docs/events.md):

* ConnectionMade and ConnectionLost alternate per connection: Made when a connection becomes
  usable, Lost when it stops being usable (or goes away); a repeated report changes nothing.
* Made is ConnectionMade with the connection's QOC (speed) when it is known, else
  ConnectionMadeNoQOCInfo.
* A connection or destination that exists when the source starts (``existing``) is recorded
  without an event, unless the tracker was told to include existing ones.
* DestinationReachable (or its NoQOCInfo form) fires when a destination starts to answer; SENS
  has no event for a destination that stops answering, which only re-arms it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..events import CONNECTION_WAN, Method, SensEvent, format_time, parse_time
from ..observations import ConnectionState, DestinationState

__all__ = ["Connection", "Destination", "NetworkTracker"]

M = Method


@dataclass(frozen=True, slots=True)
class Connection:
    """A usable connection in the tracker's table (what ``sens network`` shows)."""

    key: str
    connection: str
    connection_type: int
    qoc: Mapping[str, int] | None
    since: datetime
    source: str
    raw: Mapping[str, Any]
    #: The name and type its ConnectionMade gave (its ConnectionLost repeats them, so that a
    #: subscriber can pair the two even when NetworkManager named it in between).
    made_as: tuple[str, int]

    def to_json(self) -> dict[str, Any]:
        """A JSON object for ``sens network --json`` (and the daemon's answer)."""
        addresses = self.raw.get("addresses")
        return {
            "kind": "connection", "connection": self.connection,
            "connection_type": self.connection_type,
            "type": "WAN" if self.connection_type == CONNECTION_WAN else "LAN",
            "qoc": None if self.qoc is None else dict(self.qoc),
            "addresses": list(addresses) if isinstance(addresses, list) else [],
            "since": format_time(self.since), "key": self.key, "source": self.source,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Connection:
        """The connection a :meth:`to_json` object describes."""
        kind = int(obj.get("connection_type") or 0)
        return cls(str(obj.get("key")), str(obj.get("connection")), kind, obj.get("qoc"),
                   parse_time(str(obj.get("since"))), str(obj.get("source")),
                   {"addresses": list(obj.get("addresses") or [])},
                   (str(obj.get("connection")), kind))


@dataclass(frozen=True, slots=True)
class Destination:
    """A configured destination as last probed (what ``sens network`` shows of it)."""

    destination: str
    reachable: bool
    since: datetime
    connection: str | None
    connection_type: int | None
    source: str

    def to_json(self) -> dict[str, Any]:
        """A JSON object for ``sens network --json``."""
        return {
            "kind": "destination", "destination": self.destination,
            "reachable": self.reachable, "since": format_time(self.since),
            "connection": self.connection, "connection_type": self.connection_type,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Destination:
        """The destination a :meth:`to_json` object describes."""
        kind = obj.get("connection_type")
        return cls(str(obj.get("destination")), bool(obj.get("reachable")),
                   parse_time(str(obj.get("since"))), obj.get("connection"),
                   None if kind is None else int(kind), str(obj.get("source")))


class NetworkTracker:
    """Turns :class:`ConnectionState` and :class:`DestinationState` into SENS events.

    ``host``: the events' host when an observation names none; ``clock`` gives ``observed``.
    """

    def __init__(self, *, host: str, include_existing: bool,
                 clock: Callable[[], datetime]) -> None:
        self.host = host
        self.include_existing = include_existing
        self._clock = clock
        self._usable: dict[tuple[str, str], Connection] = {}
        self._destinations: dict[tuple[str, str], Destination] = {}

    @property
    def connections(self) -> list[Connection]:
        """The usable connections, oldest first."""
        return sorted(self._usable.values(), key=lambda c: (c.since, c.key))

    def reachable(self) -> dict[str, bool]:
        """Each destination seen so far (on this tracker's host): whether it answers."""
        return {d: s.reachable for (h, d), s in self._destinations.items() if h == self.host}

    @property
    def destinations(self) -> list[Destination]:
        """Every destination probed so far, by name."""
        return sorted(self._destinations.values(), key=lambda d: d.destination)

    def feed_connection(self, obs: ConnectionState) -> list[SensEvent]:
        """The events ``obs`` means: one ConnectionMade* or ConnectionLost, or none."""
        host = obs.host or self.host
        key = (host, obs.key)
        known = self._usable.get(key)
        if not obs.usable:
            if known is None:
                return []  # it was not usable before either
            del self._usable[key]
            # The Lost names the connection as its Made did (a rename in between is not news).
            name, kind = known.made_as
            return [self._event(M.ConnectionLost, obs, host, name, kind, None)]
        current = Connection(obs.key, obs.connection, obs.connection_type, obs.qoc,
                             known.since if known else obs.time, obs.source, obs.raw,
                             known.made_as if known else (obs.connection, obs.connection_type))
        self._usable[key] = current
        if known is not None or (obs.existing and not self.include_existing):
            return []
        method = M.ConnectionMade if obs.qoc is not None else M.ConnectionMadeNoQOCInfo
        return [self._event(method, obs, host, obs.connection, obs.connection_type, obs.qoc)]

    def feed_destination(self, obs: DestinationState) -> list[SensEvent]:
        """DestinationReachable* when ``obs`` shows a destination starting to answer."""
        host = obs.host or self.host
        key = (host, obs.destination)
        known = self._destinations.get(key)
        before = None if known is None else known.reachable
        since = obs.time if known is None or before != obs.reachable else known.since
        self._destinations[key] = Destination(obs.destination, obs.reachable, since,
                                              obs.connection, obs.connection_type, obs.source)
        if not obs.reachable or before is True:
            return []
        if before is None and obs.existing and not self.include_existing:
            return []
        method = (M.DestinationReachable if obs.qoc is not None
                  else M.DestinationReachableNoQOCInfo)
        return [self._event(method, obs, host, obs.connection, obs.connection_type, obs.qoc,
                            destination=obs.destination)]

    def _event(
        self, method: Method, obs: ConnectionState | DestinationState, host: str,
        connection: str | None, connection_type: int | None, qoc: Mapping[str, int] | None,
        destination: str | None = None,
    ) -> SensEvent:
        return SensEvent.trusted(
            method, obs.time, self._clock(), host, obs.source, connection=connection,
            connection_type=connection_type, qoc=None if qoc is None else dict(qoc),
            destination=destination, raw=obs.raw,
        )
