"""Connection and destination states -> ISensNetwork events. Pure: no I/O.

The rules (SPEC §7, from SENS):

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

from ..events import Method, SensEvent
from ..observations import ConnectionState, DestinationState

__all__ = ["Connection", "NetworkTracker"]

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
        self._reachable: dict[tuple[str, str], bool] = {}

    @property
    def connections(self) -> list[Connection]:
        """The usable connections, oldest first."""
        return sorted(self._usable.values(), key=lambda c: (c.since, c.key))

    def reachable(self) -> dict[str, bool]:
        """Each destination seen so far (on this tracker's host): whether it answers."""
        return {d: ok for (h, d), ok in self._reachable.items() if h == self.host}

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
        before = self._reachable.get(key)
        self._reachable[key] = obs.reachable
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
