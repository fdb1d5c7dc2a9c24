"""Windows event log records -> observations: the pure half of the .evtx reader. No I/O.

:func:`parse_record` turns one record (the JSON shape the ``evtx`` package gives) into a
:class:`Record` when it is one of the records SENS cares about (docs/sources.md);
:func:`correlate` takes the records of any number of logs, puts them in time order (record
order is not time order, and each channel is its own file) and yields what they mean as
observations for the tracker.

One occurrence is often logged twice: a logon as Security 4624 and LSM 21, a reconnect as LSM 25
and Security 4778, a disconnect as LSM 24 and 4779, a logoff as 4647 (and 4634) and LSM 23.
Security records carry a logon id but no session id; LSM records carry the session id but no logon
id. The two are tied when they name the same user within :data:`MATCH_WINDOW` of each other, also
when the log began after the session's logon (a session first seen in mid-life, or only by its
end): every record of that logon id gets the session id of the LSM record, and the tied LSM record
gets the logon id, so the tracker keys them all by one session and its rules (Logoff once,
Disconnect / Reconnect alternate) make one event of the occurrence. A tied logon, disconnect or
reconnect also becomes one observation (at the Security record's time), since each record has
fields the other lacks (client, session name); a tied logoff stays two reports of one session (the
tracker keeps the first, so its time is the first record's). A Security record never tied to an
LSM record keeps ``session_id`` null (never invented) and is keyed by its logon id.

The tracker, not this module, decides what counts as one occurrence; what this module decides is
which session each record is about. That needs what only the reader has: both logs whole (the
partner record may come before or after), and Windows' facts (which event ids pair, which ids each
channel carries, the split token's two logon ids).

Decisions the sources leave open (see also the module docs of :mod:`pysens.sources.evtx`):

* 4624 counts for LogonType 2, 10 and 11 only. Windows logs a pair of them for one interactive
  logon of an administrator (the split UAC token, same user and time, linked by
  ``TargetLinkedLogonId`` on newer systems): the second is an alias of the first. When the log
  began after that logon, the two tokens' 4634s of one user at one instant are one logoff (the
  logon id seen first names the session). A 4624 that is
  the authentication of a reconnect (followed by LSM 25 or 4778 rather than LSM 21) is no Logon.
  Window Manager (DWM-n), font driver (UMFD-n), SYSTEM and machine accounts are not users.
* 4634 is a Logoff only for interactive logon ids (or, for a logon before the log began, when its
  LogonType is 2, 10 or 11), and not when it follows a disconnect of that session: Windows closes
  the connection's logon then, not the session (unless an LSM 23 a moment away says that the
  session did end).
* RemoteConnectionManager 1149 only says that network-level authentication succeeded (it is
  logged even when the logon then fails): no event. Winlogon 7001/7002 (System log) carry a SID,
  not a user name: no event.
* LSM 40's reason code (and LSM 39's disconnecting session when it is another one) becomes the
  ``reason`` of the disconnect it belongs to (same session, within the window).
* Boot records (Security 4608, EventLog 6005, Kernel-General 12) end every session still open
  with reason ``boot``; 6008 and Kernel-Power 41 (the previous shutdown was unexpected) with
  ``crash``; shutdown records (4609, EventLog 1100 and 6006, Kernel-General 13) with ``shutdown``.
  Logon ids are unique only per boot, so ties are forgotten at each boot.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..events import Method, parse_time
from ..observations import HostReset, Observation, SessionInfo, SessionRecord

__all__ = [
    "INTERACTIVE_LOGON_TYPES",
    "MATCH_WINDOW",
    "RELEVANT_EVENT_IDS",
    "SOURCE",
    "Record",
    "RecordError",
    "correlate",
    "disconnect_reason",
    "parse_record",
]

SOURCE = "evtx"
#: Security and LSM records of one occurrence are at most this far apart.
MATCH_WINDOW = timedelta(seconds=10)
#: 2 Interactive, 10 RemoteInteractive, 11 CachedInteractive (docs/sources.md).
INTERACTIVE_LOGON_TYPES = frozenset({2, 10, 11})
# Two interactive 4624s of one user this close together are one logon (the split UAC token).
_TWIN_WINDOW = timedelta(seconds=1)

SEC = "microsoft-windows-security-auditing"
LSM = "microsoft-windows-terminalservices-localsessionmanager"
_KINDS: Mapping[tuple[str, int], str] = {
    (SEC, 4624): "logon", (SEC, 4634): "logoff", (SEC, 4647): "logoff",
    (SEC, 4778): "reconnect", (SEC, 4779): "disconnect",
    (SEC, 4800): "lock", (SEC, 4801): "unlock", (SEC, 4802): "saver_on", (SEC, 4803): "saver_off",
    (SEC, 4608): "boot", (SEC, 4609): "shutdown", ("microsoft-windows-eventlog", 1100): "shutdown",
    (LSM, 21): "logon", (LSM, 22): "shell", (LSM, 23): "logoff", (LSM, 24): "disconnect",
    (LSM, 25): "reconnect", (LSM, 39): "who", (LSM, 40): "why",
    ("eventlog", 6005): "boot", ("eventlog", 6006): "shutdown", ("eventlog", 6008): "crash",
    ("microsoft-windows-kernel-general", 12): "boot",
    ("microsoft-windows-kernel-general", 13): "shutdown",
    ("microsoft-windows-kernel-power", 41): "crash",
}
#: Every EventID :func:`parse_record` may keep (a cheap filter before decoding a record).
RELEVANT_EVENT_IDS = frozenset(eid for _, eid in _KINDS)
_METHODS: Mapping[str, Method] = {
    "logon": Method.Logon, "shell": Method.PostShell, "logoff": Method.Logoff,
    "disconnect": Method.SessionDisconnect, "reconnect": Method.SessionReconnect,
    "lock": Method.DisplayLock, "unlock": Method.DisplayUnlock,
    "saver_on": Method.StartScreenSaver, "saver_off": Method.StopScreenSaver,
}
_RESETS = {"boot": "boot", "crash": "crash", "shutdown": "shutdown"}

#: ExtendedDisconnectReasonCode (LSM 40), learn.microsoft.com TermServ docs.
_REASONS: Mapping[int, str] = {
    0: "NoInfo", 1: "APIInitiatedDisconnect", 2: "APIInitiatedLogoff", 3: "ServerIdleTimeout",
    4: "ServerLogonTimeout", 5: "ReplacedByOtherConnection", 6: "OutOfMemory",
    7: "ServerDeniedConnection", 8: "ServerDeniedConnectionFips",
    9: "ServerInsufficientPrivileges", 10: "ServerFreshCredsRequired",
    11: "RpcInitiatedDisconnectByUser", 12: "LogoffByUser", 768: "RdpEncInvalidCredentials",
}
# Service and virtual accounts that log on interactively without being a user.
_NOT_USER_DOMAINS = frozenset({"window manager", "font driver host", "nt authority", "nt service"})
_NOT_USER_SIDS = ("S-1-5-18", "S-1-5-19", "S-1-5-20", "S-1-5-90-", "S-1-5-96-")


class RecordError(ValueError):
    """A relevant record lacks a field it must have, or has one of the wrong form."""


def disconnect_reason(code: int) -> str:
    """``RpcInitiatedDisconnectByUser (11)`` for LSM 40's reason code 11."""
    if code in _REASONS:
        name = _REASONS[code]
    elif 256 <= code <= 267:
        name = "Licensing"
    elif 4096 <= code <= 32767:
        name = "Protocol"
    else:
        name = "Unknown"
    return f"{name} ({code})"


@dataclass(slots=True)
class Record:
    """One relevant event log record, its fields normalized."""

    path: str
    number: int
    time: datetime
    host: str
    channel: str
    event_id: int
    kind: str
    data: dict[str, Any]
    raw: dict[str, Any]
    user: str | None = None
    domain: str | None = None
    logon_id: str | None = None
    session_id: str | None = None
    logon_type: int | None = None
    session_name: str | None = None
    client_name: str | None = None
    client_address: str | None = None
    remote: bool = False
    is_user: bool = True
    lsm: bool = False
    order: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _text(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v).strip()
    return s if s and s != "-" else None


def _int(v: Any, name: str) -> int:
    try:
        if isinstance(v, str):
            v = v.strip()
            return int(v, 16) if v[:2].lower() == "0x" else int(v)
        return int(v)
    except (TypeError, ValueError):
        raise RecordError(f"field {name} is {v!r}, not a number") from None


def _logon_id(v: Any) -> str | None:
    if v is None:
        return None
    return hex(_int(v, "LogonId"))


def _address(v: Any) -> str | None:
    """An IP address, or None (console: ``LOCAL``, localized as ``YEREL`` and so on)."""
    s = _text(v)
    if s is None:
        return None
    try:
        ipaddress.ip_address(s.strip("[]"))
    except ValueError:
        return None
    return s


def _payload(event: Mapping[str, Any]) -> dict[str, Any]:
    data = event.get("EventData")
    if not isinstance(data, Mapping):
        user_data = event.get("UserData")
        data = next(iter(user_data.values()), None) if isinstance(user_data, Mapping) else None
    if not isinstance(data, Mapping):
        return {}
    return {k: v for k, v in data.items() if not k.startswith("#")}


def _split_user(value: Any) -> tuple[str | None, str | None]:
    s = _text(value)
    if s is None:
        return None, None
    domain, sep, user = s.rpartition("\\")
    return (user or None), (domain or None) if sep else None


def _host(computer: Any) -> str:
    return (str(computer or "").split(".")[0]) or "unknown"


def parse_record(event: Mapping[str, Any], number: int, path: str = "") -> Record | None:
    """The :class:`Record` for one decoded record (``{"Event": {...}}`` or its inside), or None
    when it is not one SENS reads. Raises :class:`RecordError` when it is, but is malformed."""
    ev = event.get("Event", event)
    system = ev.get("System") if isinstance(ev, Mapping) else None
    if not isinstance(system, Mapping):
        raise RecordError("the record has no System element")
    eid_v = system.get("EventID")
    if isinstance(eid_v, Mapping):
        eid_v = eid_v.get("#text")
    event_id = _int(eid_v, "EventID")
    if event_id not in RELEVANT_EVENT_IDS:
        return None
    provider = system.get("Provider")
    pattrs = provider.get("#attributes") if isinstance(provider, Mapping) else None
    pname = str(pattrs.get("Name", "")) if isinstance(pattrs, Mapping) else ""
    kind = _KINDS.get((pname.lower(), event_id))
    if kind is None:
        return None
    created = system.get("TimeCreated")
    tattrs = created.get("#attributes") if isinstance(created, Mapping) else None
    stamp = tattrs.get("SystemTime") if isinstance(tattrs, Mapping) else None
    if not isinstance(stamp, str):
        raise RecordError("the record has no TimeCreated/@SystemTime")
    try:
        time = parse_time(stamp)
    except ValueError:
        raise RecordError(f"TimeCreated/@SystemTime {stamp!r} is not a time") from None
    channel = str(system.get("Channel") or "")
    data = _payload(ev)
    raw: dict[str, Any] = {
        "EventID": event_id, "Provider": pname, "Channel": channel,
        "Computer": system.get("Computer"), "RecordNumber": number,
        "EventRecordID": system.get("EventRecordID"), "EventData": data,
    }
    rec = Record(path=path, number=number, time=time, host=_host(system.get("Computer")),
                 channel=channel, event_id=event_id, kind=kind, data=data, raw=raw,
                 lsm=pname.lower() == LSM)
    _fields(rec)
    return rec


def _fields(r: Record) -> None:
    d = r.data
    if r.lsm:
        if r.kind in ("who", "why"):
            key = "TargetSession" if r.kind == "who" else "Session"
            if d.get(key) is None:
                raise RecordError(f"field {key} is missing")
            r.session_id = str(_int(d[key], key))
            if r.kind == "who":
                r.extra["by"] = str(_int(d.get("Source"), "Source"))
            else:
                r.extra["reason"] = _int(d.get("Reason"), "Reason")
            return
        if d.get("SessionID") is None:
            raise RecordError("field SessionID is missing")
        r.session_id = str(_int(d["SessionID"], "SessionID"))
        r.user, r.domain = _split_user(d.get("User"))
        r.client_address = _address(d.get("Address"))
        r.remote = r.client_address is not None
        r.is_user = _is_user(r.user, r.domain, None)
        return
    if r.kind in _RESETS:
        return
    if r.kind in ("reconnect", "disconnect"):  # 4778 / 4779
        r.user, r.domain = _text(d.get("AccountName")), _text(d.get("AccountDomain"))
        r.logon_id = _logon_id(d.get("LogonID"))
        r.session_name = _text(d.get("SessionName"))
        r.client_address = _address(d.get("ClientAddress"))
        r.remote = r.client_address is not None
        name = _text(d.get("ClientName"))
        r.client_name = name if r.remote and name and name.lower() != "unknown" else None
    else:  # 4624, 4634, 4647, 4800-4803
        r.user, r.domain = _text(d.get("TargetUserName")), _text(d.get("TargetDomainName"))
        r.logon_id = _logon_id(d.get("TargetLogonId"))
        if "LogonType" in d:
            r.logon_type = _int(d["LogonType"], "LogonType")
        if d.get("SessionId") is not None:
            r.session_id = str(_int(d["SessionId"], "SessionId"))
        if r.event_id == 4624 and r.logon_type == 10:
            r.remote = True
            r.client_address = _address(d.get("IpAddress"))
            r.client_name = _text(d.get("WorkstationName"))
        if r.event_id == 4624 and d.get("TargetLinkedLogonId") not in (None, "0x0", 0):
            r.extra["linked"] = _logon_id(d.get("TargetLinkedLogonId"))
    if r.logon_id is None:
        raise RecordError("it names no logon id")
    r.is_user = _is_user(r.user, r.domain, _text(d.get("TargetUserSid")))


def _is_user(user: str | None, domain: str | None, sid: str | None) -> bool:
    if not user or user.endswith("$"):
        return False
    if domain and domain.lower() in _NOT_USER_DOMAINS:
        return False
    return not (sid and sid.upper().startswith(_NOT_USER_SIDS))


def correlate(records: Iterable[Record]) -> Iterator[Observation]:
    """The observations of ``records`` (from one or more logs), in time order."""
    recs = sorted(records, key=lambda r: (r.time, r.order, r.number))
    plan = _Plan(recs)
    return plan.observations()


def _user_key(r: Record) -> tuple[str, str]:
    return (r.host, (r.user or "").lower())


class _Plan:
    """Pass one ties records together; pass two emits observations along those ties."""

    def __init__(self, recs: list[Record]) -> None:
        self.recs = recs
        self.skip: set[int] = set()
        self.partner: dict[int, int] = {}  # Security record -> the LSM record merged into it
        self.auth_only: set[int] = set()
        self.reason: dict[int, str] = {}
        self.sid: dict[tuple[str, int, str], str] = {}  # (host, boot, logon id) -> session id
        self.alias: dict[tuple[str, int, str], str] = {}
        self.interactive: set[tuple[str, int, str]] = set()
        self.not_session: set[tuple[str, int, str]] = set()
        self.first_seen: dict[tuple[str, int, str], int] = {}  # logon id -> its first record
        # LSM 23 -> the logon id of the Security logoff tied to it
        self.logon_of: dict[int, tuple[str, int, str]] = {}
        self.tied_end: set[int] = set()  # Security logoffs that an LSM 23 confirms
        # (host, user, kind) -> [(time, index)], for the records a Security record may pair with
        self.index: dict[tuple[str, str, str], list[tuple[datetime, int]]] = {}
        for i, r in enumerate(recs):
            if r.is_user and ((r.lsm and r.kind in ("logon", "reconnect", "disconnect", "logoff"))
                              or (not r.lsm and r.kind == "reconnect")):
                key = (*_user_key(r), ("lsm-" if r.lsm else "sec-") + r.kind)
                self.index.setdefault(key, []).append((r.time, i))
        self._tie()

    def _nearest(
        self, r: Record, kinds: tuple[str, ...], fits: Callable[[int], bool] | None = None,
    ) -> tuple[str, int] | None:
        best: tuple[timedelta, str, int] | None = None
        for kind in kinds:
            items = self.index.get((*_user_key(r), kind), [])
            lo = bisect.bisect_left(items, (r.time - MATCH_WINDOW, -1))
            for t, j in items[lo:]:
                if t > r.time + MATCH_WINDOW:
                    break
                if j in self.skip or (fits is not None and not fits(j)):
                    continue
                gap = abs(t - r.time)
                if best is None or gap < best[0]:
                    best = (gap, kind, j)
        return None if best is None else (best[1], best[2])

    def _canon(self, key: tuple[str, int, str]) -> tuple[str, int, str]:
        while (alias := self.alias.get(key)) is not None and alias != key[2]:
            key = (key[0], key[1], alias)
        return key

    def _join(self, a: tuple[str, int, str], b: tuple[str, int, str]) -> None:
        """Logon ids ``a`` and ``b`` are one session: the one seen first names it."""
        a, b = self._canon(a), self._canon(b)
        if a == b:
            return
        never = len(self.recs)
        if self.first_seen.get(b, never) < self.first_seen.get(a, never):
            a, b = b, a
        self.alias[b] = a[2]
        if b in self.sid:
            self.sid.setdefault(a, self.sid[b])

    def _tie(self) -> None:
        boot: dict[str, int] = {}
        last_logon: dict[tuple[str, str, int], tuple[datetime, str]] = {}
        # (host, user, logon type) -> the last 4634 of a logon id whose logon the log does not show
        last_end: dict[tuple[str, str, int], tuple[datetime, tuple[str, int, str]]] = {}
        for i, r in enumerate(self.recs):
            if r.kind in ("boot", "crash"):
                boot[r.host] = boot.get(r.host, 0) + 1
                continue
            if r.lsm or r.logon_id is None:
                continue
            epoch = boot.get(r.host, 0)
            self.first_seen.setdefault((r.host, epoch, r.logon_id), i)
            key = self._canon((r.host, epoch, r.logon_id))
            if r.kind == "logon":
                if not r.is_user or r.logon_type not in INTERACTIVE_LOGON_TYPES:
                    self.not_session.add(key)
                    continue
                twin_key = (r.host, (r.user or "").lower(), r.logon_type)
                prev = last_logon.get(twin_key)
                linked = r.extra.get("linked")
                if prev is not None and (linked == prev[1] or r.time - prev[0] <= _TWIN_WINDOW):
                    self.alias[key] = prev[1]
                    self.skip.add(i)
                    continue
                last_logon[twin_key] = (r.time, r.logon_id)
                found = self._nearest(r, ("lsm-logon", "lsm-reconnect", "sec-reconnect"))
                if found is not None and found[0] != "lsm-logon":
                    self.auth_only.add(i)  # the authentication of a reconnect, not a new session
                    self.not_session.add(key)
                    continue
                self.interactive.add(key)
                if found is not None:
                    self._merge(i, found[1], key)
            elif r.kind in ("reconnect", "disconnect") and r.is_user:
                found = self._nearest(r, (f"lsm-{r.kind}",))
                if found is not None:
                    self._merge(i, found[1], key)
            elif r.kind == "logoff" and r.is_user and self._ends_session(r, key):
                key = self._tie_end(i, r, key, last_end)
            elif r.session_id is not None:  # 4800-4803 name both ids
                self.sid.setdefault(key, r.session_id)
        self._reasons()

    def _tie_end(
        self, i: int, r: Record, key: tuple[str, int, str],
        last_end: dict[tuple[str, str, int], tuple[datetime, tuple[str, int, str]]],
    ) -> tuple[str, int, str]:
        """A session-ending 4647 / 4634: the split token's other half, and its LSM 23."""
        if r.logon_type is not None and key not in self.interactive:
            twin = (*_user_key(r), r.logon_type)
            prev = last_end.get(twin)
            if prev is not None and prev[1] != key and r.time - prev[0] <= _TWIN_WINDOW:
                self._join(key, prev[1])
                key = self._canon(key)
            last_end[twin] = (r.time, key)

        def fits(j: int) -> bool:
            # Not another session's end: not one tied to another logon id, nor of a session
            # id other than the one this logon id already has.
            tied = self.logon_of.get(j)
            if tied is not None and self._canon(tied) != key:
                return False
            sid = self.sid.get(key)
            return sid is None or sid == self.recs[j].session_id

        found = self._nearest(r, ("lsm-logoff",), fits)
        if found is not None:
            j = found[1]
            self.logon_of.setdefault(j, key)
            self.tied_end.add(i)
            sid = self.recs[j].session_id
            if sid is not None:
                self.sid.setdefault(key, sid)
        return key

    def _merge(self, i: int, j: int, key: tuple[str, int, str]) -> None:
        self.partner[i] = j
        self.skip.add(j)
        sid = self.recs[j].session_id
        if sid is not None:
            self.sid.setdefault(key, sid)

    def _reasons(self) -> None:
        """LSM 40 (why) and 39 (by whom) become the reason of their session's disconnect."""
        last: dict[tuple[str, str], int] = {}  # (host, session) -> the last disconnect record
        for i, r in enumerate(self.recs):
            if not r.lsm or r.session_id is None:
                continue
            key = (r.host, r.session_id)
            if r.kind == "disconnect":
                last[key] = i
            elif r.kind in ("logon", "reconnect", "logoff"):
                last.pop(key, None)
            elif r.kind in ("who", "why") and key in last:
                j = last[key]
                if r.time - self.recs[j].time > MATCH_WINDOW:
                    continue
                if r.kind == "why":
                    text = disconnect_reason(r.extra["reason"])
                    self.reason[j] = text + self.reason.get(j, "")
                elif r.extra["by"] != r.session_id:
                    self.reason[j] = self.reason.get(j, "") + f"; by session {r.extra['by']}"

    # -- pass two ----------------------------------------------------------------------------

    def observations(self) -> Iterator[Observation]:
        boot: dict[str, int] = {}
        disconnected: dict[tuple[str, str], datetime] = {}
        # The disconnect's LSM record may be merged into its 4779: find reasons by either.
        reason_of = dict(self.reason)
        for i, j in self.partner.items():
            if j in self.reason:
                reason_of[i] = self.reason[j]
        for i, r in enumerate(self.recs):
            if r.kind in _RESETS:
                if r.kind != "shutdown":
                    boot[r.host] = boot.get(r.host, 0) + 1
                yield HostReset(r.time, SOURCE, _RESETS[r.kind], host=r.host)
                continue
            if i in self.skip or i in self.auth_only or r.kind in ("who", "why") or not r.is_user:
                continue
            logon_id = None
            session_id = r.session_id
            if i in self.logon_of:  # an LSM 23 tied to its Security logoff
                logon_id = self._canon(self.logon_of[i])[2]
            if r.logon_id is not None:
                key = self._canon((r.host, boot.get(r.host, 0), r.logon_id))
                logon_id = key[2]
                if r.kind == "logoff" and not self._ends_session(r, key):
                    continue
                if r.kind == "logon" and key not in self.interactive:
                    continue
                session_id = self.sid.get(key, session_id)
            p = self.partner.get(i)
            other = self.recs[p] if p is not None else None
            skey = (r.host, session_id or f"logon_id:{logon_id}")
            if r.kind == "disconnect":
                disconnected[skey] = r.time
            elif r.kind == "logoff" and r.event_id == 4634:
                since = disconnected.get(skey)
                if since is not None and r.time - since <= MATCH_WINDOW and (
                        i not in self.tied_end):
                    continue  # the connection's logon closing after a disconnect
            elif r.kind in ("reconnect", "logon"):
                disconnected.pop(skey, None)
            raw = r.raw if other is None else {**r.raw, "merged": [other.raw]}
            info = SessionInfo(
                session_id=session_id, user_name=r.user or (other.user if other else None),
                domain=r.domain or (other.domain if other else None),
                session_name=r.session_name, remote=r.remote or bool(other and other.remote),
                client_name=r.client_name,
                client_address=r.client_address or (other.client_address if other else None),
                logon_id=logon_id, since=r.time, raw=raw,
            )
            yield SessionRecord(r.time, SOURCE, _METHODS[r.kind], info,
                                reason=reason_of.get(i), host=r.host)

    def _ends_session(self, r: Record, key: tuple[str, int, str]) -> bool:
        if key in self.not_session:
            return False
        if key in self.interactive or key in self.sid:
            return True
        # The log began after this logon: 4647 is always interactive; 4634 says its type.
        return r.event_id == 4647 or r.logon_type in INTERACTIVE_LOGON_TYPES
