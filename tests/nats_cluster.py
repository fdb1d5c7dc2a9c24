"""A real NATS JetStream cluster for tests and benchmarks: N nats-server processes on loopback.

Each node has its own server name, store directory, client port, cluster (route) port and
monitoring port, all free loopback ports (never the system server on 4222). :meth:`NatsCluster.
wait_ready` waits until every node has its routes and JetStream has a meta leader;
:meth:`kill` (SIGKILL), :meth:`restart` and :meth:`wipe` (the disk lost) make the failures a
fleet must live through; :meth:`stream_leader` says which node leads a stream.

The readiness and leader questions are asked over the NATS protocol itself with a tiny
blocking client (:func:`js_request`): ``$JS.API.INFO`` answers ``503`` / error 10008 until the
meta group has a leader, ``$JS.API.STREAM.INFO.<name>`` names the stream's leader. The route
count comes from the monitoring endpoint ``/routez``. None of this needs an event loop, so the
helper works from sync tests, async tests and scripts alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

#: The Debian package's server (scripts/apt-packages.txt); never the system one on port 4222.
NATS_SERVER = "/usr/sbin/nats-server"


def server_version(exe: str = NATS_SERVER) -> tuple[int, int, int]:
    """``nats-server --version`` as numbers (``nats-server: v2.9.10`` -> (2, 9, 10))."""
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    text = out.strip().rpartition("v")[2]
    major, minor, patch = (int(p) for p in text.split(".")[:3])
    return major, minor, patch


class NatsRequestError(Exception):
    """A request had no answer, a status instead of one, or the connection failed."""


def _read_frame(sock: socket.socket, buf: bytearray) -> tuple[bytes, bytes, bytes]:
    """The next MSG/HMSG as (control line, header block, payload); PINGs are answered."""
    while True:
        eol = buf.find(b"\r\n")
        if eol >= 0:
            line = bytes(buf[:eol])
            if line.startswith((b"MSG ", b"HMSG ")):
                args = line.split(b" ")
                hmsg = line.startswith(b"HMSG")
                total = int(args[-1])
                hlen = int(args[-2]) if hmsg else 0
                if len(buf) >= eol + 2 + total + 2:
                    body = bytes(buf[eol + 2:eol + 2 + total])
                    del buf[:eol + 2 + total + 2]
                    return line, body[:hlen], body[hlen:]
            else:
                del buf[:eol + 2]
                if line == b"PING":
                    sock.sendall(b"PONG\r\n")
                elif line.startswith(b"-ERR"):
                    raise NatsRequestError(line.decode(errors="replace"))
                continue
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise NatsRequestError("the server closed the connection")
        buf += chunk


def js_request(port: int, subject: str, payload: bytes = b"", timeout: float = 2.0,
               host: str = "127.0.0.1") -> dict[str, Any]:
    """One NATS request (blocking, plain protocol) and its JSON answer.

    Raises :class:`NatsRequestError` for no answer, a status reply (``503`` no responders …)
    or a lost connection; a JetStream API error comes back as the JSON it is (``"error"``).
    """
    inbox = f"_INBOX.t{os.getpid()}x{time.monotonic_ns()}"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            buf = bytearray()
            sock.settimeout(timeout)
            while b"\r\n" not in buf:
                chunk = sock.recv(4096)
                if not chunk:
                    raise NatsRequestError("the server closed the connection")
                buf += chunk
            del buf[:buf.find(b"\r\n") + 2]  # INFO
            opts = json.dumps({"verbose": False, "pedantic": False, "headers": True,
                               "no_responders": True, "protocol": 1})
            sock.sendall(f"CONNECT {opts}\r\nSUB {inbox} 1\r\n"
                         f"PUB {subject} {inbox} {len(payload)}\r\n".encode()
                         + payload + b"\r\n")
            _line, headers, data = _read_frame(sock, buf)
    except OSError as e:
        raise NatsRequestError(f"{subject} on port {port}: {e}") from None
    if headers and not data:
        status = headers.split(b"\r\n")[0].decode(errors="replace")
        raise NatsRequestError(f"{subject} on port {port}: status {status}")
    answer: dict[str, Any] = json.loads(data)
    return answer


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports nobody listens on now (all bound at once: one at a time, the
    kernel may hand out the same port twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


class ClusterNode:
    """One nats-server of a :class:`NatsCluster` (ports and directory fixed for its life)."""

    def __init__(self, index: int, base: Path, cluster_name: str, ports: list[int]) -> None:
        self.index = index
        self.name = f"{cluster_name}-n{index}"
        self.port, self.cluster_port, self.monitor_port = ports
        self.store_dir = base / self.name
        self.log = base / f"{self.name}.log"
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """The process is alive."""
        return self.proc is not None and self.proc.poll() is None


class NatsCluster:
    """``n`` JetStream nats-servers routed to each other on loopback; see the module docstring.

    ``extra`` goes on every node's command line (``-DV`` to debug a test, say).
    """

    def __init__(self, base: Path, n: int = 3, *, cluster_name: str = "sens",
                 extra: list[str] | None = None, exe: str = NATS_SERVER) -> None:
        self.base = base
        self.exe = exe
        self.cluster_name = cluster_name
        self.extra = extra or []
        base.mkdir(parents=True, exist_ok=True)
        ports = free_ports(3 * n)
        self.nodes = [ClusterNode(i, base, cluster_name, ports[3 * i:3 * i + 3])
                      for i in range(n)]

    # -- addresses ---------------------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        """Every node's client URL, node 0 first."""
        return [node.url for node in self.nodes]

    @property
    def seed(self) -> str:
        """The nodes as one comma-separated seed list (``nats://a:1,nats://b:2,…``)."""
        return ",".join(self.urls)

    def node_by_name(self, name: str) -> ClusterNode:
        """The node whose server name is ``name``."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    # -- processes ---------------------------------------------------------------------------

    def _command(self, node: ClusterNode) -> list[str]:
        routes = ",".join(f"nats://127.0.0.1:{other.cluster_port}"
                          for other in self.nodes if other is not node)
        return [self.exe, "-js", "-sd", str(node.store_dir), "-n", node.name,
                "-a", "127.0.0.1", "-p", str(node.port), "-m", str(node.monitor_port),
                "--cluster_name", self.cluster_name,
                "--cluster", f"nats://127.0.0.1:{node.cluster_port}", "--routes", routes,
                *self.extra]

    def start(self, i: int | None = None) -> None:
        """Start node ``i`` (every node when None) and wait until it accepts clients."""
        for node in self.nodes if i is None else [self.nodes[i]]:
            if node.running:
                continue
            with open(node.log, "ab") as log:
                node.proc = subprocess.Popen(self._command(node), stdout=log,
                                             stderr=subprocess.STDOUT)
        for node in self.nodes if i is None else [self.nodes[i]]:
            self._wait_listening(node)

    def _wait_listening(self, node: ClusterNode, limit: float = 20.0) -> None:
        deadline = time.monotonic() + limit
        while True:
            if not node.running:
                tail = node.log.read_text(errors="replace")[-600:]
                raise AssertionError(f"nats-server {node.name} exited at start:\n{tail}")
            try:
                socket.create_connection(("127.0.0.1", node.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{node.name} did not start listening") from None
                time.sleep(0.05)

    def kill(self, i: int) -> None:
        """SIGKILL node ``i`` (no flush, no goodbye to the cluster) and reap it."""
        node = self.nodes[i]
        if node.proc is not None:
            if node.proc.poll() is None:
                node.proc.send_signal(signal.SIGKILL)
            node.proc.wait()
        node.proc = None

    def stop(self, i: int) -> None:
        """Stop node ``i`` cleanly (SIGTERM, as a service manager does)."""
        node = self.nodes[i]
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGTERM)
            try:
                node.proc.wait(20)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()
        node.proc = None

    def restart(self, i: int) -> None:
        """Start node ``i`` again on its ports and store (killing it first if it runs)."""
        self.kill(i)
        self.start(i)

    def wipe(self, i: int) -> None:
        """Kill node ``i`` and delete its store: it comes back (on :meth:`restart`) with no
        disk, as a replaced machine would."""
        self.kill(i)
        shutil.rmtree(self.nodes[i].store_dir, ignore_errors=True)

    def close(self) -> None:
        """Stop every node (SIGKILL: the store is thrown away with the test)."""
        for i in range(len(self.nodes)):
            self.kill(i)

    # -- state -------------------------------------------------------------------------------

    def routes(self, i: int) -> int:
        """How many routes node ``i`` has up now (its monitoring ``/routez``)."""
        url = f"http://127.0.0.1:{self.nodes[i].monitor_port}/routez"
        with urllib.request.urlopen(url, timeout=2) as r:
            return int(json.load(r).get("num_routes", 0))

    def meta_leader(self) -> str | None:
        """The JetStream meta leader's server name as a running node sees it, else None."""
        for node in self.nodes:
            if not node.running:
                continue
            with contextlib.suppress(OSError, ValueError):
                url = f"http://127.0.0.1:{node.monitor_port}/jsz"
                with urllib.request.urlopen(url, timeout=2) as r:
                    leader = (json.load(r).get("meta_cluster") or {}).get("leader")
                if leader:
                    return str(leader)
        return None

    def js_info(self, i: int) -> dict[str, Any]:
        """``$JS.API.INFO`` on node ``i`` (an ``error`` member while there is no meta leader)."""
        return js_request(self.nodes[i].port, "$JS.API.INFO")

    def wait_ready(self, limit: float = 30.0) -> None:
        """Wait until every running node has a route to every other running node and answers
        ``$JS.API.INFO`` without error (so JetStream has a meta leader)."""
        deadline = time.monotonic() + limit
        live = [i for i, node in enumerate(self.nodes) if node.running]
        last = "nothing checked yet"
        while True:
            try:
                for i in live:
                    # A node may count a route twice for a moment (both ends dialed at once).
                    if (have := self.routes(i)) < len(live) - 1:
                        raise NatsRequestError(f"{self.nodes[i].name} has {have} routes")
                for i in live:
                    info = self.js_info(i)
                    if "error" in info:
                        raise NatsRequestError(f"{self.nodes[i].name}: {info['error']}")
                if self.meta_leader() is None:
                    raise NatsRequestError("no meta leader yet")
                return
            except (NatsRequestError, OSError, ValueError) as e:
                last = str(e)
            if time.monotonic() > deadline:
                raise AssertionError(f"the cluster did not become ready: {last}")
            time.sleep(0.1)

    def stream_info(self, name: str) -> dict[str, Any]:
        """``$JS.API.STREAM.INFO.<name>`` from the first running node that answers."""
        last: Exception | None = None
        for node in self.nodes:
            if not node.running:
                continue
            try:
                info = js_request(node.port, f"$JS.API.STREAM.INFO.{name}")
            except NatsRequestError as e:
                last = e
                continue
            if "error" not in info:
                return info
            last = NatsRequestError(str(info["error"]))
        raise NatsRequestError(f"no node gave info on stream {name}: {last}")

    def stream_leader(self, name: str) -> int | None:
        """The index of the node leading stream ``name``, or None while it has no leader."""
        with contextlib.suppress(NatsRequestError):
            leader = (self.stream_info(name).get("cluster") or {}).get("leader")
            if leader:
                return self.node_by_name(str(leader)).index
        return None

    def node_of(self, client: Any) -> int:
        """The index of the node a nats-py ``client`` is connected to now."""
        from pysens.fleet.connection import connected_server

        port = int(connected_server(client).rpartition(":")[2])
        return next(n.index for n in self.nodes if n.port == port)

    def wait_stream_current(self, name: str, limit: float = 60.0) -> int:
        """Wait until stream ``name`` has a leader and every other running node's replica of
        it is current (a restarted node has caught up); the leader's index. Killing the leader
        before that is a second failure, not one: the cluster is then a node short."""
        deadline = time.monotonic() + limit
        last = "no answer yet"
        while True:
            with contextlib.suppress(NatsRequestError):
                cluster = self.stream_info(name).get("cluster") or {}
                leader = cluster.get("leader")
                replicas = cluster.get("replicas") or []
                behind = [r.get("name") for r in replicas if not r.get("current")]
                running = sum(1 for node in self.nodes if node.running)
                if leader and not behind and len(replicas) >= running - 1:
                    return self.node_by_name(str(leader)).index
                last = f"leader {leader}, replicas behind: {behind}, {len(replicas)} replicas"
            if time.monotonic() > deadline:
                raise AssertionError(f"stream {name} not current within {limit:g} s: {last}")
            time.sleep(0.1)

    def wait_stream_leader(self, name: str, *, not_on: int | None = None,
                           limit: float = 30.0) -> int:
        """Wait until stream ``name`` has a leader (other than node ``not_on``); its index."""
        deadline = time.monotonic() + limit
        while True:
            leader = self.stream_leader(name)
            if leader is not None and leader != not_on and self.nodes[leader].running:
                return leader
            if time.monotonic() > deadline:
                raise AssertionError(f"stream {name} got no new leader within {limit:g} s")
            time.sleep(0.05)


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three routed JetStream servers, ready; every process killed after the test."""
    cluster = NatsCluster(tmp_path / "cluster", 3)
    try:
        cluster.start()
        cluster.wait_ready()
        yield cluster
    finally:
        cluster.close()
