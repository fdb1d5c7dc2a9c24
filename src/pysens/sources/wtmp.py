"""wtmp / utmp files -> observations, paired the way util-linux ``last`` pairs them.

Reads every record layout :func:`~pysens.sources.utmprecord.detect_layout` knows (384-byte
little- and big-endian, 400-byte 64-bit-time records), rotated files (``wtmp.1``, ``.gz`` too) and
files whose last record was cut short. The mapping follows ``last`` (util-linux
``login-utils/last.c``, ``process_wtmp_file``) so that the sessions the tracker builds from it
are the ones ``last -f FILE -x`` prints:

* a record on line ``~`` is a shutdown (user ``shutdown``), a boot (``reboot``) or a run-level
  change (``runlevel``) whatever its ``ut_type``;
* any other record with a user and a line is a login, unless it is a DEAD_PROCESS or its user
  is ``LOGIN`` (old writers that did not set ``ut_type``); a record with no user is a logout;
* a login is ended by the next record on the same line — its DEAD_PROCESS, or another login
  (the line was handed to someone else: ``last`` shows the new login's time as the logout);
* a boot ends every open session as ``crash``, a shutdown or run level 0 / 6 as ``down``.

Observations, not SENS methods: a login is a :class:`SessionRecord` (Logon, shell at once), a
logout a :class:`SessionVanished` of its line, a boot or shutdown a :class:`HostReset`. Times are
the records' own. Pure apart from reading the file.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from .._slots import slot_setters
from ..events import Method
from ..observations import HostReset, Observation, SessionInfo, SessionRecord, SessionVanished
from . import HistoryKind, ReadError
from .utmprecord import HEAD_SIZE, Layout, UtmpRecord, UtType, decode_all, detect_layout

__all__ = [
    "SHUTDOWN",
    "first_time",
    "last_type",
    "observe",
    "observe_all",
    "read_records",
    "read_utmp",
    "read_wtmp",
]

#: ``last``'s own pseudo type for a shutdown record (``SHUTDOWN_TIME`` in last.c).
SHUTDOWN = 254
# Records per read: bounded memory for a wtmp of any size.
_CHUNK_RECORDS = 8192


# Plain ints: comparing IntEnum members costs a method call per record.
_RUN_LVL, _BOOT_TIME, _NEW_TIME, _OLD_TIME = 1, 2, 3, 4
_USER_PROCESS, _DEAD_PROCESS = 7, 8
assert (_RUN_LVL, _BOOT_TIME, _USER_PROCESS, _DEAD_PROCESS) == (  # noqa: S101 - an invariant of this code, not a check of input
    UtType.RUN_LVL, UtType.BOOT_TIME, UtType.USER_PROCESS, UtType.DEAD_PROCESS)


def last_type(rec: UtmpRecord) -> int:
    """The record type ``last`` acts on (its normalisation of ``ut_type``; see the module doc).

    :data:`SHUTDOWN` for a shutdown record, else a :class:`UtType` value.
    """
    user, line = rec.user, rec.line
    if line[:1] == "~":
        if user.startswith("shutdown"):
            return SHUTDOWN
        if user.startswith("reboot"):
            return _BOOT_TIME
        if user.startswith("runlevel"):
            return _RUN_LVL
        return rec.type
    t = rec.type
    if not user:
        return _DEAD_PROCESS
    if t != _DEAD_PROCESS and line and not user.startswith("LOGIN"):
        t = _USER_PROCESS
    if user == "date":
        if line[:1] == "|":
            t = _OLD_TIME
        elif line[:1] == "{":
            t = _NEW_TIME
    return t


def _session_info(rec: UtmpRecord) -> SessionInfo:
    host = rec.host or None
    line = rec.line or None
    # ut_host is the remote host for ssh/telnet; local writers put an X display (":0"), a
    # screen window (":pts/1:S.0") or tmux's pane name there.
    remote = bool(host) and not rec.host.startswith((":", "tmux("))
    if line is None:
        session_type = None
    elif line.startswith(":"):
        session_type = "x11"
    else:
        session_type = "tty"
    address = rec.address
    if address is not None and not address.strip("0.:"):
        address = None  # 0.0.0.0 or ::, what writers put when they have no address
    # What SessionInfo(session_id=line, user_name=rec.user, tty=line, ...) makes, the fields set
    # one by one: a frozen dataclass's __init__ costs twice as much, once per login record.
    info = _new(SessionInfo)
    (s_session_id, s_user_name, s_domain, s_session_name, s_session_type, s_session_class,
     s_tty, s_seat, s_remote, s_client_name, s_client_address, s_logon_id, s_active, s_locked,
     s_state, s_since, s_raw) = _INFO_SETTERS
    s_session_id(info, line)
    s_user_name(info, rec.user)
    s_domain(info, None)
    s_session_name(info, None)
    s_session_type(info, session_type)
    s_session_class(info, None)
    s_tty(info, line)
    s_seat(info, None)
    s_remote(info, remote)
    s_client_name(info, host)
    s_client_address(info, address)
    s_logon_id(info, None)
    s_active(info, None)
    s_locked(info, None)
    s_state(info, None)
    s_since(info, rec.time)
    s_raw(info, rec.to_raw())
    return info


_new = object.__new__
_INFO_SETTERS = slot_setters(  # in _session_info's order
    SessionInfo, "session_id", "user_name", "domain", "session_name", "session_type",
    "session_class", "tty", "seat", "remote", "client_name", "client_address", "logon_id",
    "active", "locked", "state", "since", "raw")
_LOGON_SETTERS = slot_setters(  # in _logon_record's order
    SessionRecord, "time", "source", "method", "info", "reason", "synthesized", "host",
    "post_shell", "event")
_GONE_SETTERS = slot_setters(  # in _gone's order
    SessionVanished, "time", "source", "session_id", "reason", "synthesized", "host")


def _logon_record(time: datetime, source: str, info: SessionInfo) -> SessionRecord:
    """``SessionRecord(time, source, Method.Logon, info, post_shell=True)``, the fields set one
    by one (as in :func:`_session_info`)."""
    obs = _new(SessionRecord)
    s_time, s_source, s_method, s_info, s_reason, s_synthesized, s_host, s_post, s_event = (
        _LOGON_SETTERS)
    s_time(obs, time)
    s_source(obs, source)
    s_method(obs, Method.Logon)
    s_info(obs, info)
    s_reason(obs, None)
    s_synthesized(obs, False)
    s_host(obs, None)
    s_post(obs, True)
    s_event(obs, None)
    return obs


def _gone(time: datetime, source: str, line: str, reason: str | None = None,
          synthesized: bool = False) -> SessionVanished:
    """``SessionVanished(time, source, line, reason, synthesized)``, the fields set one by one
    (as in :func:`_session_info`)."""
    obs = _new(SessionVanished)
    s_time, s_source, s_session_id, s_reason, s_synthesized, s_host = _GONE_SETTERS
    s_time(obs, time)
    s_source(obs, source)
    s_session_id(obs, line)
    s_reason(obs, reason)
    s_synthesized(obs, synthesized)
    s_host(obs, None)
    return obs


def observe(rec: UtmpRecord, source: str = "wtmp", host: str | None = None) -> list[Observation]:
    """The observations one record means (often none)."""
    t = last_type(rec)
    if t == _USER_PROCESS:
        info = _session_info(rec)
        out: list[Observation] = []
        if rec.line:
            # A new login on a line ends whatever was open there (last.c pairs a login with
            # the next record on its line, login or logout). Said explicitly because the
            # tracker would otherwise take two quick logins on one line as one reported twice.
            out.append(SessionVanished(rec.time, source, rec.line, reason="superseded",
                                       synthesized=True, host=host))
        out.append(SessionRecord(rec.time, source, Method.Logon, info, post_shell=True,
                                 host=host))
        return out
    if t == _DEAD_PROCESS:
        return [SessionVanished(rec.time, source, rec.line, host=host)] if rec.line else []
    if t == _BOOT_TIME:
        # Sessions still open when the machine boots again were never closed: it crashed.
        return [HostReset(rec.time, source, "crash", host=host)]
    if t == SHUTDOWN:
        return [HostReset(rec.time, source, "shutdown", host=host)]
    if t == _RUN_LVL:
        level = chr(rec.pid & 255)
        if level in "06":
            return [HostReset(rec.time, source, "shutdown" if level == "0" else "reboot",
                              host=host)]
    return []


def _open(path: str) -> IO[bytes] | gzip.GzipFile:
    p = Path(path)
    try:
        if p.suffix == ".gz":
            return gzip.open(p, "rb")
        return p.open("rb")
    except OSError as e:
        raise ReadError(f"cannot read {path}: {e.strerror or e}") from None


#: ``on_position(done, total)``: how far a reader is through its file, in bytes (for a .gz,
#: compressed bytes), after each chunk it reads.
Position = Callable[[int, int], None]


def read_records(path: str, on_error: Callable[[str], None],
                 on_position: Position | None = None) -> Iterator[UtmpRecord]:
    """Every record of the file, the layout detected from its head. A bad record or a cut-short
    last one goes to ``on_error`` (one sentence with the file and offset) and is skipped.
    ``on_position`` is told how far the reading is (a progress bar).

    Raises :class:`~pysens.sources.ReadError` when the file cannot be read or is not a utmp
    file at all.
    """
    with _open(path) as f:
        try:
            head = f.read(HEAD_SIZE)
            # A compressed file's size is unknown until read: judge by the records alone.
            size = None if isinstance(f, gzip.GzipFile) else os.fstat(f.fileno()).st_size
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise ReadError(f"cannot read {path}: {e}") from None
        layout = detect_layout(head, size if size is not None else len(head))
        if layout is None:
            raise ReadError(
                f"{path} is not a utmp/wtmp file: most records in its first "
                f"{len(head)} bytes make no sense in any known layout"
            )
        yield from _records(f, head, layout, path, on_error, on_position)


def _records(
    f: IO[bytes] | gzip.GzipFile, head: bytes, layout: Layout, path: str,
    on_error: Callable[[str], None], on_position: Position | None = None,
) -> Iterator[UtmpRecord]:
    size = layout.size
    buf = head
    base = 0  # file offset of buf[0]
    # The file under a .gz: its compressed size and position are what can be known up front.
    raw: Any = f.fileobj if isinstance(f, gzip.GzipFile) else f
    total = os.fstat(raw.fileno()).st_size if on_position is not None else 0

    def bad(offset: int, why: str) -> None:
        on_error(f"{path}: record at offset {offset}: {why}; skipped")

    while True:
        try:
            more = f.read(size * _CHUNK_RECORDS)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            on_error(f"{path}: offset {base + len(buf)}: cannot read further ({e}); "
                     "the rest of the file is skipped")
            more = b""
        if more:
            buf += more
        whole = len(buf) - len(buf) % size
        if on_position is not None:
            on_position(min(raw.tell(), total), total)
        yield from decode_all(memoryview(buf)[:whole], layout, base, bad)
        base += whole
        buf = buf[whole:]
        if not more:
            break
    if buf:
        on_error(f"{path}: offset {base}: the last record is cut short ({len(buf)} of "
                 f"{size} bytes); skipped")


def _read(path: str, on_error: Callable[[str], None], source: str,
          on_position: Position | None) -> Iterator[Observation]:
    return _observe_stream(read_records(path, on_error, on_position), source)


def _observe_stream(records: Iterable[UtmpRecord], source: str) -> Iterator[Observation]:
    """:func:`observe` for each record, less the ``superseded`` SessionVanished of logins on
    lines known to be closed (most of them): it would only be looked up and dropped."""
    # line -> open?  A line not seen since the last boot may be open: the file can begin
    # mid-session or continue an older file read into the same tracker.
    open_lines: dict[str, bool] = {}
    unseen_open = True
    for rec in records:
        t = last_type(rec)
        line = rec.line
        if t == _USER_PROCESS and line:
            if open_lines.get(line, unseen_open):
                yield _gone(rec.time, source, line, "superseded", True)
            open_lines[line] = True
            yield _logon_record(rec.time, source, _session_info(rec))
            continue
        if t == _DEAD_PROCESS:
            if line:
                open_lines[line] = False
                yield _gone(rec.time, source, line)
            continue
        out = observe(rec, source)
        if out and isinstance(out[0], HostReset):
            open_lines.clear()
            unseen_open = False
        yield from out


def read_wtmp(path: str, on_error: Callable[[str], None],
              on_position: Position | None = None) -> Iterator[Observation]:
    """The observations of a wtmp file (``sens import wtmp``), in file order."""
    return _read(path, on_error, "wtmp", on_position)


def read_utmp(path: str, on_error: Callable[[str], None],
              on_position: Position | None = None) -> Iterator[Observation]:
    """The observations of a utmp file (``sens import utmp``): the same mapping, source
    ``utmp``."""
    return _read(path, on_error, "utmp", on_position)


def first_time(path: str) -> datetime | None:
    """The time of the file's first valid record (to put rotated files in order), or None."""
    try:
        for rec in read_records(path, lambda _msg: None):
            return rec.time
    except ReadError:
        return None
    return None


def observe_all(records: Iterable[UtmpRecord], source: str = "wtmp") -> Iterator[Observation]:
    """:func:`observe` for each record, in order."""
    for rec in records:
        yield from observe(rec, source)


#: The registry's entries (``sens import wtmp`` / ``utmp``).
WTMP = HistoryKind(read_wtmp, first_time=first_time, positioned=True)
UTMP = HistoryKind(read_utmp, first_time=first_time, positioned=True)
