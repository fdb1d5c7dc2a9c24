"""The live utmp source: ``/run/utmp`` read whole on every change, diffed slot by slot.

utmp is small and rewritten in place (glibc ``pututline`` reuses the slot whose ``ut_id`` /
``ut_line`` match), so each change means: read the whole file again and compare each slot
``(ut_id, ut_line)`` with what it held before. Changes are noticed with inotify on the file's
*directory* (the file may be replaced by rename, truncated, or not exist yet); a slow stat
poll stands in only when inotify cannot be had.

Plain logins (``login``, ``sshd``, terminal emulators through utempter): ``USER_PROCESS``
appearing on a slot is a session (``session_id`` = the line, ``pts/0``); the slot turning
``DEAD_PROCESS``, another login taking it, or the slot vanishing ends it.

GNU screen logs its windows into utmp only while a display is attached: attach writes
``USER_PROCESS`` for every window (``ut_line`` = the window's pty, ``ut_host`` =
``<orighost>:<attaching tty>:S.<window>``), detach turns them all ``DEAD_PROCESS``, re-attach
writes them again; screen rewrites neither ``ut_tv`` nor ``ut_pid`` on detach/attach. The SENS
session of a screen is the screen itself, not a window: ``session_id`` is ``screen:<pid of the
SCREEN server>`` (what ``screen -ls`` prints before the dot; the parent of each window's
``ut_pid``), ``session_name`` is ``<pid>.<name>``. Its first attach is the Logon; every window
gone while the server lives is a SessionDisconnect; a window back is a SessionReconnect; the
server's exit (seen through a pidfd, so also while detached) is the Logoff. When the server
cannot be found (no ``/proc`` view of the pid) each window is its own session,
``screen:<window line>``, and only a reused or vanished slot ends it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from ..observations import Observation
from . import LiveKind, SourceUnavailable
from .utmp_map import ProcView, UtmpState, session_info
from .utmprecord import LAYOUTS, UtmpRecord, iter_records

__all__ = [
    "DEFAULT_PATH",
    "DESCRIPTION",
    "ProcView",
    "UtmpSource",
    "UtmpState",
    "open_utmp",
    "probe",
    "session_info",
]

DESCRIPTION = "the utmp file /run/utmp"
DEFAULT_PATH = "/run/utmp"
log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


_RESCAN = object()
_CLOSE = object()
_WATCH_MASK_NAMES = ("MODIFY", "CLOSE_WRITE", "CREATE", "MOVED_TO", "MOVED_FROM", "DELETE")


class UtmpSource:
    """A :class:`~pysens.sources.Source` over a utmp file (see the module docstring).

    ``grace``: how long a screen whose windows all went away may take to exit before that
    counts as a detach (screen quits ~1 ms after its last utmp write). ``poll_interval``: the
    stat poll period, used only when inotify is unavailable (or ``use_inotify=False``).
    ``settle``: how long to let a file that lost slots (a rewrite in progress) settle.
    ``on_warning`` gets each skipped-record message (default: logged as a warning).
    """

    name = "utmp"

    def __init__(
        self, path: str = DEFAULT_PATH, *, host: str | None = None, grace: float = 0.25,
        poll_interval: float = 2.0, settle: float = 0.02, use_inotify: bool = True,
        proc: ProcView | None = None, on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.path = os.path.abspath(path)
        self.host = host
        self.grace = grace
        self.poll_interval = poll_interval
        self.settle = settle
        self.use_inotify = use_inotify
        self.proc = proc or ProcView()
        self.warnings: list[str] = []
        #: "inotify" or "poll" once :meth:`watch` started.
        self.mechanism: str | None = None
        self._on_warning = on_warning
        self._warned: set[tuple[int, str]] = set()
        self._state = UtmpState(self.name, host, self.proc)
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._inotify: Any = None
        self._poller: asyncio.Task[None] | None = None
        self._pidfds: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._closed = False
        self._dirty = False

    def _rescan(self) -> None:
        # One queued rescan reads every change made before it runs: queue no second one.
        if not self._dirty:
            self._dirty = True
            self._queue.put_nowait(_RESCAN)

    # -- reading -----------------------------------------------------------------------------

    def read(self) -> list[UtmpRecord]:
        """The records of the file now; none when it does not exist. A bad or truncated record
        is skipped with a warning naming its offset (each distinct one once)."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise SourceUnavailable(f"cannot read {self.path}: {e.strerror}") from None
        seen: set[tuple[int, str]] = set()

        def bad(offset: int, why: str) -> None:
            seen.add((offset, why))
            if (offset, why) not in self._warned:
                self._warn(f"{self.path}: record at offset {offset} skipped: {why}")

        layout = LAYOUTS[1] if sys.byteorder == "big" else LAYOUTS[0]
        records = list(iter_records(data, bad, layout=layout))
        self._warned = seen
        return records

    async def _settled_read(self) -> list[UtmpRecord]:
        """:meth:`read`, but a file that lost slots is read again once it stops changing:
        glibc never removes a slot, so that is a rewrite (truncate, then write) caught in the
        middle, and reading it there would log everyone off and on again."""
        records = self.read()
        for _ in range(20):
            if set(self._state.slots) <= {(r.id, r.line) for r in records}:
                break
            await asyncio.sleep(self.settle)
            again = self.read()
            if again == records:
                break
            records = again
        return records

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        if self._on_warning is not None:
            self._on_warning(message)
        else:
            log.warning("%s", message)

    async def snapshot(self) -> list[Observation]:
        """The sessions in the file now, as ``SessionAppeared(existing=True)``."""
        return UtmpState(self.name, self.host, self.proc).load(self.read(), _now())

    # -- watching ----------------------------------------------------------------------------

    async def watch(self) -> AsyncIterator[Observation]:
        """The snapshot, then the observations of every change, as it happens."""
        self._start_watching()  # before the first read, so no change falls in between
        log.info("watching %s (%s)", self.path, self.mechanism)
        for obs in self._state.load(self.read(), _now()):
            yield obs
        for key in list(self._state.screens):
            self._arm(key)
        while not self._closed:
            item = await self._queue.get()
            if item is _CLOSE:
                return
            if item is _RESCAN:
                self._dirty = False
                out = self._state.update(await self._settled_read(), _now())
                for key in self._state.screens:
                    if key not in self._pidfds:
                        self._arm(key)
                for key in self._state.pending:
                    self._pending(key)
            elif isinstance(item, SourceUnavailable):
                raise item
            else:
                assert isinstance(item, list)  # noqa: S101 - an invariant of this code, not a check of input
                out = item
            for obs in out:
                yield obs

    def _start_watching(self) -> None:
        directory, name = os.path.split(self.path)
        if not os.path.isdir(directory):
            raise SourceUnavailable(f"the directory {directory} does not exist")
        if self.use_inotify:
            from ..inotify import Flag, Inotify

            try:
                ino = Inotify()
                mask = Flag(0)
                for flag in _WATCH_MASK_NAMES:
                    mask |= Flag[flag]
                wd = ino.add_watch(directory, mask | Flag.ONLYDIR)
            except OSError as e:
                log.info("inotify unavailable (%s): polling %s", e, self.path)
            else:
                def events(batch: list[Any]) -> None:
                    for ev in batch:
                        if ev.mask & (Flag.IGNORED | Flag.DELETE_SELF | Flag.MOVE_SELF) and (
                                ev.wd == wd):
                            ino.stop()
                            self._queue.put_nowait(SourceUnavailable(
                                f"the directory {directory} went away"))
                            return
                    if any(ev.mask & Flag.Q_OVERFLOW or ev.name == name for ev in batch):
                        self._rescan()

                ino.start(events)
                self._inotify = ino
                self.mechanism = "inotify"
                return
        self.mechanism = "poll"
        self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        last: tuple[int, ...] | None = None
        while True:
            try:
                st = os.stat(self.path)
                now: tuple[int, ...] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            except FileNotFoundError:
                now = ()
            if last is not None and now != last:
                self._rescan()
            last = now
            await asyncio.sleep(self.poll_interval)

    # -- screen servers: a pidfd each, so a detach can be told from a quit ------------------

    def _arm(self, key: str) -> None:
        scr = self._state.screens.get(key)
        if scr is None or scr.server is None or key in self._pidfds:
            return
        try:
            fd = os.pidfd_open(scr.server)
        except ProcessLookupError:
            self._queue.put_nowait(self._state.ended(key, _now()))
            return
        except (OSError, AttributeError):
            return  # no pidfds here: a detach is then a Disconnect at once (see _pending)
        self._pidfds[key] = fd
        asyncio.get_running_loop().add_reader(fd, self._server_exited, key)

    def _disarm(self, key: str) -> None:
        fd = self._pidfds.pop(key, None)
        if fd is not None:
            loop = asyncio.get_running_loop()
            loop.remove_reader(fd)
            os.close(fd)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _server_exited(self, key: str) -> None:
        self._disarm(key)
        self._queue.put_nowait(self._state.ended(key, _now()))

    def _pending(self, key: str) -> None:
        if key not in self._pidfds:
            self._queue.put_nowait(self._state.detached(key, _now()))
            return
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(self.grace, self._decide, key)

    def _decide(self, key: str) -> None:
        self._timers.pop(key, None)
        fd = self._pidfds.get(key)
        if fd is not None and select.select([fd], [], [], 0)[0]:
            self._server_exited(key)
        else:
            self._queue.put_nowait(self._state.detached(key, _now()))

    async def aclose(self) -> None:
        """Stop watching; release the inotify and pidfd descriptors."""
        self._closed = True
        self._queue.put_nowait(_CLOSE)
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        for key in list(self._pidfds) + list(self._timers):
            self._disarm(key)


def open_utmp(path: str = DEFAULT_PATH, **options: Any) -> UtmpSource:
    """The utmp source (``sens watch --source utmp [--utmp PATH]``); see :class:`UtmpSource`
    for the options. The file need not exist yet: its directory is watched for it."""
    if not sys.platform.startswith("linux"):
        raise SourceUnavailable("the utmp source reads the Linux utmp format only")
    return UtmpSource(path, **options)


async def can_wait(path: str = DEFAULT_PATH, **_options: Any) -> str | None:
    """When no live source is available: what watching for ``path`` to appear would be (its
    directory exists), else None. A login program that writes utmp creates the file."""
    if sys.platform.startswith("linux") and await asyncio.to_thread(
            os.path.isdir, os.path.dirname(path) or "."):
        return f"{path} does not exist yet: waiting for a login to create it"
    return None


async def probe(path: str = DEFAULT_PATH, **_options: Any) -> str | None:
    """None when there is a utmp file to watch here, else why not."""
    if not sys.platform.startswith("linux"):
        return "the utmp source reads the Linux utmp format only"
    if not await asyncio.to_thread(os.path.isfile, path):
        return f"{path} does not exist (this host keeps no utmp; logind replaces it)"
    return None


#: The registry's entry (``sens watch --source utmp``).
LIVE = LiveKind(DESCRIPTION, open_utmp, probe, can_wait)
