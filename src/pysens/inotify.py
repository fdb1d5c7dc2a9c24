"""A tiny inotify(7) binding: ctypes over libc, with an asyncio face through ``loop.add_reader``.

No third-party package. Linux only: constructing :class:`Inotify` elsewhere raises OSError, and
so does a kernel without inotify or a process out of inotify instances (callers then fall back
to polling). The module itself imports everywhere.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntFlag

__all__ = ["Flag", "Inotify", "InotifyEvent", "parse_events"]


class Flag(IntFlag):
    """inotify event bits (``<sys/inotify.h>``)."""

    ACCESS = 0x00000001
    MODIFY = 0x00000002
    ATTRIB = 0x00000004
    CLOSE_WRITE = 0x00000008
    CLOSE_NOWRITE = 0x00000010
    OPEN = 0x00000020
    MOVED_FROM = 0x00000040
    MOVED_TO = 0x00000080
    CREATE = 0x00000100
    DELETE = 0x00000200
    DELETE_SELF = 0x00000400
    MOVE_SELF = 0x00000800
    UNMOUNT = 0x00002000
    Q_OVERFLOW = 0x00004000
    IGNORED = 0x00008000
    ONLYDIR = 0x01000000
    DONT_FOLLOW = 0x02000000
    EXCL_UNLINK = 0x04000000
    ISDIR = 0x40000000


@dataclass(frozen=True, slots=True)
class InotifyEvent:
    """One event: the watch it came from, what happened, and the file name inside a watched
    directory (empty for the watched path itself and for ``Q_OVERFLOW``)."""

    wd: int
    mask: Flag
    cookie: int
    name: str


_HEADER = struct.Struct("iIII")
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc  # noqa: PLW0603 - one libc handle, loaded on first use
    if _libc is None:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        for fn in ("inotify_init1", "inotify_add_watch", "inotify_rm_watch"):
            if not hasattr(lib, fn):
                raise OSError(errno.ENOSYS, f"libc has no {fn}")
        lib.inotify_add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        _libc = lib
    return _libc


def parse_events(data: bytes) -> list[InotifyEvent]:
    """The events packed in ``data`` (what one read(2) of an inotify fd returned)."""
    out = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        wd, mask, cookie, length = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        name = os.fsdecode(data[start:start + length].rstrip(b"\0"))
        out.append(InotifyEvent(wd, Flag(mask), cookie, name))
        offset = start + length
    return out


class Inotify:
    """An inotify instance (non-blocking, close-on-exec).

    Use :meth:`add_watch`, then either :meth:`read` when :meth:`fileno` is readable, or
    :meth:`start` to have a callback run with each batch of events on the running asyncio loop.
    """

    def __init__(self) -> None:
        libc = _lib()
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"inotify_init1: {os.strerror(e)}")
        self._fd: int = fd
        self._loop: asyncio.AbstractEventLoop | None = None

    def fileno(self) -> int:
        """The inotify file descriptor."""
        return self._fd

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._fd < 0

    def add_watch(self, path: str | os.PathLike[str], mask: Flag) -> int:
        """Watch ``path`` for the events in ``mask``; the watch descriptor."""
        wd: int = _lib().inotify_add_watch(self._fd, os.fsencode(path), int(mask))
        if wd < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"inotify_add_watch {os.fspath(path)}: {os.strerror(e)}")
        return wd

    def rm_watch(self, wd: int) -> None:
        """Stop the watch ``wd`` (the kernel then sends an ``IGNORED`` event for it)."""
        if _lib().inotify_rm_watch(self._fd, wd) < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"inotify_rm_watch: {os.strerror(e)}")

    def read(self) -> list[InotifyEvent]:
        """The events queued now; an empty list when there are none (never blocks)."""
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return []
        return parse_events(data)

    def start(self, callback: Callable[[list[InotifyEvent]], None]) -> None:
        """Call ``callback(events)`` on the running loop whenever events arrive."""
        loop = asyncio.get_running_loop()

        def ready() -> None:
            events = self.read()
            if events:
                callback(events)

        loop.add_reader(self._fd, ready)
        self._loop = loop

    def stop(self) -> None:
        """Undo :meth:`start`."""
        if self._loop is not None and not self._loop.is_closed() and self._fd >= 0:
            self._loop.remove_reader(self._fd)
        self._loop = None

    def close(self) -> None:
        """Stop and release the file descriptor (every watch ends with it)."""
        self.stop()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Inotify:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
