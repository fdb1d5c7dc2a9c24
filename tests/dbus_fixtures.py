"""A private system-type dbus-daemon and python-dbusmock's logind template, driven with dbus-fast.

The mock runs as a separate process under Debian's /usr/bin/python3 (package python3-dbusmock:
the PyPI one needs dbus-python, which does not build in our venv). It does not emit
SessionNew / SessionRemoved by itself, so :class:`MockLogind` emits them as logind would, and
mirrors logind's quirks: numeric ids get escaped object paths (``/session/_31``), a VT switch's
PropertiesChanged carries ``Active`` alone, and ``State=closing`` changes silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from pysens.events import SensEvent
from pysens.live import tracked_events
from pysens.sources.logind import LogindSource
from pysens.tracker import Tracker

LOGIN1 = "org.freedesktop.login1"
MANAGER_PATH = "/org/freedesktop/login1"
MANAGER = "org.freedesktop.login1.Manager"
SESSION = "org.freedesktop.login1.Session"
MOCK = "org.freedesktop.DBus.Mock"
SYSTEM_PYTHON = "/usr/bin/python3"
STAGING_NAME = "org.pysens.StagedLogind"
# Runs python-dbusmock's logind template under the bus name given as argv[1].
LAUNCHER = """
import runpy, sys
import dbusmock.templates.logind as template
template.BUS_NAME = sys.argv[1]
sys.argv = ["dbusmock", "--system", "--template", "logind"]
runpy.run_module("dbusmock", run_name="__main__", alter_sys=True)
"""
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in µs, logind's Timestamp unit

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <keep_umask/>
  <listen>unix:path={socket}</listen>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def escape_label(label: str) -> str:
    """logind's object path label escaping (``bus_label_escape``): ``1`` -> ``_31``."""
    out = []
    for i, ch in enumerate(label):
        if ch.isascii() and (ch.isalpha() or (ch.isdigit() and i > 0)):
            out.append(ch)
        else:
            out.extend(f"_{b:02x}" for b in ch.encode())
    return "".join(out)


def session_path(sid: str) -> str:
    """The object path real logind gives session ``sid``."""
    return f"{MANAGER_PATH}/session/{escape_label(sid)}"


def _variant(name: str, value: Any) -> Variant:
    if isinstance(value, Variant):
        return value
    if name == "Seat":
        return Variant("(so)", [value, f"{MANAGER_PATH}/seat/{value}" if value else "/"])
    if name == "User":
        return Variant("(uo)", [value, f"{MANAGER_PATH}/user/_{value}"])
    if isinstance(value, bool):
        return Variant("b", value)
    if isinstance(value, int):
        return Variant("t" if name.startswith(("Timestamp", "IdleSince")) else "u", value)
    return Variant("s", value)


def session_props(
    sid: str, user: str, uid: int = 1000, *, seat: str = "", tty: str = "",
    type_: str = "tty", class_: str = "user", remote: bool = False, remote_host: str = "",
    service: str = "login", active: bool = True, state: str | None = None,
    locked: bool = False, timestamp: int = T0, display: str = "",
) -> dict[str, Any]:
    """The properties logind 252 shows for one session (plain values)."""
    return {
        "Id": sid, "Name": user, "User": uid, "Seat": seat, "TTY": tty, "Display": display,
        "Type": type_, "Class": class_, "Remote": remote, "RemoteHost": remote_host,
        "RemoteUser": "", "Service": service, "Desktop": "", "Scope": f"session-{sid}.scope",
        "Leader": 4242, "Audit": 0, "VTNr": 0, "Active": active, "LockedHint": locked,
        "IdleHint": False, "IdleSinceHint": 0, "IdleSinceHintMonotonic": 0,
        "State": state or ("active" if active else "online"), "Timestamp": timestamp,
        "TimestampMonotonic": 42,
    }


class DbusMock:
    """A python-dbusmock process on the private bus (started under Debian's python3, which has
    dbus-python) and a dbus-fast client connection that drives it."""

    #: What the mock is, for messages ("the logind mock exited").
    what = "dbusmock"

    def __init__(self, address: str, log: Path, dest: str) -> None:
        self.address = address
        self.log = log
        self.dest = dest
        self.process: subprocess.Popen[bytes] | None = None
        self.client: Any = None

    async def launch(self, argv: list[str]) -> None:
        """Run ``SYSTEM_PYTHON argv`` and wait until it owns :attr:`dest`."""
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.address}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once; the child is waited for elsewhere
                [SYSTEM_PYTHON, *argv], stdout=out, stderr=subprocess.STDOUT, env=env)
        self.client = await MessageBus(bus_address=self.address).connect()
        for _ in range(1000):
            (owned,) = await self.bus_call("NameHasOwner", "s", [self.dest])
            if owned:
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"the {self.what} mock exited: {self.log.read_text()[-2000:]}")
            await asyncio.sleep(0.01)
        raise RuntimeError(f"the {self.what} mock did not take its bus name within 10 s")

    async def stop(self) -> None:
        """Stop the mock (the service leaving the bus) and drop the client connection."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.client is not None:
            self.client.disconnect()
            self.client = None

    async def bus_call(self, member: str, signature: str = "", body: list[Any] | None = None
                       ) -> list[Any]:
        """A call to the bus daemon itself."""
        return await self._send("org.freedesktop.DBus", "/org/freedesktop/DBus",
                                "org.freedesktop.DBus", member, signature, body or [])

    async def call(self, path: str, interface: str, member: str, signature: str = "",
                   body: list[Any] | None = None) -> list[Any]:
        """A call to the mock."""
        return await self._send(self.dest, path, interface, member, signature, body or [])

    async def _send(self, dest: str, path: str, interface: str, member: str, signature: str,
                    body: list[Any]) -> list[Any]:
        reply = await self.client.call(Message(destination=dest, path=path, interface=interface,
                                               member=member, signature=signature, body=body))
        if reply.message_type == MessageType.ERROR:
            raise RuntimeError(f"{member}: {reply.error_name}: {reply.body}")
        return list(reply.body)


class MockLogind(DbusMock):
    """The logind mock process and a client connection that drives it."""

    what = "logind"

    def __init__(self, address: str, log: Path, *, staged: bool = False) -> None:
        #: Staged: the mock first owns STAGING_NAME, so sessions can be restored before it takes
        #: org.freedesktop.login1 (real logind restores its sessions before taking the name).
        super().__init__(address, log, STAGING_NAME if staged else LOGIN1)
        self.paths: dict[str, str] = {}

    async def start(self) -> None:
        """Start the mock and wait until it owns its bus name."""
        await self.launch(["-c", LAUNCHER, self.dest])
        # A way to change a property without a signal, as logind changes State to closing.
        await self.call(MANAGER_PATH, MOCK, "AddMethod", "sssss", [
            "org.pysens.Test", "SetQuiet", "oa{sv}", "",
            "for k, v in args[1].items(): objects[args[0]].props['"
            + SESSION + "'][k] = v",
        ])
        await self.call(MANAGER_PATH, MOCK, "AddMethod", "sssss", [
            "org.pysens.Test", "TakeName", "", "",
            f"self.pysens_name = dbus.service.BusName('{LOGIN1}', self.connection)",
        ])

    async def take_name(self) -> None:
        """A staged mock takes org.freedesktop.login1 (logind is back on the bus)."""
        await self.call(MANAGER_PATH, "org.pysens.Test", "TakeName")
        self.dest = LOGIN1

    # -- what logind does ----------------------------------------------------------------

    async def add(self, props: dict[str, Any], *, announce: bool = True) -> str:
        """A session object with ``props`` (and SessionNew when ``announce``)."""
        sid = props["Id"]
        path = session_path(sid)
        self.paths[sid] = path
        methods = [
            ["Lock", "", "", 'self.EmitSignal("", "Lock", "", [])'],
            ["Unlock", "", "", 'self.EmitSignal("", "Unlock", "", [])'],
            ["SetLockedHint", "b", "", 'self.UpdateProperties("", {"LockedHint": args[0]})'],
        ]
        await self.call(MANAGER_PATH, MOCK, "AddObject", "ssa{sv}a(ssss)", [
            path, SESSION, {k: _variant(k, v) for k, v in props.items()}, methods,
        ])
        if announce:
            await self.manager_signal("SessionNew", "so", [sid, path])
        return path

    async def manager_signal(self, name: str, signature: str, args: list[Any]) -> None:
        """A Manager signal (SessionNew, SessionRemoved, UserRemoved …)."""
        await self.call(MANAGER_PATH, MOCK, "EmitSignal", "sssav", [
            MANAGER, name, signature, [Variant(t, a) for t, a in zip(signature, args,
                                                                     strict=True)],
        ])

    async def remove(self, sid: str) -> None:
        """The session object goes and SessionRemoved is sent."""
        path = self.paths.pop(sid)
        await self.call(MANAGER_PATH, MOCK, "RemoveObject", "o", [path])
        await self.manager_signal("SessionRemoved", "so", [sid, path])

    async def change(self, sid: str, **props: Any) -> None:
        """One PropertiesChanged carrying exactly ``props`` (what logind sends)."""
        await self.call(self.paths[sid], MOCK, "UpdateProperties", "sa{sv}",
                        [SESSION, {k: _variant(k, v) for k, v in props.items()}])

    async def change_quietly(self, sid: str, **props: Any) -> None:
        """Change properties without any signal (logind's State=closing)."""
        await self.call(MANAGER_PATH, "org.pysens.Test", "SetQuiet", "oa{sv}",
                        [self.paths[sid], {k: _variant(k, v) for k, v in props.items()}])

    async def session_signal(self, sid: str, name: str) -> None:
        """A Session signal (Lock / Unlock requests)."""
        await self.call(self.paths[sid], MOCK, "EmitSignal", "sssav", [SESSION, name, "", []])

    async def list_sessions(self) -> list[Any]:
        """What ListSessions answers now."""
        (rows,) = await self.call(MANAGER_PATH, MANAGER, "ListSessions")
        return list(rows)


class PrivateBus:
    """A dbus-daemon with a system-bus-like, allow-all policy on a private socket."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "system_bus_socket"
        self.config = directory / "system-bus.conf"
        self.config.write_text(BUS_CONFIG.format(socket=self.socket))
        self.address = f"unix:path={self.socket}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the daemon and wait until it prints its address (it listens by then)."""
        self.process = subprocess.Popen(
            ["dbus-daemon", "--config-file", str(self.config), "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode().strip()
        assert line.startswith("unix:"), f"dbus-daemon printed {line!r}"

    def stop(self) -> None:
        """Stop the daemon (every connection drops)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(5)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None
        self.socket.unlink(missing_ok=True)


class Collector:
    """Runs the source through a tracker in a task; tests await the events it produces."""

    def __init__(self, source: LogindSource, tracker: Tracker) -> None:
        self.source = source
        self.tracker = tracker
        self.events: list[SensEvent] = []
        self._queue: asyncio.Queue[SensEvent] = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for event in tracked_events(self.source, self.tracker):
            self.events.append(event)
            self._queue.put_nowait(event)

    async def ready(self) -> None:
        """Wait until the source has subscribed and taken its snapshot."""
        waiter = asyncio.create_task(self.source.ready.wait())
        done, _ = await asyncio.wait({waiter, self.task}, timeout=10,
                                     return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            if self.task.done():
                self.task.result()
            raise AssertionError("the logind source did not become ready within 10 s")

    async def next(self, n: int = 1, timeout: float = 10.0) -> list[SensEvent]:  # noqa: ASYNC109 - a test's hang guard
        """The next ``n`` events (fails when they do not come within ``timeout``)."""
        out: list[SensEvent] = []
        for _ in range(n):
            getter = asyncio.create_task(self._queue.get())
            done, _ = await asyncio.wait({getter, self.task}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                if self.task.done():
                    self.task.result()
                raise AssertionError(f"expected {n} event(s), got {out} then nothing")
            out.append(getter.result())
        return out

    def pending(self) -> list[SensEvent]:
        """Events produced but not yet taken with :meth:`next`."""
        out = []
        while not self._queue.empty():
            out.append(self._queue.get_nowait())
        return out

    async def close(self) -> None:
        """Stop the task and the source."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.source.aclose()


class LogindWorld:
    """A private bus with the logind mock on it, and ways to break both."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.bus = PrivateBus(directory)
        self.sessions_dir = directory / "sessions"
        self.sessions_dir.mkdir()
        self.mock = MockLogind(self.bus.address, directory / "dbusmock.log")
        self.collectors: list[Collector] = []

    @property
    def address(self) -> str:
        """The bus address (for DBUS_SYSTEM_BUS_ADDRESS)."""
        return self.bus.address

    async def watch(self, *, include_existing: bool = False) -> Collector:
        """A ready collector over a fresh logind source on this bus."""
        source = LogindSource(self.address, sessions_dir=str(self.sessions_dir), max_backoff=0.2)
        c = Collector(source, Tracker(host="testhost", include_existing=include_existing))
        self.collectors.append(c)
        await c.ready()
        return c

    def save_session_file(self, sid: str, state: str) -> None:
        """What logind's session_save() does: write a temporary file, rename it into place."""
        tmp = self.sessions_dir / f".#{sid}tmp"
        tmp.write_text(f"# This is private data. Do not parse.\nSTATE={state}\n")
        tmp.rename(self.sessions_dir / sid)

    async def restart_mock(self) -> None:
        """logind leaves the bus; a fresh one starts staged (call ``mock.take_name()``)."""
        await self.mock.stop()
        self.mock = MockLogind(self.bus.address, self.directory / "dbusmock.log", staged=True)
        await self.mock.start()

    async def restart_bus(self) -> None:
        """The bus daemon goes down (every connection drops) and comes back with a staged
        logind (call ``mock.take_name()``)."""
        await self.mock.stop()
        self.bus.stop()
        self.bus.start()
        self.mock = MockLogind(self.bus.address, self.directory / "dbusmock.log", staged=True)
        await self.mock.start()

    async def close(self) -> None:
        """Stop everything this world started."""
        for c in self.collectors:
            await c.close()
        await self.mock.stop()
        self.bus.stop()


@pytest.fixture
async def logind(tmp_path: Path) -> AsyncIterator[LogindWorld]:
    """A private system bus with the python-dbusmock logind template on it."""
    world = LogindWorld(tmp_path)
    world.bus.start()
    try:
        await world.mock.start()
        yield world
    finally:
        await world.close()


# -- a stand-in for org.freedesktop.systemd1, for the real systemd-logind tier -----------------

_SD_PATH = "/org/freedesktop/systemd1"
_SD_MANAGER = "org.freedesktop.systemd1.Manager"
_SD_UNIT_PREFIX = _SD_PATH + "/unit/"


def _sd_unescape(label: str) -> str:
    out, i = bytearray(), 0
    while i < len(label):
        if label[i] == "_" and i + 2 < len(label):
            out.append(int(label[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(ord(label[i]))
            i += 1
    return out.decode()


async def systemd1_standin(address: str) -> None:
    """Answer what systemd-logind asks of systemd (units, jobs, scopes) on the bus at
    ``address``, the way systemd would, without running anything.

    Jobs finish at once (``JobRemoved … "done"``). A session scope stays active after
    ``Abandon()`` (its processes linger, as a tmux would) until ``org.pysens.Test.Finish(s)``
    ends it (``PropertiesChanged ActiveState=inactive`` + ``UnitRemoved``), so the test decides
    when logind may send SessionRemoved.
    """
    from dbus_fast import Message, MessageType, Variant
    from dbus_fast.aio import MessageBus

    bus = await MessageBus(bus_address=address).connect()
    active: set[str] = set()
    jobs = [0]

    def unit_path(name: str) -> str:
        return _SD_UNIT_PREFIX + escape_label(name)

    def finish_job(name: str) -> str:
        jobs[0] += 1
        path = f"{_SD_PATH}/job/{jobs[0]}"
        job = jobs[0]
        asyncio.get_running_loop().call_soon(lambda: bus.send(Message.new_signal(
            _SD_PATH, _SD_MANAGER, "JobRemoved", "uoss", [job, path, name, "done"])))
        return path

    def end_unit(name: str) -> None:
        active.discard(name)
        path = unit_path(name)
        bus.send(Message.new_signal(path, "org.freedesktop.DBus.Properties", "PropertiesChanged",
                                    "sa{sv}as", ["org.freedesktop.systemd1.Unit",
                                                 {"ActiveState": Variant("s", "inactive"),
                                                  "SubState": Variant("s", "dead")}, []]))
        bus.send(Message.new_signal(_SD_PATH, _SD_MANAGER, "UnitRemoved", "so", [name, path]))

    def handler(msg: Any) -> Any:
        if msg.message_type != MessageType.METHOD_CALL:
            return None
        m, body = msg.member, msg.body
        if msg.interface == _SD_MANAGER:
            if m in ("StartTransientUnit", "StartUnit"):
                active.add(body[0])
                return Message.new_method_return(msg, "o", [finish_job(body[0])])
            if m == "StopUnit":
                end_unit(body[0])
                return Message.new_method_return(msg, "o", [finish_job(body[0])])
            if m == "GetUnit":
                return Message.new_method_return(msg, "o", [unit_path(body[0])])
            return Message.new_method_return(msg)  # Subscribe, KillUnit, ResetFailedUnit …
        if msg.interface == "org.freedesktop.systemd1.Scope" and m == "Abandon":
            return Message.new_method_return(msg)  # processes linger: stays active
        if msg.interface == "org.pysens.Test" and m == "Finish":
            end_unit(body[0])
            return Message.new_method_return(msg)
        if msg.interface == "org.freedesktop.DBus.Properties" and m == "Get":
            path = msg.path or ""
            if path.startswith(_SD_UNIT_PREFIX):
                name = _sd_unescape(path[len(_SD_UNIT_PREFIX):])
                state = "active" if name in active else "inactive"
                return Message.new_method_return(msg, "v", [Variant("s", state)])
            return Message.new_error(msg, "org.freedesktop.systemd1.NoSuchJob", "no such job")
        return Message.new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod",
                                 f"{msg.interface}.{m} is not in the stand-in")

    bus.add_message_handler(handler)
    await bus.request_name("org.freedesktop.systemd1")
    await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
