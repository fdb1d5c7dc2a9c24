"""The pure half of the utmp source: utmp records in, observations out (see
:mod:`pysens.sources.utmp` for what a utmp session and a GNU screen session are).

No I/O but :class:`ProcView`, which reads ``/proc`` to find the SCREEN server of a window.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ..events import Method
from ..observations import (
    HostReset,
    Observation,
    SessionAppeared,
    SessionInfo,
    SessionRecord,
    SessionVanished,
)
from .utmprecord import UtmpRecord, UtType

__all__ = ["ProcView", "SlotKey", "UtmpState", "session_info"]

SlotKey = tuple[str, str]
_SCREEN_HOST = re.compile(r"^(?P<orig>.*):(?P<tty>[^:]*):S\.(?P<window>\d+)$")
_LOCAL_HOSTS = frozenset({"", "localhost", "127.0.0.1", "::1", "0.0.0.0"})  # noqa: S104
_SHUTDOWN_LEVELS = frozenset({ord("0"), ord("6")})
_BY_TYPE = frozenset({UtType.RUN_LVL, UtType.BOOT_TIME, UtType.NEW_TIME, UtType.OLD_TIME})


def _is_remote(host: str) -> bool:
    # ":0" is an X display, "tmux(123).%0" a tmux pane: both local.
    return not (host in _LOCAL_HOSTS or host.startswith((":", "tmux(")))


def session_info(
    rec: UtmpRecord, *, host: str | None = None, session_id: str | None = None,
    session_name: str | None = None, raw: dict[str, Any] | None = None,
) -> SessionInfo:
    """The :class:`SessionInfo` of a login record. ``host`` overrides ``ut_host`` (screen's
    original host); the client address is ``ut_addr`` when set, else the remote host."""
    origin = rec.host if host is None else host
    remote = _is_remote(origin)
    address: str | None = rec.address if rec.address != "0.0.0.0" else None  # noqa: S104
    if address is None and remote:
        address = origin
    line = rec.line
    session_type: str | None = "x11"
    tty: str | None = None
    if not line.startswith(":"):
        session_type = "tty" if line.startswith(("tty", "pts/", "console")) else None
        tty = line or None
    return SessionInfo(
        session_id=session_id or line or None, user_name=rec.user or None,
        session_name=session_name, session_type=session_type, tty=tty, remote=remote,
        client_name=origin if remote and origin != address else None,
        client_address=address, since=rec.time if rec.time.timestamp() > 0 else None,
        raw=raw if raw is not None else rec.to_raw(),
    )


def _same_login(a: UtmpRecord, b: UtmpRecord) -> bool:
    # screen keeps pid and time across detach/attach; only the attaching tty in ut_host moves.
    return (a.pid, a.user, a.time, a.host) == (b.pid, b.user, b.time, b.host)


class ProcView:
    """What ``/proc`` says about a window's process: its screen server and its user."""

    def __init__(self, root: str = "/proc") -> None:
        self.root = root

    def screen_of(self, pid: int) -> tuple[int, str] | None:
        """``(server pid, session name)`` when ``pid``'s parent is a SCREEN server."""
        try:
            with open(f"{self.root}/{pid}/stat", "rb") as f:
                stat = f.read()
            ppid = int(stat.rsplit(b")", 1)[1].split()[1])
            with open(f"{self.root}/{ppid}/cmdline", "rb") as f:
                argv = [os.fsdecode(a) for a in f.read().split(b"\0")]
        except (OSError, ValueError, IndexError):
            return None
        if ppid <= 1 or not argv or not os.path.basename(argv[0]).lower().endswith("screen"):
            return None
        return ppid, f"{ppid}.{_screen_name(argv) or 'screen'}"

    def user_of(self, pid: int) -> str | None:
        """The name of ``pid``'s real user, if it lives."""
        try:
            with open(f"{self.root}/{pid}/status", encoding="utf-8", errors="replace") as f:
                uid = next(int(x.split()[1]) for x in f if x.startswith("Uid:"))
            return pwd.getpwuid(uid).pw_name
        except (OSError, ValueError, StopIteration, KeyError, IndexError):
            return None


def _screen_name(argv: list[str]) -> str | None:
    """The ``-S name`` of a screen command line (``-S x``, ``-dmS x``, ``-Sx``)."""
    for i, arg in enumerate(argv[1:], 1):
        if arg.startswith("-S") and len(arg) > 2:
            return arg[2:]
        if arg.startswith("-") and not arg.startswith("--") and arg.endswith("S"):
            return argv[i + 1] if i + 1 < len(argv) and argv[i + 1] else None
    return None


@dataclass(slots=True)
class _Screen:
    key: str
    server: int | None
    info: SessionInfo
    windows: dict[SlotKey, bool] = field(default_factory=dict)  # slot -> attached
    state: str = "new"  # new, attached, pending (all windows gone, server fate open), detached
    detached_at: datetime | None = None


class UtmpState:
    """The pure diff: utmp contents in, observations out. Only :class:`ProcView` reads
    anything (to find a window's screen server); pass one whose root does not exist to keep
    every screen window its own session.

    After :meth:`update`, :attr:`pending` lists the screens whose windows all went away: the
    caller decides (:meth:`detached` or :meth:`ended`) once it knows whether the server lived.
    """

    def __init__(self, source: str = "utmp", host: str | None = None,
                 proc: ProcView | None = None) -> None:
        self.source = source
        self.host = host
        self.proc = proc or ProcView()
        self.slots: dict[SlotKey, UtmpRecord] = {}
        self.screens: dict[str, _Screen] = {}
        self.pending: list[str] = []
        self._window_screen: dict[tuple[SlotKey, int], str] = {}
        self._ended: set[str] = set()

    # -- screens -----------------------------------------------------------------------------

    def _screen_for(self, slot: SlotKey, rec: UtmpRecord, now: datetime) -> _Screen | None:
        key = self._window_screen.get((slot, rec.pid))
        if key is None:
            found = self.proc.screen_of(rec.pid) if rec.pid > 0 else None
            key = f"screen:{found[0]}" if found else f"screen:{rec.line}"
            self._window_screen[(slot, rec.pid)] = key
            if key not in self.screens and key not in self._ended:
                user = rec.user or self.proc.user_of(rec.pid)
                self.screens[key] = _Screen(key, found[0] if found else None, self._screen_info(
                    rec, key, found[1] if found else None, user))
        if key in self._ended:
            return None  # a stale window of a screen that is gone (killed without cleanup)
        return self.screens.get(key)

    def _screen_info(self, rec: UtmpRecord, key: str, name: str | None,
                     user: str | None) -> SessionInfo:
        m = _SCREEN_HOST.match(rec.host)
        origin = m["orig"] if m else ""
        raw = rec.to_raw()
        raw["screen"] = name or key.partition(":")[2]
        info = session_info(rec, host=origin, session_id=key, session_name=name, raw=raw)
        return replace(info, user_name=user or None)

    def _window(self, slot: SlotKey, rec: UtmpRecord, attached: bool, now: datetime) -> str | None:
        scr = self._screen_for(slot, rec, now)
        if scr is None:
            return None
        scr.windows[slot] = attached
        if attached:
            scr.info = replace(self._screen_info(rec, scr.key, scr.info.session_name,
                                                 rec.user or scr.info.user_name),
                               since=scr.info.since)
        return scr.key

    def _drop_window(self, slot: SlotKey, rec: UtmpRecord) -> str | None:
        key = self._window_screen.pop((slot, rec.pid), None)
        scr = self.screens.get(key) if key else None
        if scr is None:
            return None
        scr.windows.pop(slot, None)
        return scr.key

    def _settle(self, keys: Iterable[str], now: datetime, out: list[Observation],
                bounced: set[str] | frozenset[str] = frozenset()) -> None:
        """The screen-level events after its windows moved."""
        for key in dict.fromkeys(keys):
            scr = self.screens.get(key)
            if scr is None:
                continue
            attached = any(scr.windows.values())
            if scr.state == "new":
                if attached:
                    scr.state = "attached"
                    out.append(SessionAppeared(scr.info.since or now, self.source, scr.info,
                                               host=self.host))
                elif not scr.windows:
                    del self.screens[key]
            elif scr.state == "attached" and attached and key in bounced:
                out.append(self._record(scr, Method.SessionDisconnect, now))
                out.append(self._record(scr, Method.SessionReconnect, now))
            elif scr.state == "attached" and not attached:
                scr.detached_at = now
                if scr.server is None and scr.windows:
                    scr.state = "pending"
                    out.extend(self.detached(key, now))
                elif scr.server is None:
                    out.extend(self.ended(key, now, "gone", synthesized=True))
                else:
                    scr.state = "pending"
                    self.pending.append(key)
            elif scr.state in ("pending", "detached") and attached:
                if scr.state == "pending":
                    out.extend(self.detached(key, scr.detached_at or now))
                scr.state = "attached"
                out.append(self._record(scr, Method.SessionReconnect, now))
            elif scr.state == "detached" and not scr.windows and scr.server is None:
                out.extend(self.ended(key, now, "gone", synthesized=True))

    def _record(self, scr: _Screen, method: Method, time: datetime) -> SessionRecord:
        return SessionRecord(time, self.source, method, scr.info, host=self.host)

    def detached(self, key: str, now: datetime) -> list[Observation]:
        """The screen ``key`` was detached (its server lives on): SessionDisconnect."""
        scr = self.screens.get(key)
        if scr is None or scr.state != "pending":
            return []  # re-attached (or gone) since: a late timer says nothing
        scr.state = "detached"
        return [self._record(scr, Method.SessionDisconnect, scr.detached_at or now)]

    def ended(self, key: str, now: datetime, reason: str = "screen ended", *,
              synthesized: bool = False) -> list[Observation]:
        """The screen ``key`` is gone (its server exited): Logoff, once."""
        scr = self.screens.pop(key, None)
        if scr is None:
            return []
        self._ended.add(key)
        for k in [k for k, v in self._window_screen.items() if v == key]:
            del self._window_screen[k]
        if scr.state == "new":
            return []
        time = scr.detached_at if scr.state == "pending" and scr.detached_at else now
        return [SessionVanished(time, self.source, key, reason=reason, synthesized=synthesized,
                                host=self.host)]

    # -- the diff ----------------------------------------------------------------------------

    def load(self, records: Iterable[UtmpRecord], now: datetime) -> list[Observation]:
        """The first read: open sessions as ``SessionAppeared(existing=True)``. A screen found
        detached (dead windows whose shells and server live) is reported disconnected."""
        self.slots = _by_slot(records)
        out: list[Observation] = []
        touched: list[str] = []
        for slot, rec in self.slots.items():
            screen = _SCREEN_HOST.match(rec.host)
            if rec.type == UtType.USER_PROCESS and not screen:
                out.append(SessionAppeared(now, self.source, session_info(rec), existing=True,
                                           host=self.host))
            elif screen and rec.type in (UtType.USER_PROCESS, UtType.DEAD_PROCESS):
                attached = rec.type == UtType.USER_PROCESS
                if not attached and self.proc.screen_of(rec.pid) is None:
                    continue  # a dead window of a screen that is gone
                key = self._window(slot, rec, attached, now)
                if key:
                    touched.append(key)
        for key in dict.fromkeys(touched):
            scr = self.screens[key]
            if not scr.windows:
                continue
            scr.state = "attached" if any(scr.windows.values()) else "detached"
            info = scr.info if scr.state == "attached" else replace(scr.info, state="disconnected")
            out.append(SessionAppeared(now, self.source, info, existing=True, host=self.host))
        return out

    def update(self, records: Iterable[UtmpRecord], now: datetime) -> list[Observation]:
        """The observations for the file now holding ``records``."""
        new = _by_slot(records)
        old = self.slots
        self.slots = new
        self.pending = []
        offs: list[Observation] = []
        ons: list[Observation] = []
        touched: list[str] = []
        bounced: set[str] = set()
        for slot in list(old) + [s for s in new if s not in old]:
            a, b = old.get(slot), new.get(slot)
            if a is not None and b is not None and _fields(a) == _fields(b):
                continue
            a_user = a is not None and a.type == UtType.USER_PROCESS
            b_user = b is not None and b.type == UtType.USER_PROCESS
            same = a is not None and b is not None and _same_login(a, b)
            a_screen = a is not None and _SCREEN_HOST.match(a.host) is not None
            b_screen = b is not None and _SCREEN_HOST.match(b.host) is not None
            if a is not None and a_screen:
                if b is not None and b_screen and b.pid == a.pid:
                    if a_user and not (b_user and same):
                        touched.append(self._window(slot, a, False, now) or "")
                        if b_user:  # detached and attached again between two reads
                            bounced.add(touched[-1])
                else:
                    touched.append(self._drop_window(slot, a) or "")
            elif a is not None and a_user and not (b_user and same):
                dead = b is not None and b.type == UtType.DEAD_PROCESS and b.line == a.line
                when = b.time if dead and b is not None and b.time > a.time else now
                reason = "logout" if dead else "superseded" if b_user else "gone"
                offs.append(SessionVanished(when, self.source, a.line, reason=reason,
                                            synthesized=not dead, host=self.host))
            if b is None or (b_user and same and not b_screen):
                continue
            if b_screen and b_user and not (a_user and same):
                touched.append(self._window(slot, b, True, now) or "")
            elif b_user and not b_screen and not same:
                t = b.time if b.time.timestamp() > 0 else now
                ons.append(SessionAppeared(t, self.source, session_info(b), host=self.host))
            elif b.type == UtType.RUN_LVL and (b.user == "shutdown" or b.pid in _SHUTDOWN_LEVELS):
                ons.append(HostReset(b.time, self.source, "shutdown", host=self.host))
        out = offs
        self._settle([k for k in touched if k], now, out, bounced)
        return out + ons


def _by_slot(records: Iterable[UtmpRecord]) -> dict[SlotKey, UtmpRecord]:
    slots: dict[SlotKey, UtmpRecord] = {}
    for rec in records:
        if rec.type in _BY_TYPE:  # glibc's getutid finds these by type, not id and line
            slots.setdefault((f"type:{rec.type}", ""), rec)
        elif rec.type != UtType.EMPTY:
            slots.setdefault((rec.id, rec.line), rec)
    return slots


def _fields(r: UtmpRecord) -> tuple[object, ...]:
    """A record's contents without its position (a rewrite may move a slot)."""
    return (r.type, r.pid, r.line, r.id, r.user, r.host, r.exit_termination, r.exit_status,
            r.session, r.time, r.address)
