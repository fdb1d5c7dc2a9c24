"""The Linux utmp/wtmp record (``struct utmp``), shared by the live utmp source and the
wtmp import. Pure: bytes in, records out.

Layout on x86_64 and 32-bit Linux (glibc keeps 32-bit times for file compatibility): 384 bytes,
``<h2xi32s4s32s256shhii i4i20s`` — type, pid, line, id, user, host, exit, session, tv_sec,
tv_usec, addr_v6, unused. Big-endian machines (s390x) write the same layout big-endian. Some
64-bit ports (aarch64, s390x builds without the compat define) use 400-byte records whose
session and time fields are 64-bit; :func:`detect_layout` tells the four apart.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum

from .._slots import slot_setters

__all__ = [
    "HEAD_SIZE",
    "LAYOUTS",
    "RECORD_SIZE",
    "Layout",
    "UtType",
    "UtmpRecord",
    "decode_all",
    "decode_record",
    "detect_byte_order",
    "detect_layout",
    "encode_record",
    "iter_records",
]

RECORD_SIZE = 384
_FORMAT = "h2xi32s4s32s256shhiii4i20s"
_LE = struct.Struct("<" + _FORMAT)
_BE = struct.Struct(">" + _FORMAT)
assert _LE.size == RECORD_SIZE  # noqa: S101 - an invariant of this code, not a check of input
# The 64-bit-time variant: ut_session and both ut_tv words are 8 bytes, 4 bytes of tail padding.
_FORMAT64 = "h2xi32s4s32s256shhqqq4i20s4x"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Layout:
    """One on-disk record layout: its size, byte order and ``struct`` codec."""

    size: int
    big_endian: bool
    codec: struct.Struct

    @property
    def name(self) -> str:
        """``384-byte little-endian`` etc., for messages."""
        return f"{self.size}-byte {'big' if self.big_endian else 'little'}-endian"


#: The layouts :func:`detect_layout` chooses from, the common one first (it wins ties).
LAYOUTS: tuple[Layout, ...] = (
    Layout(RECORD_SIZE, False, _LE),
    Layout(RECORD_SIZE, True, _BE),
    Layout(400, False, struct.Struct("<" + _FORMAT64)),
    Layout(400, True, struct.Struct(">" + _FORMAT64)),
)
assert LAYOUTS[2].codec.size == 400  # noqa: S101 - an invariant of this code, not a check of input
# Times a real record can carry: 0 (unset) or from 1980 up to a generous future.
_MIN_TIME, _MAX_TIME = 315_532_800, 1 << 34
_RESERVED_ZERO = bytes(20)
#: How much of a file :func:`detect_layout` wants: 75 384-byte or 72 400-byte records (a
#: multiple of both sizes, so the head's own length favours neither).
HEAD_SIZE = 28_800


class UtType(IntEnum):
    """``ut_type`` values (``<utmp.h>``)."""

    EMPTY = 0
    RUN_LVL = 1
    BOOT_TIME = 2
    NEW_TIME = 3
    OLD_TIME = 4
    INIT_PROCESS = 5
    LOGIN_PROCESS = 6
    USER_PROCESS = 7
    DEAD_PROCESS = 8
    ACCOUNTING = 9


@dataclass(frozen=True, slots=True)
class UtmpRecord:
    """One decoded record. Strings are decoded leniently (bad bytes become U+FFFD)."""

    type: int
    pid: int
    line: str
    id: str
    user: str
    host: str
    exit_termination: int
    exit_status: int
    session: int
    time: datetime
    address: str | None
    offset: int = 0

    @property
    def type_name(self) -> str:
        """``USER_PROCESS`` etc., or the number for an unknown type."""
        t = self.type
        return _TYPE_NAMES[t] if 0 <= t < len(_TYPE_NAMES) else str(t)

    def to_raw(self) -> dict[str, object]:
        """The record's fields for an event's ``raw``."""
        return {
            "ut_type": self.type_name, "ut_pid": self.pid, "ut_line": self.line,
            "ut_id": self.id, "ut_user": self.user, "ut_host": self.host,
            "ut_session": self.session, "ut_addr": self.address, "offset": self.offset,
        }


_TYPE_NAMES = tuple(t.name for t in UtType)
assert all(t.value == n for n, t in enumerate(UtType))  # noqa: S101 - an invariant of this code, not a check of input
_RECORD_SETTERS = slot_setters(  # in decode_all's order
    UtmpRecord, "type", "pid", "line", "id", "user", "host", "exit_termination", "exit_status",
    "session", "time", "address", "offset")


def _text(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "replace")


_ADDR_LE, _ADDR_BE = struct.Struct("<4i"), struct.Struct(">4i")


def _address(words: tuple[int, int, int, int], big_endian: bool) -> str | None:
    if not any(words):
        return None
    packed = (_ADDR_BE if big_endian else _ADDR_LE).pack(*words)
    if not any(words[1:]):
        return socket.inet_ntoa(packed[:4])  # what ipaddress gives, ten times faster
    return str(ipaddress.IPv6Address(packed))


def detect_byte_order(data: bytes) -> bool:
    """True when ``data`` looks big-endian (its first records' types only make sense so)."""
    votes = 0
    for off in range(0, min(len(data), RECORD_SIZE * 16) - RECORD_SIZE + 1, RECORD_SIZE):
        le = _LE.unpack_from(data, off)[0]
        be = _BE.unpack_from(data, off)[0]
        votes += (0 <= be <= 9) - (0 <= le <= 9)
    return votes > 0


def _plausible(fields: tuple[object, ...]) -> bool:
    typ, pid, sec, usec = fields[0], fields[1], fields[9], fields[10]
    assert isinstance(typ, int) and isinstance(pid, int)  # noqa: S101 - an invariant of this code, not a check of input
    assert isinstance(sec, int) and isinstance(usec, int)  # noqa: S101 - an invariant of this code, not a check of input
    if not (0 <= typ <= 9 and pid >= 0 and 0 <= usec < 1_000_000):
        return False
    if sec == 0:
        return typ == UtType.EMPTY or usec == 0
    return _MIN_TIME <= sec < _MAX_TIME


def detect_layout(data: bytes, file_size: int | None = None) -> Layout | None:
    """The layout of a utmp/wtmp file from its first bytes ``data``, judged by how many of its
    first records make sense in each (type, pid, time, zeroed reserved bytes), a file size
    (``file_size``, default ``len(data)``) of whole records breaking ties. ``None`` when no
    record makes sense in any layout, or fewer than half of them in the best one (not a utmp
    file: an .evtx or a binary has a plausible-looking record here and there); the 384-byte
    little-endian layout for data too short to hold one record. Give at least
    :data:`HEAD_SIZE` bytes when there are."""
    best: tuple[float, int, bool] | None = None
    for index, layout in enumerate(LAYOUTS):
        count = min(len(data) // layout.size, 64)
        if count == 0:
            continue
        good = zeroed = 0
        for i in range(count):
            fields = layout.codec.unpack_from(data, i * layout.size)
            good += _plausible(fields)
            zeroed += fields[-1] == _RESERVED_ZERO  # glibc zeroes __glibc_reserved
        if good == 0:
            continue
        # A misaligned reading puts text into the reserved bytes: weigh that most.
        size = len(data) if file_size is None else file_size
        score = (good + 2 * zeroed) / (3 * count) + (0.25 if size % layout.size == 0 else 0)
        if best is None or score > best[0]:
            best = (score, index, 2 * good >= count)
    if best is None:
        return LAYOUTS[0] if len(data) < RECORD_SIZE else None
    return LAYOUTS[best[1]] if best[2] else None


def decode_record(
    data: bytes | memoryview, offset: int = 0, *, big_endian: bool = False,
    layout: Layout | None = None, file_offset: int | None = None,
) -> UtmpRecord:
    """The record at ``offset`` (in ``layout``, default the 384-byte one in the byte order
    ``big_endian`` says); ``file_offset`` is its position in the file when ``data`` is only a
    piece of it. Raises ValueError for a record that cannot be one (type out of range, or a
    time with microseconds out of range)."""
    codec = layout.codec if layout is not None else (_BE if big_endian else _LE)
    if layout is not None:
        big_endian = layout.big_endian
    (typ, pid, line, ident, user, host, term, status, session, sec, usec,
     a0, a1, a2, a3, _unused) = codec.unpack_from(data, offset)
    if not 0 <= typ <= 9:
        raise ValueError(f"ut_type {typ} is not a utmp record type")
    if not 0 <= usec < 1_000_000:
        raise ValueError(f"tv_usec {usec} is out of range")
    if not -_MAX_TIME < sec < _MAX_TIME:
        raise ValueError(f"tv_sec {sec} is out of range")
    return UtmpRecord(
        type=typ, pid=pid, line=_text(line), id=_text(ident), user=_text(user),
        host=_text(host), exit_termination=term, exit_status=status, session=session,
        time=_EPOCH + timedelta(seconds=sec, microseconds=usec),
        address=_address((a0, a1, a2, a3), big_endian),
        offset=offset if file_offset is None else file_offset,
    )


def iter_records(
    data: bytes,
    on_error: Callable[[int, str], None],
    *,
    big_endian: bool | None = None,
    start: int = 0,
    layout: Layout | None = None,
) -> Iterator[UtmpRecord]:
    """Every record of ``data`` from ``start``. A bad record, or a truncated last one, goes to
    ``on_error(offset, why)`` and is skipped; the rest are still read. ``layout`` (see
    :func:`detect_layout`) overrides the 384-byte layout in the byte order ``big_endian`` gives
    (detected when None)."""
    if layout is None:
        be = detect_byte_order(data) if big_endian is None else big_endian
        layout = LAYOUTS[1] if be else LAYOUTS[0]
    size = layout.size
    end = len(data)
    whole = start + (end - start) // size * size
    yield from decode_all(memoryview(data)[start:whole], layout, start, on_error)
    if whole < end:
        on_error(whole, f"truncated record ({end - whole} of {size} bytes)")


def decode_all(
    data: bytes | memoryview, layout: Layout, base: int, on_error: Callable[[int, str], None],
) -> Iterator[UtmpRecord]:
    """Every record of ``data``, whole records of ``layout`` only, the first at file offset
    ``base``: what :func:`decode_record` gives for each, in one pass (the bulk reader's path). A
    bad record goes to ``on_error(offset, why)`` and is skipped."""
    size = layout.size
    big_endian = layout.big_endian
    new = object.__new__
    # The slots' setters, called one by one (a loop over them costs half the record).
    (s_type, s_pid, s_line, s_id, s_user, s_host, s_term, s_status, s_session, s_time,
     s_address, s_offset) = _RECORD_SETTERS
    # Lines, users and hosts repeat: each distinct field is decoded once per call; so do
    # addresses.
    texts: dict[bytes, str] = {}
    known = texts.get
    addresses: dict[tuple[int, int, int, int], str | None] = {}
    delta = timedelta
    epoch = _EPOCH
    off = base - size
    for (typ, pid, line, ident, user, host, term, status, session, sec, usec,
         a0, a1, a2, a3, _unused) in layout.codec.iter_unpack(data):
        off += size
        if not (0 <= typ <= 9 and 0 <= usec < 1_000_000 and -_MAX_TIME < sec < _MAX_TIME):
            try:
                decode_record(data, off - base, layout=layout)
            except ValueError as e:
                on_error(off, str(e))
            continue
        rec = new(UtmpRecord)
        line_s = known(line)
        if line_s is None:
            line_s = texts[line] = _text(line)
        id_s = known(ident)
        if id_s is None:
            id_s = texts[ident] = _text(ident)
        user_s = known(user)
        if user_s is None:
            user_s = texts[user] = _text(user)
        host_s = known(host)
        if host_s is None:
            host_s = texts[host] = _text(host)
        s_type(rec, typ)
        s_pid(rec, pid)
        s_line(rec, line_s)
        s_id(rec, id_s)
        s_user(rec, user_s)
        s_host(rec, host_s)
        s_term(rec, term)
        s_status(rec, status)
        s_session(rec, session)
        s_time(rec, epoch + delta(0, sec, usec))
        if a0 or a1 or a2 or a3:
            words = (a0, a1, a2, a3)
            address = addresses.get(words)
            if address is None:
                address = addresses[words] = _address(words, big_endian)
            s_address(rec, address)
        else:
            s_address(rec, None)
        s_offset(rec, off)
        yield rec


def encode_record(
    *, type: int, user: str = "", line: str = "", host: str = "", id: str = "",
    pid: int = 0, session: int = 0, time: datetime | None = None, address: str | None = None,
    big_endian: bool = False,
) -> bytes:
    """A record's bytes (for tests and tools; real files come from ``utmpdump -r``)."""
    t = time or datetime.now(UTC)
    delta = t - _EPOCH
    sec = delta.days * 86400 + delta.seconds
    words = (0, 0, 0, 0)
    if address:
        ip = ipaddress.ip_address(address)
        raw = ip.packed + b"\0" * (16 - len(ip.packed))
        words = struct.unpack(">4i" if big_endian else "<4i", raw)
    return (_BE if big_endian else _LE).pack(
        type, pid, line.encode(), id.encode(), user.encode(), host.encode(), 0, 0, session,
        sec, delta.microseconds, *words, b"",
    )
