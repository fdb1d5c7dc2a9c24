"""WTS session notifications -> observations: the pure half of the ``wts`` source. No I/O.

Windows tells a registered window (``WM_WTSSESSION_CHANGE``) or a service
(``SERVICE_CONTROL_SESSIONCHANGE``) a *code* and a *session id*, nothing else; who the user is,
where the client is and whether the session is connected must be read with
``WTSQuerySessionInformationW`` at that moment. :func:`read_state` assembles those reads into a
:class:`SessionState` (each buffer decoded here from its documented layout), and
:class:`WtsTranslator` turns ``(code, session id, state, what it remembers)`` into
:mod:`pysens.observations` for the tracker, which applies the SENS rules.

One user action yields several codes (published observations, cited in tests/test_wts_translate.py):

* a fast user switch: CONSOLE_DISCONNECT(old user) -> CONSOLE_CONNECT(logon UI) ->
  CONSOLE_DISCONNECT(logon UI) -> CONSOLE_CONNECT(new user's session) -> SESSION_UNLOCK(new);
* logoff at the console: SESSION_LOGOFF(user) -> CONSOLE_DISCONNECT(user) ->
  CONSOLE_CONNECT(logon UI);
* a new RDP logon: REMOTE_CONNECT -> SESSION_LOGON; an RDP reconnect: REMOTE_CONNECT(logon UI)
  ... REMOTE_DISCONNECT(logon UI) -> REMOTE_CONNECT(the user's existing session);
* lock: SESSION_LOCK alone.

What the translator decides (the rules the codes alone leave open):

* A session is a user session from SESSION_LOGON (or the snapshot, or its logon time before
  watching began) until SESSION_LOGOFF / SESSION_TERMINATE. Codes for any other session — the
  logon-UI session, the services session, the RDP listener — give nothing.
* A ``*_CONNECT`` on a user session is a SessionReconnect (never a Logon); on any other session
  it is only remembered: a new logon's connect comes before its SESSION_LOGON, and the query may
  already name the user then.
* SESSION_DESKTOP_READY (0xF) is the PostShell; without it (older Windows) there is none.
* SESSION_LOCK / SESSION_UNLOCK are DisplayLock / DisplayUnlock; the tracker lets an unlock through
  only after a lock it knows of — the snapshot's WTSINFOEX lock flag counts (a session waiting
  behind a fast user switch is reported locked there), a switch that sent no SESSION_LOCK does not.
* SESSION_TERMINATE of a session still logged on (its LOGOFF was missed) is a synthesized Logoff.
* A query that fails leaves its fields null (a ``logging.debug`` line names the query and the
  error); the event still fires with what the translator remembers. A SESSION_LOGON whose user
  could not be read is remembered and fired at the session's next code that names the user.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any

from ..events import Method, format_time
from ..observations import (
    Observation,
    SessionAppeared,
    SessionInfo,
    SessionRecord,
    SessionVanished,
)

__all__ = [
    "SERVICE_ACCEPT_SESSIONCHANGE",
    "SERVICE_CONTROL_SESSIONCHANGE",
    "SOURCE",
    "WM_WTSSESSION_CHANGE",
    "ConnectState",
    "InfoClass",
    "QueryFailure",
    "SessionState",
    "WtsCode",
    "WtsQueryError",
    "WtsTranslator",
    "decode_client_address",
    "decode_session_flags",
    "decode_string",
    "decode_wtsinfo",
    "filetime",
    "read_state",
]

SOURCE = "wts"
log = logging.getLogger("pysens.sources.wts")

WM_WTSSESSION_CHANGE = 0x02B1
SERVICE_CONTROL_SESSIONCHANGE = 0x0E
SERVICE_ACCEPT_SESSIONCHANGE = 0x80


class WtsCode(IntEnum):
    """The ``wParam`` of WM_WTSSESSION_CHANGE / ``dwEventType`` of SERVICE_CONTROL_SESSIONCHANGE."""

    CONSOLE_CONNECT = 0x1
    CONSOLE_DISCONNECT = 0x2
    REMOTE_CONNECT = 0x3
    REMOTE_DISCONNECT = 0x4
    SESSION_LOGON = 0x5
    SESSION_LOGOFF = 0x6
    SESSION_LOCK = 0x7
    SESSION_UNLOCK = 0x8
    SESSION_REMOTE_CONTROL = 0x9
    SESSION_CREATE = 0xA
    SESSION_TERMINATE = 0xB
    SESSION_DESKTOP_READY = 0xF


class ConnectState(IntEnum):
    """WTS_CONNECTSTATE_CLASS."""

    Active = 0
    Connected = 1
    ConnectQuery = 2
    Shadow = 3
    Disconnected = 4
    Idle = 5
    Listen = 6
    Reset = 7
    Down = 8
    Init = 9


class InfoClass(IntEnum):
    """The WTS_INFO_CLASS values pysens reads."""

    WTSUserName = 5
    WTSWinStationName = 6
    WTSDomainName = 7
    WTSConnectState = 8
    WTSClientName = 10
    WTSClientAddress = 14
    WTSClientProtocolType = 16
    WTSSessionInfo = 24
    WTSSessionInfoEx = 25


_ERRORS = {
    5: "access denied", 50: "not supported", 87: "invalid parameter",
    1702: "RPC binding invalid (Remote Desktop Services not started)",
    1722: "RPC server unavailable", 7022: "session not found",
}


class WtsQueryError(OSError):
    """A WTS call failed; ``winerror`` is GetLastError()."""

    def __init__(self, winerror: int) -> None:
        super().__init__(winerror, _ERRORS.get(winerror, f"error {winerror}"))
        self.winerror_code = winerror


@dataclass(frozen=True, slots=True)
class QueryFailure:
    """One query that failed while reading a session's state."""

    query: str
    error: int

    def __str__(self) -> str:
        return f"{self.query} failed: {_ERRORS.get(self.error, 'error')} ({self.error})"


@dataclass(frozen=True, slots=True)
class SessionState:
    """What WTSQuerySessionInformationW said about one session at one moment (None: unknown)."""

    session_id: int
    user_name: str | None = None
    domain: str | None = None
    session_name: str | None = None  # WinStationName: Console, RDP-Tcp#6
    client_name: str | None = None
    client_address: str | None = None
    connect_state: int | None = None
    protocol: int | None = None  # WTSClientProtocolType: 0 console, 1 ICA, 2 RDP
    logon_time: datetime | None = None
    connect_time: datetime | None = None
    disconnect_time: datetime | None = None
    locked: bool | None = None
    failures: tuple[QueryFailure, ...] = field(default=())


# -- decoding the buffers WTSQuerySessionInformationW returns -----------------------------------

_EPOCH_1601 = datetime(1601, 1, 1, tzinfo=UTC)
# WTSINFOW: State, SessionId, six DWORD counters, WinStationName[32], Domain[17], UserName[21]
# (WCHARs), 4 bytes of padding, then five LARGE_INTEGERs (100 ns since 1601) — 216 bytes.
_WTSINFO = struct.Struct("<8I64s34s42s4x5q")
_AF_INET, _AF_INET6 = 2, 23


def filetime(value: int) -> datetime | None:
    """A FILETIME / LARGE_INTEGER time (100 ns since 1601, UTC); 0 or less is unknown."""
    if value <= 0:
        return None
    try:
        return _EPOCH_1601 + timedelta(microseconds=value // 10)
    except OverflowError:
        return None


def decode_string(data: bytes) -> str | None:
    """A NUL-terminated UTF-16LE string; empty is None."""
    text = data.decode("utf-16-le", "replace").split("\0", 1)[0].strip()
    return text or None


def decode_client_address(data: bytes) -> str | None:
    """WTS_CLIENT_ADDRESS {DWORD AddressFamily; BYTE Address[20]}: IPv4 bytes start at offset 2
    of Address, IPv6 at 0. None for AF_UNSPEC, an all-zero address or a short buffer."""
    if len(data) < 8:
        return None
    family = int.from_bytes(data[:4], "little")
    address = data[4:24]
    if family == _AF_INET and len(address) >= 6 and any(address[2:6]):
        return ".".join(str(b) for b in address[2:6])
    if family == _AF_INET6 and len(address) >= 16 and any(address[:16]):
        import ipaddress

        return str(ipaddress.IPv6Address(bytes(address[:16])))
    return None


def decode_wtsinfo(data: bytes) -> dict[str, Any]:
    """The fields of a WTSINFOW buffer pysens uses; ValueError when it is too short."""
    if len(data) < _WTSINFO.size:
        raise ValueError(f"WTSINFOW is {_WTSINFO.size} bytes, got {len(data)}")
    f = _WTSINFO.unpack_from(data)
    return {
        "connect_state": f[0], "session_name": decode_string(f[8]), "domain": decode_string(f[9]),
        "user_name": decode_string(f[10]), "connect_time": filetime(f[11]),
        "disconnect_time": filetime(f[12]), "logon_time": filetime(f[14]),
    }


def decode_session_flags(data: bytes, *, reversed_flags: bool = False) -> bool | None:
    """Locked? from WTSINFOEXW (Level 1): SessionFlags at offset 16, WTS_SESSIONSTATE_LOCK 0,
    UNLOCK 1, else unknown. Windows 7 / 2008 R2 report the two the other way round."""
    if len(data) < 20 or int.from_bytes(data[:4], "little") != 1:
        return None
    flags = int.from_bytes(data[16:20], "little", signed=True)
    if flags not in (0, 1):
        return None
    return (flags == 1) if reversed_flags else (flags == 0)


def read_state(
    session_id: int, fetch: Callable[[int, int], bytes], *, reversed_flags: bool = False
) -> SessionState:
    """A session's state from ``fetch(session_id, info_class) -> buffer`` (the Win32 call), one
    query per field group; a query raising :class:`WtsQueryError` (or a buffer that does not
    decode) leaves its fields None and is listed in ``failures``."""
    failures: list[QueryFailure] = []
    fields: dict[str, Any] = {}

    def get(cls: InfoClass) -> bytes | None:
        try:
            return fetch(session_id, cls)
        except WtsQueryError as e:
            failures.append(QueryFailure(cls.name, e.winerror_code))
            return None

    info = get(InfoClass.WTSSessionInfo)
    if info is not None:
        try:
            fields.update(decode_wtsinfo(info))
        except ValueError:
            failures.append(QueryFailure(InfoClass.WTSSessionInfo.name, 13))  # ERROR_INVALID_DATA
            info = None
    if info is None:
        # WTSSessionInfo refused: the single-value classes may still answer.
        for cls, name in ((InfoClass.WTSUserName, "user_name"),
                          (InfoClass.WTSDomainName, "domain"),
                          (InfoClass.WTSWinStationName, "session_name")):
            data = get(cls)
            if data is not None:
                fields[name] = decode_string(data)
        data = get(InfoClass.WTSConnectState)
        if data is not None and len(data) >= 4:
            fields["connect_state"] = int.from_bytes(data[:4], "little")
    data = get(InfoClass.WTSClientName)
    if data is not None:
        fields["client_name"] = decode_string(data)
    data = get(InfoClass.WTSClientAddress)
    if data is not None:
        fields["client_address"] = decode_client_address(data)
    data = get(InfoClass.WTSClientProtocolType)
    if data is not None and len(data) >= 2:
        fields["protocol"] = int.from_bytes(data[:2], "little")
    data = get(InfoClass.WTSSessionInfoEx)
    if data is not None:
        fields["locked"] = decode_session_flags(data, reversed_flags=reversed_flags)
    return SessionState(session_id, failures=tuple(failures), **fields)


# -- the translation ----------------------------------------------------------------------------

_CONNECT = frozenset({WtsCode.CONSOLE_CONNECT, WtsCode.REMOTE_CONNECT})
_DISCONNECT = frozenset({WtsCode.CONSOLE_DISCONNECT, WtsCode.REMOTE_DISCONNECT})
_REMOTE_CODES = frozenset({WtsCode.REMOTE_CONNECT, WtsCode.REMOTE_DISCONNECT})
_PROTOCOLS = {0: "console", 1: "ica", 2: "rdp"}
_METHODS: dict[int, Method] = {
    WtsCode.SESSION_LOCK: Method.DisplayLock, WtsCode.SESSION_UNLOCK: Method.DisplayUnlock,
    WtsCode.SESSION_DESKTOP_READY: Method.PostShell,
}


def _code_name(code: int) -> str:
    try:
        return f"WTS_{WtsCode(code).name}"
    except ValueError:
        return f"0x{code:X}"


def _state_name(value: int | None) -> str | None:
    if value is None:
        return None
    try:
        return f"WTS{ConnectState(value).name}"
    except ValueError:
        return str(value)


@dataclass(slots=True)
class _Known:
    """What the translator remembers of one session id."""

    info: SessionInfo | None = None  # the logged-on user's session; None: no user session
    logon_pending: datetime | None = None  # SESSION_LOGON seen, user not yet readable
    # May be taken for a session logged on before watching began when a code shows a user
    # (a new id, or one whose snapshot query failed); never once it has logged off.
    adoptable: bool = True


class WtsTranslator:
    """Codes and states -> observations (see the module docstring for the rules).

    Not thread-safe: one translator per source, fed in notification order.
    """

    def __init__(self, *, source: str = SOURCE, host: str | None = None) -> None:
        self.source = source
        self.host = host
        self._known: dict[int, _Known] = {}
        self._started: datetime | None = None

    def snapshot(self, states: Iterable[SessionState], time: datetime) -> list[Observation]:
        """``SessionAppeared(existing=True)`` for every session with a user, remembering all.

        Codes that arrive with a time up to ``time`` describe what the snapshot already shows.
        """
        self._started = time
        out: list[Observation] = []
        for st in states:
            _log_failures(st)
            if not st.user_name:
                self._known[st.session_id] = _Known(adoptable=bool(st.failures))
                continue
            info = replace(
                self._info(st, None, None),
                state="disconnected" if st.connect_state == ConnectState.Disconnected else "active",
                locked=st.locked, since=st.logon_time,
            )
            self._known[st.session_id] = _Known(info)
            out.append(SessionAppeared(time, self.source, info, existing=True, host=self.host))
        return out

    @property
    def user_sessions(self) -> dict[int, SessionInfo]:
        """The sessions the translator holds as logged on, by session id."""
        return {k: v.info for k, v in self._known.items() if v.info is not None}

    def translate(
        self, time: datetime, code: int, session_id: int, state: SessionState | None
    ) -> list[Observation]:
        """The observations one notification means (often none)."""
        st = state if state is not None else SessionState(session_id)
        _log_failures(st)
        known = self._known.setdefault(session_id, _Known())
        out: list[Observation] = []
        if code == WtsCode.SESSION_LOGON:
            known.adoptable = False
            return self._on_logon(known, st, time, code)
        if known.info is None and known.logon_pending is not None and st.user_name:
            out.append(self._logon(known, st, known.logon_pending, code))
        if known.info is None and known.adoptable and self._before_start(st):
            # Logged on before watching began but missed by the snapshot (its query failed).
            known.info = self._info(st, code, None)
        if code == WtsCode.SESSION_CREATE:
            known.adoptable = False
            return out
        if code == WtsCode.SESSION_TERMINATE:
            info = known.info
            del self._known[session_id]
            if info is None:
                return out
            return [*out, SessionVanished(time, self.source, info.session_id or str(session_id),
                                          reason="terminated", synthesized=True, host=self.host)]
        if known.info is None:
            if known.logon_pending is None:
                log.debug("WTS %s for session %d: no user session, nothing to report",
                          _code_name(code), session_id)
            return out
        info = self._info(st, code, known.info)
        if code == WtsCode.SESSION_LOGOFF:
            known.info = None
            known.adoptable = False
            return [*out, self._record(time, Method.Logoff, info)]
        known.info = info
        if code in _CONNECT:
            return [*out, self._record(time, Method.SessionReconnect, info)]
        if code in _DISCONNECT:
            return [*out, self._record(time, Method.SessionDisconnect, info)]
        method = _METHODS.get(code)
        if method is None:
            log.debug("WTS %s for session %d has no SENS counterpart", _code_name(code),
                      session_id)
            return out
        return [*out, self._record(time, method, info)]

    # -- helpers ---------------------------------------------------------------------------------

    def _before_start(self, st: SessionState) -> bool:
        return bool(st.user_name) and st.logon_time is not None and (
            self._started is not None and st.logon_time < self._started)

    def _on_logon(
        self, known: _Known, st: SessionState, time: datetime, code: int
    ) -> list[Observation]:
        if known.info is not None and self._started is not None and time <= self._started and (
                (known.info.user_name or "").lower() == (st.user_name or "").lower()):
            return []  # queued before the snapshot, which already holds this logon
        if not st.user_name:
            if known.info is not None:
                # The user cannot be read now; the session's previous user cannot still be
                # logged on in it, so this is the same logon reported again.
                return []
            log.debug("WTS session %d: logon seen, user not readable yet; reported when it is",
                      st.session_id)
            known.logon_pending = time
            return []
        return [self._logon(known, st, time, code)]

    def _logon(self, known: _Known, st: SessionState, time: datetime, code: int) -> Observation:
        known.logon_pending = None
        known.info = self._info(st, code, None)
        return self._record(time, Method.Logon, known.info)

    def _record(self, time: datetime, method: Method, info: SessionInfo) -> SessionRecord:
        return SessionRecord(time, self.source, method, info, host=self.host)

    def _info(self, st: SessionState, code: int | None, old: SessionInfo | None) -> SessionInfo:
        """A SessionInfo from ``st``; what ``st`` does not know comes from ``old``."""
        if st.protocol is not None:
            remote: bool | None = st.protocol != 0
        elif code in _REMOTE_CODES:
            remote = True
        elif code in (WtsCode.CONSOLE_CONNECT, WtsCode.CONSOLE_DISCONNECT):
            remote = False
        else:
            remote = None
        raw: dict[str, Any] = {"session_id": st.session_id}
        if code is not None:
            raw["wts_code"] = int(code)
            raw["wts_event"] = _code_name(code)
        for name, value in (("connect_state", _state_name(st.connect_state)),
                            ("protocol", st.protocol), ("locked", st.locked)):
            if value is not None:
                raw[name] = value
        for name, t in (("logon_time", st.logon_time), ("connect_time", st.connect_time),
                        ("disconnect_time", st.disconnect_time)):
            if t is not None:
                raw[name] = format_time(t)
        if st.failures:
            raw["failed_queries"] = [str(f) for f in st.failures]
        session_type = _PROTOCOLS.get(st.protocol) if st.protocol is not None else (
            "rdp" if remote else "console" if remote is False else None)
        if old is None:
            return SessionInfo(
                session_id=str(st.session_id), user_name=st.user_name, domain=st.domain,
                session_name=st.session_name, session_type=session_type, session_class="user",
                remote=bool(remote), client_name=st.client_name,
                client_address=st.client_address, since=st.logon_time, raw=raw,
            )
        # Once logged on, a session's user is fixed: the remembered name wins over a late read.
        return replace(
            old, session_name=st.session_name or old.session_name,
            session_type=session_type or old.session_type,
            remote=old.remote if remote is None else remote,
            client_name=st.client_name or old.client_name,
            client_address=st.client_address or old.client_address,
            user_name=old.user_name or st.user_name, domain=old.domain or st.domain, raw=raw,
            state=None, locked=None,
        )


def _log_failures(st: SessionState) -> None:
    for f in st.failures:
        log.debug("WTS session %d: %s; its fields are left null", st.session_id, f)
