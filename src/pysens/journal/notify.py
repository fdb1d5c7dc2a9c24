"""Notice commits to the journal file by any process, without a timer: inotify(7) on it.

The journal is SQLite in WAL mode: every commit, by whichever process (``sens import --deliver``,
``sens publish`` while the daemon restarts, ``sens subscriptions``), appends frames to the
``-wal`` file beside it, and a checkpoint writes the main file. A :class:`JournalWatch` watches
both files for writes, and their directory only for the ``-wal`` file being created anew (SQLite
deletes it when the last connection closes), so the sink files and whatever else shares the
directory never wake it. The watch says only *that* the file changed, not what: the caller then
asks the journal (its last ``seq``, the subscriptions) and finds nothing new when the commit was
its own.

Linux only (ctypes over libc, :mod:`pysens.inotify`). :meth:`JournalWatch.start` returns False
where inotify is not available (another OS, no inotify instances left, a journal in memory); the
caller then keeps its timer.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from ..inotify import Flag, Inotify, InotifyEvent

__all__ = ["JournalWatch"]

_DIR_MASK = Flag.CREATE | Flag.MOVED_TO | Flag.ONLYDIR
_FILE_MASK = Flag.MODIFY


class JournalWatch:
    """Calls ``on_change()`` on the running loop after each write to the journal at ``path``
    (its main file or its ``-wal``), by this process or another; bursts of writes read in one go
    are one call."""

    def __init__(self, path: str | os.PathLike[str], on_change: Callable[[], None]) -> None:
        self.path = Path(path).absolute()
        self.wal = self.path.with_name(self.path.name + "-wal")
        self._on_change = on_change
        self._inotify: Inotify | None = None
        self._files: dict[int, Path] = {}  # watch descriptor -> the file it watches

    @property
    def active(self) -> bool:
        """True while watching."""
        return self._inotify is not None

    def start(self) -> bool:
        """Begin watching (on the running asyncio loop); False when it cannot here."""
        if str(self.path).endswith(":memory:") or not self.path.parent.is_dir():
            return False
        try:
            ino = Inotify()
        except OSError:
            return False
        try:
            ino.add_watch(self.path.parent, _DIR_MASK)
            for f in (self.path, self.wal):
                self._watch_file(ino, f)
        except OSError:
            ino.close()
            self._files.clear()
            return False
        ino.start(self._events)
        self._inotify = ino
        return True

    def _watch_file(self, ino: Inotify, path: Path) -> None:
        # Not there yet: its directory's CREATE brings it in.
        with contextlib.suppress(FileNotFoundError):
            self._files[ino.add_watch(path, _FILE_MASK)] = path

    def _events(self, events: list[InotifyEvent]) -> None:
        changed = False
        ino = self._inotify
        for ev in events:
            if ev.mask & Flag.Q_OVERFLOW:
                changed = True
            elif ev.mask & Flag.IGNORED:
                self._files.pop(ev.wd, None)  # the file was deleted: a new one is watched anew
            elif ev.wd in self._files:
                changed = True
            elif ev.name in (self.path.name, self.wal.name) and ino is not None:
                # A new -wal (or a journal created beside us): watch it, and it is a change.
                with contextlib.suppress(OSError):  # gone again: the next CREATE tries anew
                    self._watch_file(ino, self.path.parent / ev.name)
                changed = True
        if changed:
            self._on_change()

    def close(self) -> None:
        """Stop watching."""
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
        self._files.clear()
