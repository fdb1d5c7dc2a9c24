"""The logind source against the REAL systemd-logind, with real PAM logins (``su -``).

Everything runs inside a private mount namespace (``unshare -m``): a tmpfs on /run, a private
dbus-daemon at the standard system bus path, a stand-in for org.freedesktop.systemd1
(:func:`dbus_fixtures.systemd1_standin`), /lib/systemd/systemd-logind itself, private copies of
/etc/passwd, shadow and group with a test user, and a logind.conf with KillUserProcesses=no.
``sens watch --source logind`` runs in the same namespace, so it sees the real
/run/systemd/sessions that logind writes. The host's /run and /etc are never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.root

LOGIND = "/lib/systemd/systemd-logind"
USER, UID = "pysenstest", 1500
TESTS = Path(__file__).resolve().parent
LOGIND_CONF = "[Login]\nNAutoVTs=0\nReserveVT=0\nKillUserProcesses=no\n"
BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class Namespace:
    """A private mount namespace kept alive by a sleeping process; commands enter it."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.holder = subprocess.Popen(["unshare", "-m", "--propagation", "private",
                                        "sleep", "infinity"])
        self.procs: list[subprocess.Popen[bytes]] = []
        for _ in range(500):  # until the holder is inside its own namespace
            if os.readlink(f"/proc/{self.holder.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"):
                break
            time.sleep(0.01)

    def argv(self, *cmd: str) -> list[str]:
        return ["nsenter", "-t", str(self.holder.pid), "-m", "--", *cmd]

    def run(self, *cmd: str, env: dict[str, str] | None = None) -> str:
        r = subprocess.run(self.argv(*cmd), capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, f"{cmd} failed: {r.stderr}"
        return r.stdout

    def start(self, *cmd: str, log: str, **kw: Any) -> subprocess.Popen[bytes]:
        with (self.dir / log).open("ab") as out:
            p = subprocess.Popen(self.argv(*cmd), stdout=kw.pop("stdout", out),
                                 stderr=subprocess.STDOUT if "stdout" not in kw else out, **kw)
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            if p.stdout is not None:
                p.stdout.close()
        self.holder.kill()
        self.holder.wait()


def _files(d: Path) -> None:
    home = d / "home"
    home.mkdir()
    os.chown(home, UID, UID)
    (d / "passwd").write_text(Path("/etc/passwd").read_text()
                              + f"{USER}:x:{UID}:{UID}::{home}:/bin/sh\n")
    (d / "group").write_text(Path("/etc/group").read_text() + f"{USER}:x:{UID}:\n")
    (d / "shadow").write_text(Path("/etc/shadow").read_text() + f"{USER}:*:19000:0:99999:7:::\n")
    os.chmod(d / "shadow", 0o640)
    (d / "logind.conf").write_text(LOGIND_CONF)
    (d / "bus.conf").write_text(BUS_CONF)


def _wait_for(ns: Namespace, path: str, proc: subprocess.Popen[bytes], what: str) -> None:
    for _ in range(500):
        if subprocess.run(ns.argv("test", "-e", path)).returncode == 0:
            return
        assert proc.poll() is None, f"{what} exited: {(ns.dir / (what + '.log')).read_text()}"
        time.sleep(0.02)
    raise AssertionError(f"{what} did not create {path}")


def _bus_has(ns: Namespace, name: str) -> bool:
    r = subprocess.run(ns.argv("busctl", "--system", "status", name), capture_output=True)
    return r.returncode == 0


@pytest.fixture
def real_logind(tmp_path: Path) -> Iterator[Namespace]:
    """The real systemd-logind in a private mount namespace, ready for PAM logins."""
    assert os.geteuid() == 0, "this tier needs root (CI has it)"
    assert Path(LOGIND).exists(), f"{LOGIND} is missing (Debian package systemd)"
    _files(tmp_path)
    ns = Namespace(tmp_path)
    try:
        sys_dirs = " ".join(f"/run/systemd/{d}" for d in
                            ("system", "seats", "sessions", "users", "inhibit", "machines"))
        ns.run("sh", "-ec", f"""
            mount -t tmpfs tmpfs /run
            mkdir -p /run/dbus /run/user {sys_dirs}
            for f in passwd group shadow; do mount --bind {tmp_path}/$f /etc/$f; done
            mount --bind {tmp_path}/logind.conf /etc/systemd/logind.conf
        """)
        bus = ns.start("dbus-daemon", "--config-file", str(tmp_path / "bus.conf"), "--nofork",
                       log="dbus.log")
        _wait_for(ns, "/run/dbus/system_bus_socket", bus, "dbus")
        env = {**os.environ, "PYTHONPATH": f"{TESTS}:{os.environ.get('PYTHONPATH', '')}"}
        ns.start(sys.executable, "-c", "import asyncio, dbus_fixtures; asyncio.run("
                 "dbus_fixtures.systemd1_standin('unix:path=/run/dbus/system_bus_socket'))",
                 log="systemd1.log", env=env)
        for _ in range(500):
            if _bus_has(ns, "org.freedesktop.systemd1"):
                break
            time.sleep(0.02)
        logind = ns.start(LOGIND, log="logind.log",
                          env={**os.environ, "SYSTEMD_LOG_LEVEL": "debug"})
        for _ in range(500):
            if _bus_has(ns, "org.freedesktop.login1"):
                break
            assert logind.poll() is None, (tmp_path / "logind.log").read_text()[-3000:]
            time.sleep(0.02)
        else:
            raise AssertionError("systemd-logind did not take its bus name")
        yield ns
    finally:
        ns.close()


class Watch:
    """``sens watch --source logind --json`` inside the namespace."""

    def __init__(self, ns: Namespace) -> None:
        env = {k: v for k, v in os.environ.items() if k != "DBUS_SYSTEM_BUS_ADDRESS"}
        env.update(PYTHONUNBUFFERED="1", SENS_SOCKET=str(ns.dir / "none.sock"),
                   SENS_JOURNAL=str(ns.dir / "journal.db"))
        self.proc = ns.start(sys.executable, "-m", "pysens.cli", "watch", "--source", "logind",
                             "--json", "--include-existing", log="watch.log",
                             stdout=subprocess.PIPE, env=env)
        self.ns = ns
        self.lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def next(self, timeout: float = 20.0) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            line = b""
        assert line, f"no event; watch log: {(self.ns.dir / 'watch.log').read_text()}"
        return json.loads(line)  # type: ignore[no-any-return]


def _su(ns: Namespace, command: str) -> None:
    # XDG_SESSION_TYPE/CLASS as a terminal login sets them (pam_systemd reads them from the
    # environment); without a tty, su's session would be a "background" one, which is no logon.
    ns.run("env", "XDG_SESSION_TYPE=tty", "XDG_SESSION_CLASS=user", "su", "-", USER,
           "-c", command)


def _session_ids(ns: Namespace) -> list[str]:
    out = ns.run("busctl", "--system", "--json=short", "call", "org.freedesktop.login1",
                 "/org/freedesktop/login1", "org.freedesktop.login1.Manager", "ListSessions")
    return [row[0] for row in json.loads(out)["data"][0]]


def test_real_logind_su_login_logout_and_lingering_scope(real_logind: Namespace) -> None:
    ns = real_logind
    # A session that exists before watching starts (sleep keeps it logged in for a while).
    holder = ns.start("env", "XDG_SESSION_TYPE=tty", "XDG_SESSION_CLASS=user", "su", "-", USER,
                      "-c", "sleep 60", log="su-holder.log")
    for _ in range(500):
        if _session_ids(ns):
            break
        assert holder.poll() is None, (ns.dir / "su-holder.log").read_text()
        time.sleep(0.02)
    (existing,) = _session_ids(ns)
    watch = Watch(ns)
    first = watch.next()
    assert (first["method"], first["user_name"], first["session_id"]) == ("Logon", USER,
                                                                          existing)
    assert watch.next()["method"] == "PostShell"

    # The screen locker reports the lock (root may set the hint of any session).
    path = json.loads(ns.run("busctl", "--system", "--json=short", "call",
                             "org.freedesktop.login1", "/org/freedesktop/login1",
                             "org.freedesktop.login1.Manager", "GetSession", "s",
                             existing))["data"][0]
    for hint in ("true", "false"):
        ns.run("busctl", "--system", "call", "org.freedesktop.login1", path,
               "org.freedesktop.login1.Session", "SetLockedHint", "b", hint)
    assert [watch.next()["method"] for _ in "12"] == ["DisplayLock", "DisplayUnlock"]

    # A real PAM login and logout through pam_systemd.
    _su(ns, "true")
    logon, shell, logoff = watch.next(), watch.next(), watch.next()
    sid = logon["session_id"]
    assert (logon["method"], logon["user_name"], logon["source"]) == ("Logon", USER, "logind")
    assert logon["raw"]["Service"] == "su-l" and logon["session_type"] == "tty"
    assert shell["method"] == "PostShell"
    # The scope lingers (the stand-in keeps it active): logind never sends SessionRemoved,
    # yet the logout is seen through State=closing.
    assert (logoff["method"], logoff["session_id"], logoff["reason"]) == ("Logoff", sid,
                                                                          "closing")
    assert sid in _session_ids(ns)

    # The lingering processes end: logind finalizes the session; no second Logoff.
    ns.run(sys.executable, "-c", "import asyncio\nfrom dbus_fast.aio import MessageBus\n"
           "from dbus_fast import Message\n"
           "async def m():\n"
           "    b = await MessageBus(bus_address='unix:path=/run/dbus/system_bus_socket')"
           ".connect()\n"
           "    await b.call(Message(destination='org.freedesktop.systemd1', "
           "path='/org/freedesktop/systemd1', interface='org.pysens.Test', member='Finish', "
           f"signature='s', body=['session-{sid}.scope']))\n"
           "asyncio.run(m())")
    for _ in range(500):
        if sid not in _session_ids(ns):
            break
        time.sleep(0.02)
    assert sid not in _session_ids(ns)
    holder.terminate()
    holder.wait(10)
    last = watch.next()
    assert (last["method"], last["session_id"]) == ("Logoff", existing)
    with contextlib.suppress(Exception):
        shutil.rmtree(ns.dir / "home")
