"""Watch logind's session state directory with inotify (what ``sd_login_monitor_new(3)`` does).

logind never signals ``State=closing`` on D-Bus, but it rewrites ``/run/systemd/sessions/<id>``
(write to a temporary file, then rename) whenever a session's state changes, logout included.
We only take the file *name* as a hint to re-read that session's State over D-Bus: the files say
"Do not parse", and we don't. Linux only; ctypes from the standard library, no third-party code.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..inotify import Flag, Inotify, InotifyEvent

__all__ = ["DirectoryWatch"]


class DirectoryWatch:
    """Calls ``on_name(name)`` for each file created, rewritten, renamed into or deleted from
    ``path`` (``on_name(None)`` when the kernel queue overflowed: re-check everything).

    :meth:`start` returns False when the directory or inotify is not available here; the watch
    is then simply absent (the D-Bus signals still drive the source).
    """

    def __init__(self, path: str, on_name: Callable[[str | None], None]) -> None:
        self.path = path
        self._on_name = on_name
        self._inotify: Inotify | None = None

    def start(self) -> bool:
        """Begin watching; False when it cannot (no such directory, no inotify)."""
        if not os.path.isdir(self.path):
            return False
        try:
            ino = Inotify()
        except OSError:
            return False
        try:
            ino.add_watch(self.path, Flag.CLOSE_WRITE | Flag.MOVED_TO | Flag.CREATE | Flag.DELETE)
        except OSError:
            ino.close()
            return False
        ino.start(self._events)
        self._inotify = ino
        return True

    def _events(self, events: list[InotifyEvent]) -> None:
        for ev in events:
            if ev.mask & Flag.Q_OVERFLOW:
                self._on_name(None)
            elif ev.name and not ev.name.startswith("."):  # ".#c1Xyz": logind's temporary file
                self._on_name(ev.name)

    def close(self) -> None:
        """Stop watching."""
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
