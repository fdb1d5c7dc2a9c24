"""Watch logind's session state directory with inotify (what ``sd_login_monitor_new(3)`` does).

logind never signals ``State=closing`` on D-Bus, but it rewrites ``/run/systemd/sessions/<id>``
(write to a temporary file, then rename) whenever a session's state changes, logout included.
We only take the file *name* as a hint to re-read that session's State over D-Bus: the files say
"Do not parse", and we don't. Linux only; ctypes from the standard library, no third-party code.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
import struct
from collections.abc import Callable

__all__ = ["DirectoryWatch"]

_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_DELETE = 0x00000200
_IN_Q_OVERFLOW = 0x00004000
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_HEADER = struct.Struct("iIII")


class DirectoryWatch:
    """Calls ``on_name(name)`` for each file created, rewritten, renamed into or deleted from
    ``path`` (``on_name(None)`` when the kernel queue overflowed: re-check everything).

    :meth:`start` returns False when the directory or inotify is not available here; the watch
    is then simply absent (the D-Bus signals still drive the source).
    """

    def __init__(self, path: str, on_name: Callable[[str | None], None]) -> None:
        self.path = path
        self._on_name = on_name
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> bool:
        """Begin watching; False when it cannot (no such directory, no inotify)."""
        if not os.path.isdir(self.path):
            return False
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name, use_errno=True)
            init1 = libc.inotify_init1
            add_watch = libc.inotify_add_watch
        except (OSError, AttributeError):
            return False
        fd = init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            return False
        mask = _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE
        if add_watch(fd, os.fsencode(self.path), mask) < 0:
            os.close(fd)
            return False
        self._fd = fd
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._read)
        return True

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except OSError as e:
            if e.errno != errno.EAGAIN:
                self.close()
            return
        offset = 0
        while offset + _HEADER.size <= len(data):
            _wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
            raw = data[offset + _HEADER.size: offset + _HEADER.size + length]
            offset += _HEADER.size + length
            if mask & _IN_Q_OVERFLOW:
                self._on_name(None)
                continue
            name = os.fsdecode(raw.rstrip(b"\0"))
            if name and not name.startswith("."):  # ".#c1Xyz" is logind's temporary file
                self._on_name(name)

    def close(self) -> None:
        """Stop watching."""
        if self._fd >= 0:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
