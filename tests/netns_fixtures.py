"""Private network namespaces with real links, and the network source run inside one.

Why a child process (``ip netns exec NS python tests/_net_probe.py``) rather than ``setns()``
in a thread: the source is then exactly what runs in production — a whole process in one
namespace, its resolver, its probe sockets and the sysfs it reads (``ip netns exec`` remounts
``/sys`` for the namespace and bind-mounts ``/etc/netns/NS/*`` over ``/etc``, which gives each
test its own ``hosts`` and ``resolv.conf``). With ``setns()`` only the thread that called it
moves: the asyncio loop's resolver threads, sysfs and ``/etc`` would still be the host's.

The child prints one JSON object per line: ``{"ready": …}`` once it is subscribed and has
dumped the state, ``{"obs": …}`` per observation and ``{"event": …}`` per SENS event
(observations fed through :class:`pysens.tracker.Tracker`). Everything a test creates is
deleted at teardown, on failure too.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
PROBE = HERE / "_net_probe.py"
TUN_HOLDER = """
import fcntl, os, struct, sys, time
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", sys.argv[1].encode(), 0x0001 | 0x1000))
print("ready", flush=True)
time.sleep(3600)
"""
LISTENER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""


def run(*cmd: str, input: str | None = None) -> str:
    """Run a command; fail the test with its stderr when it fails."""
    r = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=30)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
    return r.stdout


class Netns:
    """One named network namespace, its /etc/netns overlay, and processes started in it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.etc = Path("/etc/netns") / name
        self.processes: list[subprocess.Popen[str]] = []
        run("ip", "netns", "add", name)
        self.ip("link", "set", "lo", "up")

    def ip(self, *args: str) -> str:
        """``ip -n NS ARGS``."""
        return run("ip", "-n", self.name, *args)

    def batch(self, lines: list[str]) -> None:
        """Many ``ip`` commands in one process, as fast as the kernel takes them."""
        run("ip", "-n", self.name, "-batch", "-", input="\n".join(lines) + "\n")

    def write_etc(self, filename: str, text: str) -> None:
        """A file ``ip netns exec`` shows as ``/etc/FILENAME`` inside the namespace."""
        self.etc.mkdir(parents=True, exist_ok=True)
        (self.etc / filename).write_text(text)

    def popen(self, *cmd: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """A process inside the namespace, its stdout piped (killed at teardown)."""
        p = subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
        self.processes.append(p)
        return p

    def start_python(self, code: str, *args: str) -> subprocess.Popen[str]:
        """Python ``code`` in the namespace, once it has printed ``ready``."""
        p = self.popen(sys.executable, "-c", code, *args)
        assert p.stdout is not None
        line = p.stdout.readline()
        if line.strip() != "ready":
            p.kill()
            raise AssertionError(f"helper did not start: {line!r} {p.communicate()[1]}")
        return p

    def hold_tun(self, name: str) -> subprocess.Popen[str]:
        """Attach a process to tun device ``name`` (carrier on until it exits)."""
        return self.start_python(TUN_HOLDER, name)

    def listen(self, address: str, port: int) -> subprocess.Popen[str]:
        """A TCP listener on ``address:port`` in this namespace."""
        return self.start_python(LISTENER, address, str(port))

    def delete(self) -> None:
        """Stop its processes and delete the namespace and its /etc overlay."""
        for p in self.processes:
            stop(p)
        with contextlib.suppress(AssertionError):
            for pid in run("ip", "netns", "pids", self.name).split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(AssertionError):
            run("ip", "netns", "delete", self.name)
        shutil.rmtree(self.etc, ignore_errors=True)


def stop(p: subprocess.Popen[str]) -> None:
    """Terminate a process and reap it."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    for stream in (p.stdout, p.stderr):
        if stream is not None:
            stream.close()


class Namespaces:
    """Creates namespaces on demand; all are deleted at teardown."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.made: list[Netns] = []

    def new(self) -> Netns:
        """A fresh namespace named ``pysens-test-<random>-<n>``."""
        ns = Netns(f"pysens-test-{self.tag}-{len(self.made)}")
        self.made.append(ns)
        return ns

    def veth(self, a: Netns, a_name: str, b: Netns, b_name: str) -> None:
        """A veth pair: ``a_name`` in ``a``, its peer ``b_name`` in ``b`` (both down)."""
        a.ip("link", "add", a_name, "type", "veth", "peer", "name", b_name, "netns", b.name)

    def close(self) -> None:
        """Delete every namespace made."""
        for ns in self.made:
            ns.delete()


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    """Private network namespaces, deleted at teardown even when the test fails."""
    if os.geteuid() != 0:
        pytest.fail("network namespace tests need root (CI runs them as root)")
    made = Namespaces()
    try:
        yield made
    finally:
        made.close()


class NetProbe:
    """The network source running in a namespace (tests/_net_probe.py), read line by line."""

    def __init__(self, ns: Netns, **options: Any) -> None:
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        self.process = ns.popen(sys.executable, str(PROBE), json.dumps(options), env=env)
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.stderr: list[str] = []
        self.observations: list[dict[str, Any]] = []
        self._threads = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for t in self._threads:
            t.start()
        self.ready = self._next(lambda m: "ready" in m, 15)["ready"]

    def _read_out(self) -> None:
        assert self.process.stdout is not None
        with contextlib.suppress(ValueError):  # closed at teardown
            for line in self.process.stdout:
                self.lines.put(json.loads(line))
        self.lines.put(None)

    def _read_err(self) -> None:
        assert self.process.stderr is not None
        with contextlib.suppress(ValueError):
            for line in self.process.stderr:
                self.stderr.append(line.rstrip("\n"))

    def _next(self, wanted: Any, timeout: float) -> dict[str, Any]:
        while True:
            try:
                item = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"nothing came within {timeout:g} s; observations: "
                                     f"{self.observations[-4:]}; stderr: {self.stderr[-5:]}"
                                     ) from None
            if item is None:
                raise AssertionError(f"the probe exited: {self.stderr[-10:]}")
            if "obs" in item:
                self.observations.append(item["obs"])
            if wanted(item):
                return item

    def events(self, n: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The next ``n`` SENS events (JSON objects)."""
        return [self._next(lambda m: "event" in m, timeout)["event"] for _ in range(n)]

    def observe(self, wanted: Any, timeout: float = 10.0) -> dict[str, Any]:
        """The next observation for which ``wanted(obs)`` is true (events pass by)."""
        found: dict[str, Any] = self._next(lambda m: "obs" in m and wanted(m["obs"]),
                                           timeout)["obs"]
        return found

    def close(self) -> None:
        """Stop the child."""
        stop(self.process)
        for t in self._threads:
            t.join(5)
