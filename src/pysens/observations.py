"""What sources report: plain facts about sessions, connections, destinations and power,
before any SENS rule is applied.

Sources build these and hand them to :class:`pysens.tracker.Tracker`, which alone decides which
SENS events they mean. Pure data; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from .events import Method, SensEvent

__all__ = [
    "SHARED_FIELDS",
    "ConnectionState",
    "DestinationState",
    "HostReset",
    "Observation",
    "PowerState",
    "SessionAppeared",
    "SessionChanged",
    "SessionInfo",
    "SessionRecord",
    "SessionVanished",
]


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """Everything a source knows about one session. Unknown values are ``None``.

    ``session_class`` is logind's Class (``user``, ``greeter``, ``lock-screen`` …); sessions whose
    class is not a user class, or that have no user name, are not user sessions and get no events.
    ``active`` is meaningful for sessions with a seat (a VT switch makes one inactive);
    ``state`` is logind's State (``online``, ``active``, ``closing``), or ``disconnected`` for a
    seatless session a source finds detached (a GNU screen, a WTS disconnected session).
    ``session_id`` is ``None`` when the record does not carry one (Security 4624 has only a logon
    id): the tracker then keys the session by ``logon_id``, else by user.
    """

    session_id: str | None
    user_name: str | None = None
    domain: str | None = None
    session_name: str | None = None
    session_type: str | None = None
    session_class: str | None = None
    tty: str | None = None
    seat: str | None = None
    remote: bool = False
    client_name: str | None = None
    client_address: str | None = None
    logon_id: str | None = None
    active: bool | None = None
    locked: bool | None = None
    state: str | None = None
    since: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


#: The fields a session's info and an event about it have in common (one list, from both).
SHARED_FIELDS = tuple(
    f.name for f in fields(SessionInfo) if f.name in {g.name for g in fields(SensEvent)})


@dataclass(frozen=True, slots=True)
class SessionAppeared:
    """A session was seen. ``existing``: it was there before the source started watching, so
    it is added to the table without a Logon (unless the tracker was told to include existing)."""

    time: datetime
    source: str
    info: SessionInfo
    existing: bool = False
    host: str | None = None


@dataclass(frozen=True, slots=True)
class SessionChanged:
    """Some properties of a known session changed. ``changes`` holds only what changed, keyed by
    :class:`SessionInfo` field name (``active``, ``locked``, ``state``, ``session_type`` …)."""

    time: datetime
    source: str
    session_id: str
    changes: Mapping[str, Any]
    host: str | None = None


@dataclass(frozen=True, slots=True)
class SessionVanished:
    """A session is gone (logind SessionRemoved, utmp DEAD_PROCESS). ``synthesized``: inferred,
    not seen (for example after a source gap)."""

    time: datetime
    source: str
    session_id: str
    reason: str | None = None
    synthesized: bool = False
    host: str | None = None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A log record that names the SENS method itself (a Windows event log entry, a WTS code,
    a GNU screen detach). The tracker still applies the ordering rules to it, which is also what
    collapses one occurrence logged twice (LSM 25 and Security 4778) into one event."""

    time: datetime
    source: str
    method: Method
    info: SessionInfo
    reason: str | None = None
    synthesized: bool = False
    host: str | None = None
    #: For a Logon record: the user's shell is up at once (a utmp/wtmp login shell), so the
    #: tracker fires PostShell right after. Log records that report the shell themselves (LSM 22)
    #: leave it False and send a PostShell record when it comes.
    post_shell: bool = False
    #: A finished event to emit as it is (a replayed or published event keeps its id) when the
    #: rules admit it; ``info`` and ``method`` must describe the same thing.
    event: SensEvent | None = None

    @classmethod
    def of_event(cls, event: SensEvent) -> SessionRecord:
        """The record for an already built event (replay, ``sens publish``)."""
        info = SessionInfo(**{name: getattr(event, name) for name in SHARED_FIELDS})
        return cls(
            time=event.time, source=event.source, method=event.canonical_method, info=info,
            reason=event.reason, synthesized=event.synthesized, host=event.host, event=event,
        )


@dataclass(frozen=True, slots=True)
class HostReset:
    """The host booted, shut down or crashed: every open session ends (synthesized Logoff)."""

    time: datetime
    source: str
    reason: str
    host: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectionState:
    """One network connection as a source sees it once a change has settled.

    ``usable``: up, with carrier (or the OS's equivalent) and an address other programs can use;
    the tracker fires ConnectionMade / ConnectionLost when it changes. ``key`` is what stays the
    same for the life of the connection (``ifindex:3``, an adapter's LUID), while ``connection``
    is the name SENS reports (the interface, or NetworkManager's connection id), which may
    change. ``connection_type``: :data:`~pysens.events.CONNECTION_LAN` or ``_WAN``. ``qoc``:
    ``{"flags", "in_speed", "out_speed"}`` in bits/s, None when the speed is unknown (the
    NoQOCInfo methods). ``existing``: part of the source's first look at the system (no event
    unless the tracker was told to include existing).
    """

    time: datetime
    source: str
    key: str
    connection: str
    usable: bool
    connection_type: int = 0
    qoc: Mapping[str, int] | None = None
    existing: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict)
    host: str | None = None


@dataclass(frozen=True, slots=True)
class DestinationState:
    """A configured destination was probed: whether it answered, and through which connection.

    The tracker fires DestinationReachable when ``reachable`` turns true (SENS has no event for
    the opposite). ``connection``, ``connection_type`` and ``qoc`` describe the connection the
    probe went through (None when unknown).
    """

    time: datetime
    source: str
    destination: str
    reachable: bool
    connection: str | None = None
    connection_type: int | None = None
    qoc: Mapping[str, int] | None = None
    existing: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict)
    host: str | None = None


@dataclass(frozen=True, slots=True)
class PowerState:
    """The machine's power as a source sees it once a change has settled.

    ``on_battery``: running on battery (False: AC or UPS-backed AC). ``percent``: the battery's
    charge, 0-100 (None when there is no battery or it is unknown). ``low``: the source's own
    "battery low" verdict (UPower WarningLevel >= low, the OS's low-battery setting). The
    tracker fires OnBatteryPower / OnACPower on changes of ``on_battery`` and BatteryLow once
    per low spell while on battery.
    """

    time: datetime
    source: str
    on_battery: bool
    percent: int | None = None
    low: bool = False
    existing: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict)
    host: str | None = None


Observation = (SessionAppeared | SessionChanged | SessionVanished | SessionRecord | HostReset
               | ConnectionState | DestinationState | PowerState)
