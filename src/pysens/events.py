"""The SENS event model: event classes, their methods, and the event itself.

Pure: no I/O. Names follow Windows SENS exactly (``sensevts.h``); see docs/events.md.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from typing import Any

__all__ = [
    "CLASS_METHODS",
    "CONNECTION_LAN",
    "CONNECTION_WAN",
    "METHOD_CLASSES",
    "METHOD_PARAMETERS",
    "NETWORK_ALIVE_LAN",
    "NETWORK_ALIVE_WAN",
    "NETWORK_POWER_FIELDS",
    "QOC_KEYS",
    "EventClass",
    "EventError",
    "Method",
    "SensEvent",
    "fold_name",
    "format_time",
    "json_texts",
    "make_event_id",
    "parse_method",
    "parse_time",
    "recent_id_key",
    "snake_case",
    "ulid_text",
]


class EventError(ValueError):
    """An event (or its JSON) is not valid: the message says which field and why."""


class EventClass(StrEnum):
    """The four SENS event interfaces."""

    ISensLogon2 = "ISensLogon2"
    ISensLogon = "ISensLogon"
    ISensNetwork = "ISensNetwork"
    ISensOnNow = "ISensOnNow"


class Method(StrEnum):
    """Every SENS method, PascalCase as in ``sensevts.h``."""

    Logon = "Logon"
    Logoff = "Logoff"
    SessionDisconnect = "SessionDisconnect"
    SessionReconnect = "SessionReconnect"
    PostShell = "PostShell"
    StartShell = "StartShell"
    DisplayLock = "DisplayLock"
    DisplayUnlock = "DisplayUnlock"
    StartScreenSaver = "StartScreenSaver"
    StopScreenSaver = "StopScreenSaver"
    ConnectionMade = "ConnectionMade"
    ConnectionMadeNoQOCInfo = "ConnectionMadeNoQOCInfo"
    ConnectionLost = "ConnectionLost"
    DestinationReachable = "DestinationReachable"
    DestinationReachableNoQOCInfo = "DestinationReachableNoQOCInfo"
    OnACPower = "OnACPower"
    OnBatteryPower = "OnBatteryPower"
    BatteryLow = "BatteryLow"


#: ISensNetwork's ulType: a LAN (a network card) or a WAN (dial-up, mobile, VPN) connection.
CONNECTION_LAN = 0
CONNECTION_WAN = 1
#: SENS_QOCINFO dwFlags bits: which kind of connection is alive (sensapi.h).
NETWORK_ALIVE_LAN = 0x1
NETWORK_ALIVE_WAN = 0x2

M = Method
#: The methods of each event class, in the interface's vtable order.
CLASS_METHODS: Mapping[EventClass, tuple[Method, ...]] = {
    EventClass.ISensLogon2: (
        M.Logon, M.Logoff, M.SessionDisconnect, M.SessionReconnect, M.PostShell,
    ),
    EventClass.ISensLogon: (
        M.Logon, M.Logoff, M.StartShell, M.DisplayLock, M.DisplayUnlock,
        M.StartScreenSaver, M.StopScreenSaver,
    ),
    EventClass.ISensNetwork: (
        M.ConnectionMade, M.ConnectionMadeNoQOCInfo, M.ConnectionLost,
        M.DestinationReachable, M.DestinationReachableNoQOCInfo,
    ),
    EventClass.ISensOnNow: (M.OnACPower, M.OnBatteryPower, M.BatteryLow),
}

#: The SENS parameter names of each method (the subscriber's signature), per class.
METHOD_PARAMETERS: Mapping[EventClass, Mapping[Method, tuple[str, ...]]] = {
    EventClass.ISensLogon2: {
        m: ("bstrUserName", "dwSessionId") for m in CLASS_METHODS[EventClass.ISensLogon2]
    },
    EventClass.ISensLogon: {m: ("bstrUserName",) for m in CLASS_METHODS[EventClass.ISensLogon]},
    EventClass.ISensNetwork: {
        M.ConnectionMade: ("bstrConnection", "ulType", "lpQOCInfo"),
        M.ConnectionMadeNoQOCInfo: ("bstrConnection", "ulType"),
        M.ConnectionLost: ("bstrConnection", "ulType"),
        M.DestinationReachable: ("bstrDestination", "bstrConnection", "ulType", "lpQOCInfo"),
        M.DestinationReachableNoQOCInfo: ("bstrDestination", "bstrConnection", "ulType"),
    },
    EventClass.ISensOnNow: {
        M.OnACPower: (),
        M.OnBatteryPower: ("dwBatteryLifePercent",),
        M.BatteryLow: ("dwBatteryLifePercent",),
    },
}

# StartShell (ISensLogon) and PostShell (ISensLogon2) are one occurrence, "the user's shell is
# running": an event carries PostShell and is delivered to subscribers of either name.
_ALIASES: Mapping[Method, Method] = {M.StartShell: M.PostShell}


def _classes_of(method: Method) -> tuple[EventClass, ...]:
    names = {method, *(a for a, b in _ALIASES.items() if b is method)}
    return tuple(c for c in EventClass if names & set(CLASS_METHODS[c]))


#: The classes each (canonical) method's event is delivered to, ISensLogon2 first.
METHOD_CLASSES: Mapping[Method, tuple[EventClass, ...]] = {
    m: _classes_of(m) for m in Method if m not in _ALIASES
}


_BY_NAME: dict[str, Method] = {m.value: _ALIASES.get(m, m) for m in Method}


def parse_method(name: str | Method) -> Method:
    """The canonical :class:`Method` for ``name`` (PascalCase, or snake_case, any case).

    ``StartShell`` becomes ``PostShell`` (one occurrence, two names). An unknown name raises
    :class:`EventError` listing the valid ones.
    """
    if isinstance(name, Method):
        return _ALIASES.get(name, name)
    exact = _BY_NAME.get(name)
    if exact is not None:
        return exact
    key = name.replace("_", "").lower()
    for m in Method:
        if m.value.lower() == key:
            return _ALIASES.get(m, m)
    valid = ", ".join(m.value for m in Method)
    raise EventError(f"unknown method {name!r}; valid methods are: {valid}")


def fold_name(name: str | None) -> str:
    """How user and domain names compare everywhere in pysens: case-insensitively, as Windows
    account names do (``CORP\\Alice`` is ``corp\\alice``); None compares as empty."""
    return name.casefold() if name else ""


def snake_case(method: str) -> str:
    """``SessionReconnect`` -> ``session_reconnect`` (the Python subscriber's method name)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", method).lower()


# Recent texts of format_time: an event's time is formatted for its id and again for its JSON,
# and a Logon and its PostShell share one time. Bounded: cleared when full.
_TIME_TEXT: dict[datetime, str] = {}
_TIME_TEXT_MAX = 20_000


def format_time(t: datetime) -> str:
    """UTC ISO 8601 with microseconds and ``Z``: ``2026-11-23T20:44:39.123456Z``."""
    if t.tzinfo is UTC:  # the common case, in C
        text = _TIME_TEXT.get(t)
        if text is None:
            if len(_TIME_TEXT) >= _TIME_TEXT_MAX:
                _TIME_TEXT.clear()
            text = _TIME_TEXT[t] = t.isoformat(timespec="microseconds")[:-6] + "Z"
        return text
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    elif t.utcoffset():
        t = t.astimezone(UTC)
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
        f".{t.microsecond:06d}Z"
    )


def parse_time(value: str | datetime | float | int) -> datetime:
    """A timezone-aware UTC datetime from ISO 8601 text, a datetime, or epoch seconds."""
    if isinstance(value, datetime):
        t = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        try:
            t = datetime.fromisoformat(value.strip())
        except ValueError:
            raise EventError(f"time {value!r} is not ISO 8601") from None
    else:
        raise EventError(f"time {value!r} is not ISO 8601")
    if t.tzinfo is None:
        return t.replace(tzinfo=UTC)
    return t if not t.utcoffset() else t.astimezone(UTC)


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Two base-32 digits at a time: 13 lookups encode the 130 bits of a 26-digit ULID.
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_blake2b = hashlib.blake2b


def ulid_text(n: int) -> str:
    """The 26 Crockford base-32 digits of a 128-bit ``n`` (a ULID's text)."""
    p = _PAIRS  # two digits per lookup, written out: a loop and a join cost half as much again
    return (f"{p[n >> 120]}{p[(n >> 110) & 1023]}{p[(n >> 100) & 1023]}"
            f"{p[(n >> 90) & 1023]}{p[(n >> 80) & 1023]}{p[(n >> 70) & 1023]}"
            f"{p[(n >> 60) & 1023]}{p[(n >> 50) & 1023]}{p[(n >> 40) & 1023]}"
            f"{p[(n >> 30) & 1023]}{p[(n >> 20) & 1023]}{p[(n >> 10) & 1023]}{p[n & 1023]}")


def make_event_id(time: datetime, *parts: object) -> str:
    """A ULID-shaped id (26 Crockford base-32 chars) that is a pure function of its inputs.

    The first 48 bits are the event time in milliseconds, so ids sort by time; the other 80 bits
    hash what identifies the occurrence. The same occurrence read twice gives the same id, which
    makes the id the idempotency key from source to central store.
    """
    ms = int(time.timestamp() * 1000) & ((1 << 48) - 1)
    digest = _blake2b("\x1f".join(map(str, parts)).encode(), digest_size=10).digest()
    return ulid_text((ms << 80) | int.from_bytes(digest, "big"))


@cache
def default_host() -> str:
    """This machine's short host name."""
    return socket.gethostname().split(".")[0] or "localhost"


def _now() -> datetime:
    return datetime.now(UTC)


_UNSET_TIME = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SensEvent:
    """One SENS event (docs/events.md). Frozen; build a changed copy with :meth:`evolve`.

    Missing ``id``, ``time``, ``observed`` and ``host`` are filled in; ``classes`` follows from
    ``method``; ``StartShell`` is stored as ``PostShell``.
    """

    method: Method | str
    user_name: str | None = None
    session_id: str | None = None
    id: str = ""
    seq: int | None = None
    time: datetime = _UNSET_TIME
    observed: datetime = _UNSET_TIME
    host: str = ""
    source: str = "api"
    classes: tuple[EventClass, ...] = ()
    domain: str | None = None
    session_name: str | None = None
    session_type: str | None = None
    tty: str | None = None
    seat: str | None = None
    remote: bool = False
    client_name: str | None = None
    client_address: str | None = None
    logon_id: str | None = None
    reason: str | None = None
    synthesized: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict)
    #: ISensNetwork: bstrConnection (the interface or the NetworkManager connection's name).
    connection: str | None = None
    #: ISensNetwork: ulType, :data:`CONNECTION_LAN` (0) or :data:`CONNECTION_WAN` (1).
    connection_type: int | None = None
    #: ISensNetwork: SENS_QOCINFO as ``{"flags", "in_speed", "out_speed"}`` (bits/s).
    qoc: Mapping[str, int] | None = None
    #: ISensNetwork: bstrDestination of DestinationReachable (a name or an address).
    destination: str | None = None
    #: ISensOnNow: dwBatteryLifePercent of OnBatteryPower and BatteryLow (0-100).
    battery_percent: int | None = None

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        method = parse_method(self.method)
        setattr_(self, "method", method)
        setattr_(self, "classes", METHOD_CLASSES[method])
        if self.session_id is not None and not isinstance(self.session_id, str):
            setattr_(self, "session_id", str(self.session_id))
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, str):
                _check_text(name, value)
        if self.raw:
            _check_raw(self.raw)
        if self.qoc is not None:
            setattr_(self, "qoc", _check_qoc(self.qoc))
        now = None
        if self.time is _UNSET_TIME:
            now = _now()
            setattr_(self, "time", now)
        elif not isinstance(self.time, datetime) or self.time.tzinfo is None:
            setattr_(self, "time", parse_time(self.time))
        if self.observed is _UNSET_TIME:
            setattr_(self, "observed", now or _now())
        elif not isinstance(self.observed, datetime) or self.observed.tzinfo is None:
            setattr_(self, "observed", parse_time(self.observed))
        if not self.host:
            setattr_(self, "host", default_host())
        if self.id and not _ID_TEXT(self.id):
            # Ids travel as NATS message ids (a header line) and in file and URL names.
            raise EventError(f"field 'id' must be 1 to 128 printable ASCII characters without "
                             f"spaces, not {json.dumps(self.id)[:60]}")
        if not self.id:
            setattr_(self, "id", _event_id(
                self.time, self.host, self.source, method, self.session_id, self.user_name,
                self.tty, self.logon_id, self.connection, self.destination,
            ))

    @classmethod
    def from_stored(cls, obj: dict[str, Any], seq: int | None) -> SensEvent:
        """An event from the JSON object pysens itself wrote (a journal or store body), with
        ``seq``. Skips :meth:`from_json`'s checks, which reading a large journal would pay per
        event; anything unexpected falls back to :meth:`from_json`, which names the problem."""
        try:
            method = _BY_NAME[obj["method"]]
            time = datetime.fromisoformat(obj["time"])
            observed = datetime.fromisoformat(obj["observed"])
            event = _new_event(cls)
            for name, setter in _STORED_SETTERS:
                setter(event, obj[name])
            for name, setter in _LATER_SETTERS:
                setter(event, obj.get(name))  # absent from bodies written before they existed
        except (KeyError, TypeError, ValueError):
            return cls.from_json({**obj, "seq": seq})
        _SET_METHOD(event, method)
        _SET_CLASSES(event, METHOD_CLASSES[method])
        _SET_TIME(event, time)
        _SET_OBSERVED(event, observed)
        _SET_SEQ(event, seq)
        return event

    @classmethod
    def trusted(
        cls, method: Method, time: datetime, observed: datetime, host: str, source: str, *,
        user_name: str | None = None, session_id: str | None = None, domain: str | None = None,
        session_name: str | None = None, session_type: str | None = None,
        tty: str | None = None, seat: str | None = None, remote: bool = False,
        client_name: str | None = None, client_address: str | None = None,
        logon_id: str | None = None, reason: str | None = None, synthesized: bool = False,
        raw: Mapping[str, Any] | None = None, connection: str | None = None,
        connection_type: int | None = None, qoc: Mapping[str, int] | None = None,
        destination: str | None = None, battery_percent: int | None = None,
    ) -> SensEvent:
        """A new event (no ``seq``, id computed as the constructor does) from values a producer
        has already made valid: ``method`` canonical, times timezone-aware UTC, ``host`` not
        empty, ``session_id`` a string or None. It skips the constructor's checks, which is what
        makes bulk producers (the tracker on a history import) cheap; give anything else to
        ``SensEvent(...)``."""
        return cls.trusted_fields(
            method, time, observed, host, source, user_name, session_id, domain, session_name,
            session_type, tty, seat, remote, client_name, client_address, logon_id, reason,
            synthesized, raw, connection, connection_type, qoc, destination, battery_percent)

    @classmethod
    def trusted_fields(
        cls, method: Method, time: datetime, observed: datetime, host: str, source: str,
        user_name: str | None, session_id: str | None, domain: str | None,
        session_name: str | None, session_type: str | None, tty: str | None, seat: str | None,
        remote: bool, client_name: str | None, client_address: str | None,
        logon_id: str | None, reason: str | None, synthesized: bool,
        raw: Mapping[str, Any] | None, connection: str | None = None,
        connection_type: int | None = None, qoc: Mapping[str, int] | None = None,
        destination: str | None = None, battery_percent: int | None = None,
    ) -> SensEvent:
        """:meth:`trusted` with the values given by position, in that order (the tracker makes
        an event for every record of a history import: passing 20 values by keyword costs
        about as much as setting them)."""
        event = _new_event(cls)  # the fields in _SLOTS order (asserted below)
        (s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15, s16, s17, s18,
         s19, s20, s21, s22, s23, s24, s25, s26) = _SETTERS
        s0(event, method)
        s1(event, user_name)
        s2(event, session_id)
        s3(event, _event_id(time, host, source, method, session_id, user_name, tty, logon_id,
                            connection, destination))
        s4(event, None)
        s5(event, time)
        s6(event, observed)
        s7(event, host)
        s8(event, source)
        s9(event, METHOD_CLASSES[method])
        s10(event, domain)
        s11(event, session_name)
        s12(event, session_type)
        s13(event, tty)
        s14(event, seat)
        s15(event, remote)
        s16(event, client_name)
        s17(event, client_address)
        s18(event, logon_id)
        s19(event, reason)
        s20(event, synthesized)
        s21(event, {} if raw is None else raw)
        s22(event, connection)
        s23(event, connection_type)
        s24(event, qoc)
        s25(event, destination)
        s26(event, battery_percent)
        return event

    @property
    def canonical_method(self) -> Method:
        """The method as a :class:`Method` (always canonical after construction)."""
        return self.method if isinstance(self.method, Method) else parse_method(self.method)

    def with_seq(self, seq: int | None) -> SensEvent:
        """This event at journal position ``seq`` (a fast copy: the journal does it per event)."""
        new = _new_event(SensEvent)
        for getter, setter in _GET_SET:
            setter(new, getter(self))
        _SET_SEQ(new, seq)
        return new

    def evolve(self, **changes: Any) -> SensEvent:
        """A copy with ``changes`` applied (the id stays unless given)."""
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The event's JSON object (docs/events.md; ``seq`` only once journaled)."""
        d: dict[str, Any] = {"id": self.id}
        if self.seq is not None:
            d["seq"] = self.seq
        d["time"] = format_time(self.time)
        d["observed"] = format_time(self.observed)
        d["host"] = self.host
        d["source"] = self.source
        d["method"] = str(self.method)
        d["classes"] = [str(c) for c in self.classes]
        for name in _PLAIN_FIELDS:
            d[name] = getattr(self, name)
        d["qoc"] = None if self.qoc is None else dict(self.qoc)
        d["destination"] = self.destination
        d["battery_percent"] = self.battery_percent
        d["raw"] = dict(self.raw)
        return d

    def to_json_text(self) -> str:
        """:meth:`to_json` as one line of JSON (what ``json.dumps`` gives, non-ASCII kept)."""
        try:
            return _json_text(self)
        except TypeError:  # a field of an unexpected type (raw values are handled): the long way
            return _ENCODE(self.to_json())

    @classmethod
    def from_json(cls, obj: Mapping[str, Any] | str | bytes) -> SensEvent:
        """Build an event from its JSON object or text (docs/events.md); missing fields take
        defaults.

        Raises :class:`EventError` naming the field when a value has the wrong type.
        """
        if isinstance(obj, str | bytes):
            try:
                obj = json.loads(obj)
            except json.JSONDecodeError as e:
                raise EventError(f"not JSON: {e.msg} at column {e.colno}") from None
        if not isinstance(obj, Mapping):
            raise EventError("an event must be a JSON object")
        if "method" not in obj:
            raise EventError("the event has no 'method'")
        kw: dict[str, Any] = {}
        for name, value in obj.items():
            if name not in _FIELD_NAMES or name == "classes":
                continue  # unknown keys are tolerated (forward compatibility); classes derive
            if value is None and name in _NOT_NULL:
                continue
            kw[name] = _check(name, value)
        return cls(**kw)


_SLOTS = tuple(f.name for f in fields(SensEvent))
# The slot descriptors' own setters: what the frozen dataclass's __init__ does through
# object.__setattr__, without the attribute lookup per field.
_SETTERS = tuple(getattr(SensEvent, name).__set__ for name in _SLOTS)
_GET_SET = tuple((getattr(SensEvent, name).__get__, getattr(SensEvent, name).__set__)
                 for name in _SLOTS)
_SET_SEQ = getattr(SensEvent, "seq").__set__  # noqa: B009
_new_event = object.__new__
_SETTER_OF = dict(zip(_SLOTS, _SETTERS, strict=True))
_SET_METHOD, _SET_CLASSES, _SET_TIME, _SET_OBSERVED, _SET_SEQ = (
    _SETTER_OF[n] for n in ("method", "classes", "time", "observed", "seq"))
# What from_stored copies as it is: every field but those it converts or is given.
#: The fields added with ISensNetwork and ISensOnNow: bodies journaled before lack them.
NETWORK_POWER_FIELDS = ("connection", "connection_type", "qoc", "destination", "battery_percent")
_STORED_SETTERS = tuple(
    (n, _SETTER_OF[n]) for n in _SLOTS
    if n not in ("method", "classes", "time", "observed", "seq", *NETWORK_POWER_FIELDS))
_LATER_SETTERS = tuple((n, _SETTER_OF[n]) for n in NETWORK_POWER_FIELDS)
assert (  # noqa: S101 - an invariant of this code, not a check of input
    "method", "user_name", "session_id", "id", "seq", "time", "observed", "host", "source",
    "classes", "domain", "session_name", "session_type", "tty", "seat", "remote", "client_name",
    "client_address", "logon_id", "reason", "synthesized", "raw", *NETWORK_POWER_FIELDS,
) == _SLOTS, "SensEvent.trusted sets the fields in this order"


def _event_id(
    time: datetime, host: str, source: str, method: Method, session_id: str | None,
    user_name: str | None, tty: str | None, logon_id: str | None,
    connection: str | None = None, destination: str | None = None,
) -> str:
    """make_event_id(time, host, source, method, format_time(time), session_id, user_name,
    tty, logon_id[, connection, destination]), inlined: every event's id is computed here.
    The network parts join the key only when set, so logon events keep the ids they had."""
    ms = int(time.timestamp() * 1000) & ((1 << 48) - 1)
    # An f-string renders None as "None" and a StrEnum as its value, as str() does.
    key = (f"{host}\x1f{source}\x1f{method}\x1f{format_time(time)}\x1f{session_id}"
           f"\x1f{user_name}\x1f{tty}\x1f{logon_id}")
    if connection is not None or destination is not None:
        key += f"\x1f{connection}\x1f{destination}"
    n = (ms << 80) | int.from_bytes(_blake2b(key.encode(), digest_size=10).digest(), "big")
    text = ulid_text(n)
    if len(_ID_KEYS) >= _ID_KEYS_MAX:
        _ID_KEYS.clear()
    _ID_KEYS[text] = n.to_bytes(16, "big")
    return text


# The 128 bits of the ids made lately, by their text: the journal stores an id as its bits, and
# keeping them costs less than parsing the text again (a bulk import journals every id it
# makes). Bounded: cleared when full, after which an id's bits are parsed from its text.
_ID_KEYS: dict[str, bytes] = {}
_ID_KEYS_MAX = 1 << 15


def recent_id_key(event_id: str) -> bytes | None:
    """The 16 bytes (big-endian) of ``event_id`` when this process made it lately (the id of a
    :meth:`SensEvent.trusted` or constructed event), else None: what the journal's
    ``id_key`` gives for it, without parsing the text."""
    return _ID_KEYS.get(event_id)


_FIELD_NAMES = frozenset(_SLOTS)
_NOT_NULL = frozenset({"id", "time", "observed", "host", "source", "remote", "synthesized", "raw"})
_PLAIN_FIELDS = (
    "user_name", "domain", "session_id", "session_name", "session_type", "tty", "seat",
    "remote", "client_name", "client_address", "logon_id", "reason", "synthesized",
    "connection", "connection_type",
)
_BOOL_FIELDS = frozenset({"remote", "synthesized"})
_INT_FIELDS = frozenset({"connection_type", "battery_percent"})
#: SENS_QOCINFO's members as the event carries them (bits per second, SENS's unit).
QOC_KEYS = ("flags", "in_speed", "out_speed")


def _check_qoc(value: Any) -> dict[str, int]:
    """``value`` as a QOC object: exactly ``flags``, ``in_speed`` and ``out_speed``, integers."""
    if not isinstance(value, Mapping) or set(value) != set(QOC_KEYS) or not all(
            type(value[k]) is int and value[k] >= 0 for k in QOC_KEYS):
        raise EventError("field 'qoc' must be null or {\"flags\", \"in_speed\", \"out_speed\"}"
                         f" with integers, not {json.dumps(value, default=str)[:80]}")
    return {k: value[k] for k in QOC_KEYS}


def _qoc_text(qoc: Mapping[str, int]) -> str:
    return (f'{{"flags": {int(qoc["flags"])}, "in_speed": {int(qoc["in_speed"])}, '
            f'"out_speed": {int(qoc["out_speed"])}}}')


# ensure_ascii=False, default separators: the text journal bodies and JSON lines have always had.
_ENCODE = json.JSONEncoder(ensure_ascii=False, default=str).encode
_quote = json.encoder.encode_basestring
_CLASSES_TEXT: dict[tuple[EventClass, ...], str] = {}


def json_texts(events: Iterable[SensEvent]) -> list[str]:
    """:meth:`SensEvent.to_json_text` of each event (the journal's bodies). A ``raw`` mapping
    that several of them share (a Logon, its PostShell and its Logoff) is encoded once."""
    raws: dict[int, tuple[Mapping[str, Any], str]] = {}
    out = []
    for e in events:
        try:
            raw = e.raw
            known = raws.get(id(raw))
            if known is None or known[0] is not raw:
                # The mapping is kept in the table, so its id() cannot be reused meanwhile.
                known = raws[id(raw)] = (raw, _ENCODE(dict(raw)) if raw else "{}")
            out.append(_json_text(e, known[1]))
        except TypeError:
            out.append(_ENCODE(e.to_json()))
    return out


def _json_text(e: SensEvent, raw: str | None = None) -> str:
    """to_json()'s text, built directly (the event's own JSON is the journal's hot path);
    ``raw``: the text of ``e.raw`` when known.

    TypeError for a field that is not of its declared type."""
    classes = _CLASSES_TEXT.get(e.classes)
    if classes is None:
        classes = _CLASSES_TEXT[e.classes] = _ENCODE([str(c) for c in e.classes])
    seq = e.seq
    if seq is not None and type(seq) is not int:
        raise TypeError("seq")
    remote, synthesized = e.remote, e.synthesized
    if type(remote) is not bool or type(synthesized) is not bool:
        raise TypeError("remote")
    cn, ct, qoc, ds, bp = (e.connection, e.connection_type, e.qoc, e.destination,
                           e.battery_percent)
    if (ct is not None and type(ct) is not int) or (bp is not None and type(bp) is not int):
        raise TypeError("connection_type")
    q = _quote
    u, d, s, n, t = e.user_name, e.domain, e.session_id, e.session_name, e.session_type
    y, a, c, ca, li, r = e.tty, e.seat, e.client_name, e.client_address, e.logon_id, e.reason
    return "".join((
        '{"id": ', q(e.id), "" if seq is None else f', "seq": {seq}',
        ', "time": "', format_time(e.time), '", "observed": "', format_time(e.observed),
        '", "host": ', q(e.host), ', "source": ', q(e.source), ', "method": ', q(str(e.method)),
        ', "classes": ', classes,
        ', "user_name": ', "null" if u is None else q(u),
        ', "domain": ', "null" if d is None else q(d),
        ', "session_id": ', "null" if s is None else q(s),
        ', "session_name": ', "null" if n is None else q(n),
        ', "session_type": ', "null" if t is None else q(t),
        ', "tty": ', "null" if y is None else q(y),
        ', "seat": ', "null" if a is None else q(a),
        ', "remote": ', "true" if remote else "false",
        ', "client_name": ', "null" if c is None else q(c),
        ', "client_address": ', "null" if ca is None else q(ca),
        ', "logon_id": ', "null" if li is None else q(li),
        ', "reason": ', "null" if r is None else q(r),
        ', "synthesized": ', "true" if synthesized else "false",
        ', "connection": ', "null" if cn is None else q(cn),
        ', "connection_type": ', "null" if ct is None else str(ct),
        ', "qoc": ', "null" if qoc is None else _qoc_text(qoc),
        ', "destination": ', "null" if ds is None else q(ds),
        ', "battery_percent": ', "null" if bp is None else str(bp),
        ', "raw": ', raw if raw is not None else _ENCODE(dict(e.raw)) if e.raw else "{}", "}",
    ))


def _check(name: str, value: Any) -> Any:
    if name in ("time", "observed"):
        return parse_time(value) if isinstance(value, str) else _bad(name, value, "an ISO time")
    if name == "seq":
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        return _bad(name, value, "an integer")
    if name in _BOOL_FIELDS:
        return value if isinstance(value, bool) else _bad(name, value, "true or false")
    if name == "raw":
        return value if isinstance(value, Mapping) else _bad(name, value, "an object")
    if name in _INT_FIELDS:
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        return _bad(name, value, "an integer")
    if name == "qoc":
        return None if value is None else _check_qoc(value)
    if name == "session_id" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if value is None or isinstance(value, str):
        return value
    return _bad(name, value, "a string")


#: The text fields the checking constructor looks into (SensEvent.trusted's callers make theirs
#: from decoded bytes, with "replace"). The store keeps them as columns: PostgreSQL text takes
#: no NUL, and nothing outside Python takes a lone surrogate (which JSON's "\ud800" and
#: os.fsdecode of a non-UTF-8 argument both make).
_TEXT_FIELDS = (
    "id", "host", "source", "user_name", "domain", "session_id", "session_name", "session_type",
    "tty", "seat", "client_name", "client_address", "logon_id", "reason", "connection",
    "destination",
)


_ID_TEXT = re.compile(r"[\x21-\x7e]{1,128}").fullmatch


def _check_unicode(name: str, value: str) -> None:
    """``value`` can be written as UTF-8 (no lone surrogate)."""
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError as e:
            raise EventError(f"field {name!r} is not Unicode text: a lone surrogate "
                             f"U+{ord(value[e.start]):04X} at {e.start}") from None


def _check_text(name: str, value: str) -> None:
    if "\x00" in value:
        raise EventError(f"field {name!r} holds a NUL character (at {value.index(chr(0))})")
    _check_unicode(name, value)


def _check_raw(value: Any, where: str = "raw", depth: int = 0) -> None:
    """Every key and string in ``raw`` can be written as UTF-8 (a NUL is fine there: the body
    escapes it)."""
    if depth > 100:
        raise EventError(f"field {where!r} is nested deeper than 100 levels")
    if isinstance(value, str):
        _check_unicode(where, value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_raw(key, f"{where}.{key!s:.40}", depth + 1)
            _check_raw(item, f"{where}.{key!s:.40}", depth + 1)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_raw(item, f"{where}[{i}]", depth + 1)


def _bad(name: str, value: Any, what: str) -> Any:
    raise EventError(f"field {name!r} must be {what}, not {json.dumps(value, default=str)}")
