"""The 384-byte Linux utmp/wtmp record (``struct utmp``), shared by the live utmp source and the
wtmp import. Pure: bytes in, records out.

Layout on every 64-bit and 32-bit Linux (glibc keeps 32-bit times for file compatibility):
``<h2xi32s4s32s256shhii i4i20s`` — type, pid, line, id, user, host, exit, session, tv_sec,
tv_usec, addr_v6, unused. Big-endian machines (s390x) write the same layout big-endian.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum

__all__ = [
    "RECORD_SIZE",
    "UtType",
    "UtmpRecord",
    "decode_record",
    "detect_byte_order",
    "encode_record",
    "iter_records",
]

RECORD_SIZE = 384
_FORMAT = "h2xi32s4s32s256shhiii4i20s"
_LE = struct.Struct("<" + _FORMAT)
_BE = struct.Struct(">" + _FORMAT)
assert _LE.size == RECORD_SIZE
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
        try:
            return UtType(self.type).name
        except ValueError:
            return str(self.type)

    def to_raw(self) -> dict[str, object]:
        """The record's fields for an event's ``raw``."""
        return {
            "ut_type": self.type_name, "ut_pid": self.pid, "ut_line": self.line,
            "ut_id": self.id, "ut_user": self.user, "ut_host": self.host,
            "ut_session": self.session, "ut_addr": self.address, "offset": self.offset,
        }


def _text(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "replace")


def _address(words: tuple[int, int, int, int], big_endian: bool) -> str | None:
    if not any(words):
        return None
    packed = struct.pack(">4i" if big_endian else "<4i", *words)
    if not any(words[1:]):
        return str(ipaddress.IPv4Address(packed[:4]))
    return str(ipaddress.IPv6Address(packed))


def detect_byte_order(data: bytes) -> bool:
    """True when ``data`` looks big-endian (its first records' types only make sense so)."""
    votes = 0
    for off in range(0, min(len(data), RECORD_SIZE * 16) - RECORD_SIZE + 1, RECORD_SIZE):
        le = _LE.unpack_from(data, off)[0]
        be = _BE.unpack_from(data, off)[0]
        votes += (0 <= be <= 9) - (0 <= le <= 9)
    return votes > 0


def decode_record(data: bytes, offset: int = 0, *, big_endian: bool = False) -> UtmpRecord:
    """The record at ``offset``. Raises ValueError for a record that cannot be one (type out of
    range, or a time with microseconds out of range)."""
    (typ, pid, line, ident, user, host, term, status, session, sec, usec,
     a0, a1, a2, a3, _unused) = (_BE if big_endian else _LE).unpack_from(data, offset)
    if not 0 <= typ <= 9:
        raise ValueError(f"ut_type {typ} is not a utmp record type")
    if not 0 <= usec < 1_000_000:
        raise ValueError(f"tv_usec {usec} is out of range")
    return UtmpRecord(
        type=typ, pid=pid, line=_text(line), id=_text(ident), user=_text(user),
        host=_text(host), exit_termination=term, exit_status=status, session=session,
        time=_EPOCH + timedelta(seconds=sec, microseconds=usec),
        address=_address((a0, a1, a2, a3), big_endian), offset=offset,
    )


def iter_records(
    data: bytes,
    on_error: Callable[[int, str], None],
    *,
    big_endian: bool | None = None,
    start: int = 0,
) -> Iterator[UtmpRecord]:
    """Every record of ``data`` from ``start``. A bad record, or a truncated last one, goes to
    ``on_error(offset, why)`` and is skipped; the rest are still read."""
    be = detect_byte_order(data) if big_endian is None else big_endian
    end = len(data)
    off = start
    while off + RECORD_SIZE <= end:
        try:
            yield decode_record(data, off, big_endian=be)
        except ValueError as e:
            on_error(off, str(e))
        off += RECORD_SIZE
    if off < end:
        on_error(off, f"truncated record ({end - off} of {RECORD_SIZE} bytes)")


def encode_record(
    *, type: int, user: str = "", line: str = "", host: str = "", id: str = "",  # noqa: A002
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
