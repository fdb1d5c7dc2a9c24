"""The fleet path on a real 3-node NATS JetStream cluster (an R3 stream), against bare nats-py.

The cluster is tests/nats_cluster.py's (three nats-server processes routed on free loopback
ports). Two parts, in one run:

Throughput (``--runs`` times): a simulated fleet (``--hosts`` host identities replaying a logon
storm, ``--events`` in all) is journaled, then pysens' ``Forwarder(journal, seed,
replicas=3)`` (this process) and ``sens collect SEED --store …`` (a child process) move it into
a SQLite or PostgreSQL store: events/s from the forwarder's start until the last event is
stored, and the lag from the stream's receive time to the store's commit (p50/p99). The peer a
user would otherwise write, in the same run: a bare nats-py ``js.publish_async`` loop of the
same pre-serialized events into an R3 stream of its own (publish only), then a bare nats-py
durable pull ``fetch(1000)`` + ``ack()`` loop draining it (consume only, no store). Each run
records the load average (the machine is shared) and the CPU µs per event of each process
(/proc/PID/stat): the forwarder (this process), the collector, the nats-servers summed; the
worst and median events/s are reported.

Failover (``--failover K`` kills of each kind): while a steady ~400 events/s is journaled and
forwarded, SIGKILL (a) the node the forwarder is connected to, (b) the stream leader (only once
every replica is current: one failure at a time). Per kill: the longest gap between
consecutive acks the forwarder saw, and the time from the kill until its acks resumed. The same
kills with a bare nats-py publisher (``js.publish`` with a 1 s ack timeout, each event retried
every 0.25 s on a timeout or no responders; nats-py's reconnect defaults otherwise). A gap over
15 s is flagged as a STALL, with the forwarder's DEBUG log lines of that spell (logger
``pysens.forward``; ``--debug-log FILE`` writes them all).

Every run and part has streams of its own names and subjects (``SENSRUN0`` on ``sensrun0.>``
…), deleted afterwards and never made again: see FAILOVER_NAMES for why.

    python bench/bench_fleet.py [--events 60000] [--hosts 1000] [--runs 5] [--failover 3]
        [--servers 3|1] [--store sqlite|postgresql] [--debug-log FILE]

``--servers 1`` is the single-server mode (an R1 stream, no failover part).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))
# The cluster helper the tests use (imported, not copied: one place knows how to run one).
sys.path.insert(0, str(ROOT / "tests"))

from _common import cpu_seconds  # noqa: E402
from fleet_fixtures import pg_schema, reap  # noqa: E402
from nats_cluster import ClusterNode, NatsCluster, NatsRequestError, js_request  # noqa: E402
from pysens.events import SensEvent  # noqa: E402
from pysens.fleet.connection import connected_server  # noqa: E402
from pysens.fleet.forwarder import Forwarder  # noqa: E402
from pysens.fleet.store import open_store  # noqa: E402
from pysens.fleet.stream import StreamSettings, ensure_stream  # noqa: E402
from pysens.journal import Journal  # noqa: E402

METHODS = ("Logon", "PostShell", "SessionDisconnect", "SessionReconnect", "Logoff")
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
#: An ack gap longer than this is a STALL (an election takes 4-9 s on this server version).
STALL = 15.0
#: The failover feed: this many events every FEED_EVERY seconds (~400/s, as the kill9 test).
FEED_N, FEED_EVERY = 20, 0.05
#: The failover part's streams (pysens, bare; subjects ``<name in lower case>.>``). Every
#: stream of a bench run has a name of its own: nats-server 2.9.10, given a stream deleted
#: and made again under the same name, restores the old one on a restarted node ("detected
#: duplicate assignment"), after which the stream's leader answers every publish 503 (no
#: responders) for minutes: a stall of the server's, not of the client's.
FAILOVER_NAMES = ("SENSFAILOVER", "PEERFAILOVER")
#: How long to wait for acks to resume after a kill before giving up on that kill.
RESUME_LIMIT = 180.0

# Children to kill however the bench ends (Ctrl-C, an exception, SIGTERM).
_children: list[subprocess.Popen[bytes]] = []


def fleet_events(n: int, hosts: int, start: int = 0, source: str = "bench") -> list[SensEvent]:
    """A logon storm per host: sessions going Logon, PostShell, Disconnect, Reconnect, Logoff
    (events ``start`` to ``start + n`` of it: every event's id differs)."""
    out = []
    for i in range(start, start + n):
        host = f"host{i % hosts:04d}.fleet.example.com"
        k = i // hosts
        session, step = divmod(k, len(METHODS))
        out.append(SensEvent(method=METHODS[step], user_name=f"user{session}",
                             session_id=str(session), host=host, source=source,
                             time=T0 + timedelta(milliseconds=k), remote=True,
                             client_address="10.1.2.3"))
    return out


def payloads_of(events: list[SensEvent]) -> list[tuple[str, bytes, str]]:
    """(subject tail, body, id) per event, serialized once before any clock starts."""
    return [(f"{e.host.split('.')[0]}.{e.method}", e.to_json_text().encode(), e.id)
            for e in events]


class SingleServer(NatsCluster):
    """One JetStream nats-server with no cluster (``--servers 1``): nats-server refuses a
    one-node cluster without routes, so the node is started without the cluster options."""

    def __init__(self, base: Path) -> None:
        super().__init__(base, 1)

    def _command(self, node: ClusterNode) -> list[str]:
        return [self.exe, "-js", "-sd", str(node.store_dir), "-n", node.name,
                "-a", "127.0.0.1", "-p", str(node.port), "-m", str(node.monitor_port)]

    def wait_ready(self, limit: float = 30.0) -> None:
        """Until JetStream answers (a lone server has no meta group to ask about)."""
        deadline = time.monotonic() + limit
        while True:
            with contextlib.suppress(NatsRequestError):
                if "error" not in self.js_info(0):
                    return
            if time.monotonic() > deadline:
                raise AssertionError("JetStream did not answer")
            time.sleep(0.1)


def servers_cpu(cluster: NatsCluster) -> float:
    """CPU seconds of every running nats-server of ``cluster``, summed."""
    return sum(cpu_seconds(n.proc.pid) for n in cluster.nodes if n.proc is not None
               and n.running)


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank)."""
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def delete_streams(url: list[str], *names: str) -> None:
    """Delete the streams (absent ones ignored): each run starts on empty ones, and the next
    run's stream takes the same subjects."""
    import nats
    import nats.errors

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for name in names:
            with contextlib.suppress(nats.errors.Error):
                await js.delete_stream(name)
    finally:
        await nc.close()


async def wait_placement(urls: list[str], replicas: int, limit: float = 60.0) -> None:
    """Until the cluster can place an R``replicas`` stream: for a few seconds after the meta
    leader is elected the servers say "no suitable peers for placement" (a probe stream is
    made and deleted)."""
    import nats
    import nats.errors
    from nats.js.api import StreamConfig

    nc = await nats.connect(urls)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + limit
        while True:
            try:
                await js.add_stream(StreamConfig(name="PROBE", subjects=["probe.>"],
                                                 num_replicas=replicas))
                await js.delete_stream("PROBE")
                return
            except nats.errors.Error:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.25)
    finally:
        await nc.close()


# -- throughput ----------------------------------------------------------------------------


@dataclass
class Run:
    """One throughput run's figures."""

    load: float
    pysens: float = 0.0
    lag_p50_ms: float = 0.0
    lag_p99_ms: float = 0.0
    bare_pub: float = 0.0
    bare_consume: float = 0.0
    #: CPU µs per event: forwarder, collector, servers (pysens); publisher, servers (bare
    #: publish); consumer, servers (bare consume)
    cpu: dict[str, float] = field(default_factory=dict)


async def bare_publish(urls: list[str], payloads: list[tuple[str, bytes, str]], replicas: int,
                       cluster: NatsCluster, name: str, run: Run) -> None:
    """Bare nats-py ``publish_async`` into an R3 stream of its own (``name``, subjects
    ``<name in lower case>.>``), every ack awaited."""
    import nats
    from nats.js.api import StreamConfig

    nc = await nats.connect(urls)
    js = nc.jetstream()
    prefix = name.lower()
    await js.add_stream(StreamConfig(name=name, subjects=[f"{prefix}.>"],
                                     num_replicas=replicas))
    cpu0 = (time.process_time(), servers_cpu(cluster))
    t = time.perf_counter()
    for subject, data, msg_id in payloads:
        await js.publish_async(f"{prefix}.{subject}", data, headers={"Nats-Msg-Id": msg_id})
    await js.publish_async_completed()
    elapsed = time.perf_counter() - t
    cpu1 = (time.process_time(), servers_cpu(cluster))
    n = len(payloads)
    # Every event is in the R3 stream (acked is stored: the figure is not an empty loop's).
    info = await js.stream_info(name)
    await nc.close()
    if info.state.messages != n or info.config.num_replicas != replicas:
        raise RuntimeError(f"{name} holds {info.state.messages} of {n} events, R"
                           f"{info.config.num_replicas}")
    run.bare_pub = n / elapsed
    run.cpu["bare publisher"] = (cpu1[0] - cpu0[0]) / n * 1e6
    run.cpu["bare publish servers"] = (cpu1[1] - cpu0[1]) / n * 1e6


async def bare_consume(urls: list[str], n: int, cluster: NatsCluster, name: str,
                       run: Run) -> None:
    """Bare nats-py durable pull consumer over stream ``name``: ``fetch(1000)`` + ``ack()``
    each."""
    import nats

    nc = await nats.connect(urls)
    js = nc.jetstream()
    psub = await js.pull_subscribe(f"{name.lower()}.>", durable="peer", stream=name)
    cpu0 = (time.process_time(), servers_cpu(cluster))
    t = time.perf_counter()
    got = 0
    while got < n:
        msgs = await psub.fetch(1000, timeout=5)
        for m in msgs:
            await m.ack()
        got += len(msgs)
    await nc.flush()  # the last acks are out
    elapsed = time.perf_counter() - t
    cpu1 = (time.process_time(), servers_cpu(cluster))
    await nc.close()
    run.bare_consume = n / elapsed
    run.cpu["bare consumer"] = (cpu1[0] - cpu0[0]) / n * 1e6
    run.cpu["bare consume servers"] = (cpu1[1] - cpu0[1]) / n * 1e6


def spawn_collector(seed: str, store_url: str, stream: str, log: Path) -> (
        subprocess.Popen[bytes]):
    """``sens collect SEED --store URL --stream NAME`` as a child process (its output to
    ``log``); the stream exists already, its subjects are ``<name in lower case>.>``."""
    env = dict(os.environ, PYTHONPATH=str(SRC), SENS_JOURNAL=str(log.with_suffix(".db")))
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pysens.cli", "collect", seed, "--store", store_url,
             "--stream", stream, "--subject", f"{stream.lower()}.>"],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    _children.append(proc)
    return proc


def stop_child(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a child, SIGKILL it if it lingers, and reap it."""
    reap(proc)
    with contextlib.suppress(ValueError):
        _children.remove(proc)


def wait_consumer(cluster: NatsCluster, stream: str, limit: float = 60.0) -> None:
    """Until the collector's durable consumer exists (so the clock starts with it ready, not
    with a Python interpreter starting up)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for node in cluster.nodes:
            if not node.running:
                continue
            with contextlib.suppress(NatsRequestError):
                info = js_request(node.port, f"$JS.API.CONSUMER.INFO.{stream}.sens-collector")
                if "error" not in info:
                    return
        time.sleep(0.1)
    raise AssertionError("the collector made no durable consumer")


async def pysens_pipeline(cluster: NatsCluster, journal: Journal, store_url: str, n: int,
                          replicas: int, stream: str, log: Path, run: Run) -> None:
    """Forwarder here, ``sens collect`` as a child; events/s until the last one is stored."""
    import nats

    # The stream as the forwarder would make it, made first: the collector (started first, to
    # have its consumer ready) would make it with the default subjects, not this run's.
    settings = StreamSettings(stream, stream.lower(), replicas=replicas)
    nc = await nats.connect(cluster.urls)
    try:
        await ensure_stream(nc.jetstream(), settings)
    finally:
        await nc.close()
    store = open_store(store_url)
    collector = spawn_collector(cluster.seed, store_url, stream, log)
    try:
        await asyncio.to_thread(wait_consumer, cluster, stream)
        fwd = Forwarder(journal, cluster.seed, replicas=replicas, stream=stream,
                        prefix=stream.lower(), cursor=f"bench:{stream}")
        cpu0 = (time.process_time(), cpu_seconds(collector.pid), servers_cpu(cluster))
        t = time.perf_counter()
        task = asyncio.create_task(fwd.run())
        while store.count() < n:
            if collector.poll() is not None:
                raise RuntimeError(f"the collector exited ({collector.returncode}); see {log}")
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - t
        cpu1 = (time.process_time(), cpu_seconds(collector.pid), servers_cpu(cluster))
        await fwd.aclose()
        await task
    finally:
        stop_child(collector)
    lags = [v / 1000 for v in store.lags_us()]
    store.close()
    run.pysens = n / elapsed
    run.lag_p50_ms, run.lag_p99_ms = pct(lags, 0.5), pct(lags, 0.99)
    # The forwarder's figure includes the bench's count polls (a cheap query every 50 ms).
    for name, a, b in zip(("forwarder", "collector", "servers"), cpu0, cpu1, strict=True):
        run.cpu[name] = (b - a) / n * 1e6


# -- failover ------------------------------------------------------------------------------


@dataclass
class Kill:
    """One SIGKILL and what the publisher saw around it."""

    who: str
    kind: str
    node: int
    gap: float = 0.0
    #: when the longest gap began, in seconds after the kill (negative: before it)
    gap_at: float = 0.0
    resume: float | None = None
    stall: bool = False
    #: a ``connected`` kill whose node led the stream too (so a leader kill as well)
    also_leader: bool = False
    #: acks flowed before the kill (False: a stall before it was still on)
    flowing: bool = True
    log_lines: list[str] = field(default_factory=list)


class DebugLog(logging.Handler):
    """Keeps every ``pysens.forward`` record (monotonic time, line) and writes it to a file."""

    def __init__(self, path: Path | None) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        self.lines: list[tuple[float, str]] = []
        self.file = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115 - kept open for the run, closed in close()

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record (and write it)."""
        line = self.format(record)
        self.lines.append((time.monotonic(), line))
        if self.file is not None:
            self.file.write(line + "\n")
            self.file.flush()

    def between(self, a: float, b: float) -> list[str]:
        """The lines logged from ``a`` to ``b`` (monotonic seconds)."""
        return [line for t, line in self.lines if a <= t <= b]

    def close(self) -> None:
        """Close the file."""
        if self.file is not None:
            self.file.close()
        super().close()


def analyse(times: list[float], t_kill: float, end: float) -> tuple[float, float, float | None]:
    """(the longest gap between consecutive acks from the last one before a kill until
    ``end``, when it started after the kill, and when the acks resumed after the kill's own
    outage: the longest gap starting within 1 s of the kill, 0 when that is under 0.2 s);
    ``times`` are the acks (monotonic). A resume of None: no ack came after the kill until
    ``end``."""
    before = [t for t in times if t <= t_kill]
    after = [t for t in times if t > t_kill]
    points = ([before[-1]] if before else [t_kill]) + after
    # (length, start, end: None while still waiting at ``end``)
    gaps: list[tuple[float, float, float | None]] = [
        (b - a, a, b) for a, b in itertools.pairwise(points)]
    gaps.append((end - points[-1], points[-1], None))
    gap, start, _ = max(gaps, key=lambda g: g[0])
    # The kill's own outage begins at once (the connection drops, the leader stops acking).
    own = max((g for g in gaps if g[1] <= t_kill + 1.0), key=lambda g: g[0])
    if own[2] is None:
        return gap, start - t_kill, None
    if own[0] < 0.2:  # no pause beyond the feed's own rhythm (an event batch every 50 ms)
        return gap, start - t_kill, 0.0
    return gap, start - t_kill, own[2] - t_kill


async def await_acks(count: Callable[[], int], more: int, limit: float) -> bool:
    """Until ``count()`` has grown by ``more`` (True), or ``limit`` seconds pass (False)."""
    target = count() + more
    deadline = time.monotonic() + limit
    while count() < target:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def kill_and_watch(cluster: NatsCluster, stream: str, kind: str, who: str,
                         node_of_client: Callable[[], int], times: list[float],
                         count: Callable[[], int], debug: DebugLog | None,
                         state: Callable[[], str]) -> Kill:
    """One kill of ``kind`` (``connected``: the client's node; ``leader``: the stream's leader
    once every replica is current), watched until the acks flow again, then the node brought
    back and caught up."""
    flowing = await await_acks(count, 400, 60)  # flowing before the kill
    if kind == "connected":
        node = node_of_client()
        also = await asyncio.to_thread(cluster.stream_leader, stream) == node
    else:
        also = False
        node = await asyncio.to_thread(cluster.wait_stream_current, stream, 120)
    t_kill = time.monotonic()
    await asyncio.to_thread(cluster.kill, node)

    async def while_stalled() -> list[str]:
        # Asked during the stall, not after it: is it the servers (a fresh client's publish
        # fails too) or the client?
        while True:
            await asyncio.sleep(0.5)
            last = max(times[-1] if times else t_kill, t_kill)
            if time.monotonic() - last > STALL:
                return [f"during the stall ({time.monotonic() - t_kill:.0f} s after the "
                        f"kill): client: {state()}",
                        *await asyncio.to_thread(server_side, cluster, stream)]

    probe = asyncio.create_task(while_stalled())
    # Resumed: 2 s worth of acks after the kill (in-flight acks alone do not make that).
    await await_acks(count, 800, RESUME_LIMIT)
    during = await probe if probe.done() else []
    probe.cancel()
    # The ack watcher samples every 5 ms: let it note the acks this wait has seen.
    await asyncio.sleep(0.05)
    end = time.monotonic()
    gap, gap_at, resume = analyse(times, t_kill, end)
    k = Kill(who, kind, node, gap, gap_at, resume, gap > STALL, also_leader=also,
             flowing=flowing)
    if k.stall:
        if debug is not None:
            k.log_lines = debug.between(t_kill - 1, end)
        k.log_lines += during
        k.log_lines += [f"after it: client: {state()}"]
    await asyncio.to_thread(cluster.restart, node)
    await asyncio.to_thread(cluster.wait_ready, 60)
    await asyncio.to_thread(cluster.wait_stream_current, stream, 120)
    return k


def server_side(cluster: NatsCluster, stream: str) -> list[str]:
    """What the servers say of ``stream`` during a stall: its cluster info, what a fresh
    client's publish to it gets on each running node (is it the servers or the client?), and
    the lines of each node's log that name it or warn (a killed route's redials left out)."""
    try:
        info = cluster.stream_info(stream)
        out = [f"stream {stream}: cluster {info.get('cluster')}, state {info.get('state')}"]
    except NatsRequestError as e:
        out = [f"stream {stream}: {e}"]
    prefix = stream.lower()
    for node in cluster.nodes:
        if node.running:
            try:
                answer = str(js_request(node.port, f"{prefix}.probe.Stall", b"{}", 3.0))
            except NatsRequestError as e:
                answer = str(e)
            out.append(f"a fresh publish via {node.name}: {answer}")
    for node in cluster.nodes:
        lines = [line for line in node.log.read_text(errors="replace").splitlines()
                 if (stream in line or "[ERR]" in line or "[WRN]" in line)
                 and "connect to route" not in line]
        out += [f"{node.name}: {line}" for line in lines[-12:]]
    return out


def client_state(nc: Any, task: asyncio.Task[None] | None = None) -> str:
    """A nats-py client's connection as the bench sees it (and its publishing task's end)."""
    if nc is None:
        return "no connection (between two sessions)"
    text = (f"connected={nc.is_connected} reconnecting={nc.is_reconnecting} "
            f"closed={nc.is_closed} server={connected_server(nc)} "
            f"reconnects={nc.stats.get('reconnects')}")
    if task is not None and task.done() and not task.cancelled() and task.exception():
        text += f"; the publisher died: {task.exception()!r}"
    return text


def say(k: Kill) -> None:
    """One line per kill as it happens."""
    resume = "never" if k.resume is None else f"{k.resume:.2f} s"
    what = "connected+leader" if k.also_leader else k.kind
    print(f"  {k.who:<6} {what:<16} kill of node {k.node}: longest ack gap {k.gap:.2f} s "
          f"(from {k.gap_at:+.2f} s), acks resumed {resume} after the kill"
          + (" STALL" if k.stall else "") + ("" if k.flowing else
                                             " (acks were not flowing before it)"), flush=True)


async def failover_pysens(cluster: NatsCluster, journal: Journal, hosts: int, kills: int,
                          debug: DebugLog) -> list[Kill]:
    """The kills while pysens forwards a steady ~400 events/s."""
    name = FAILOVER_NAMES[0]
    fwd = Forwarder(journal, cluster.seed, replicas=3, poll_interval=0.02, stream=name,
                    prefix=name.lower(), cursor="failover")
    times: list[float] = []
    sent = 0
    feeding = True

    async def feed() -> None:
        nonlocal sent
        loop = asyncio.get_running_loop()
        due = loop.time()
        while feeding:
            journal.append_many(fleet_events(FEED_N, hosts, start=sent, source="failover"))
            sent += FEED_N
            fwd.notify()
            due += FEED_EVERY
            await asyncio.sleep(max(0.0, due - loop.time()))

    async def watch() -> None:
        # Every increase of the forwarder's acked count, timestamped (5 ms resolution).
        last = 0
        while True:
            if fwd.stats.acked != last:
                last = fwd.stats.acked
                times.append(time.monotonic())
            await asyncio.sleep(0.005)

    task = asyncio.create_task(fwd.run())
    feeder, watcher = asyncio.create_task(feed()), asyncio.create_task(watch())
    out = []
    try:
        for kind in ("connected", "leader"):
            for _ in range(kills):
                out.append(await kill_and_watch(
                    cluster, name, kind, "pysens", lambda: cluster.node_of(fwd._nc),
                    times, lambda: fwd.stats.acked, debug,
                    lambda: client_state(fwd._nc) + f" stats={fwd.stats}"))
                say(out[-1])
    finally:
        feeding = False
        watcher.cancel()
        await asyncio.gather(feeder, watcher, return_exceptions=True)
        await fwd.aclose()
        await asyncio.gather(task, return_exceptions=True)
    return out


async def failover_bare(cluster: NatsCluster, hosts: int, kills: int) -> list[Kill]:
    """The same kills with a bare nats-py publisher: ``js.publish`` with a 1 s ack timeout, an
    event retried every 0.25 s until acked."""
    import nats
    import nats.errors
    from nats.js.api import StreamConfig

    async def quiet(_e: Exception) -> None:
        pass  # nats-py would print each lost connection; the kills are meant

    nc = await nats.connect(cluster.urls, max_reconnect_attempts=-1, error_cb=quiet)
    js = nc.jetstream()
    name = FAILOVER_NAMES[1]
    await js.add_stream(StreamConfig(name=name, subjects=[f"{name.lower()}.>"],
                                     num_replicas=3))
    times: list[float] = []
    acked = 0
    publishing = True
    errors: Counter[str] = Counter()  # what the retries met (told with a STALL)

    async def publish() -> None:
        nonlocal acked
        loop = asyncio.get_running_loop()
        due = loop.time()
        i = 0
        while publishing:
            for subject, data, msg_id in payloads_of(fleet_events(FEED_N, hosts, start=i,
                                                                  source="bare")):
                while publishing:
                    try:
                        await js.publish(f"{name.lower()}.{subject}", data, timeout=1.0,
                                         headers={"Nats-Msg-Id": msg_id})
                        break
                    except (nats.errors.Error, TimeoutError, OSError) as e:
                        errors[type(e).__name__] += 1
                        await asyncio.sleep(0.25)
                times.append(time.monotonic())
                acked += 1
            i += FEED_N
            due += FEED_EVERY
            await asyncio.sleep(max(0.0, due - loop.time()))

    publisher = asyncio.create_task(publish())
    out = []
    try:
        for kind in ("connected", "leader"):
            for _ in range(kills):
                out.append(await kill_and_watch(
                    cluster, name, kind, "bare", lambda: cluster.node_of(nc), times,
                    lambda: acked, None,
                    lambda: client_state(nc, publisher) + f"; retries met {dict(errors)}"))
                say(out[-1])
    finally:
        publishing = False
        await asyncio.gather(publisher, return_exceptions=True)
        await nc.close()
    return out


# -- the whole ----------------------------------------------------------------------------


def _sigterm(_sig: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # the same clean-up as Ctrl-C


def throughput(args: argparse.Namespace, cluster: NatsCluster, tmp: Path,
               replicas: int) -> list[Run]:
    """``--runs`` throughput runs: bare publish, bare consume, then pysens end to end."""
    events = fleet_events(args.events, args.hosts)
    journal = Journal(tmp / "journal.db")
    journal.append_many(events)
    payloads = payloads_of(events)
    runs = []
    try:
        for r in range(args.runs):
            run = Run(load=os.getloadavg()[0])
            # Names never used twice in the cluster's life (see FAILOVER_NAMES).
            sens, peer = f"SENSRUN{r}", f"PEERRUN{r}"
            asyncio.run(bare_publish(cluster.urls, payloads, replicas, cluster, peer, run))
            asyncio.run(bare_consume(cluster.urls, len(payloads), cluster, peer, run))
            with contextlib.ExitStack() as stack:
                if args.store == "postgresql":
                    store_url = stack.enter_context(pg_schema(args.pg, "bench_fleet"))
                else:
                    store_url = f"sqlite:///{tmp / f'fleet{r}.db'}"
                asyncio.run(pysens_pipeline(cluster, journal, store_url, args.events,
                                            replicas, sens, tmp / f"collect{r}.log", run))
            asyncio.run(delete_streams(cluster.urls, sens, peer))
            runs.append(run)
            c = run.cpu
            print(f"  run {r + 1}: load {run.load:.2f}, pysens {run.pysens:,.0f} ev/s, bare "
                  f"publish {run.bare_pub:,.0f}, bare consume {run.bare_consume:,.0f}; CPU "
                  f"µs/event fwd {c['forwarder']:.0f} / collector {c['collector']:.0f} / "
                  f"servers {c['servers']:.0f}", flush=True)
    finally:
        journal.close()
    return runs


def report_throughput(runs: list[Run]) -> None:
    """The runs as a table, with worst and median rows."""
    print("\n| run | load avg | pysens ev/s | lag p50/p99 ms | bare publish ev/s | "
          "bare consume ev/s | CPU µs/ev fwd/collector/servers | bare CPU µs/ev pub/servers, "
          "consume/servers |")
    print("|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(runs, 1):
        c = r.cpu
        print(f"| {i} | {r.load:.2f} | {r.pysens:,.0f} | {r.lag_p50_ms:.0f}/{r.lag_p99_ms:.0f}"
              f" | {r.bare_pub:,.0f} | {r.bare_consume:,.0f} | {c['forwarder']:.0f}/"
              f"{c['collector']:.0f}/{c['servers']:.0f} | {c['bare publisher']:.0f}/"
              f"{c['bare publish servers']:.0f}, {c['bare consumer']:.0f}/"
              f"{c['bare consume servers']:.0f} |")
    for name, pick in (("worst", min), ("median", statistics.median)):
        print(f"| {name} | | {pick(r.pysens for r in runs):,.0f} | | "
              f"{pick(r.bare_pub for r in runs):,.0f} | "
              f"{pick(r.bare_consume for r in runs):,.0f} | | |")


def report_failover(kills: list[Kill]) -> None:
    """The kills as a table, pysens beside bare, then any STALL's log lines."""
    print("\n(a gap's start in s after the kill in brackets)")
    print("| kind | # | pysens ack gap (s) | pysens resume after kill (s) | bare gap (s) | "
          "bare resume after kill (s) |")
    print("|---|---|---|---|---|---|")

    def res(k: Kill | None) -> str:
        if k is None:
            return "-"
        return "none" if k.resume is None else f"{k.resume:.2f}"

    def gap(k: Kill | None) -> str:
        if k is None:
            return "-"
        return (f"{k.gap:.2f} (at {k.gap_at:+.2f})" + (" STALL" if k.stall else "")
                + (" [node led the stream]" if k.also_leader else "")
                + ("" if k.flowing else " [no acks before the kill]"))

    for kind in ("connected", "leader"):
        mine = [k for k in kills if k.who == "pysens" and k.kind == kind]
        bare = [k for k in kills if k.who == "bare" and k.kind == kind]
        for i in range(max(len(mine), len(bare))):
            p = mine[i] if i < len(mine) else None
            b = bare[i] if i < len(bare) else None
            print(f"| {kind} | {i + 1} | {gap(p)} | {res(p)} | {gap(b)} | {res(b)} |")
    for k in kills:
        if k.stall:
            print(f"\nSTALL: {k.who} {k.kind} kill of node {k.node}: {k.gap:.1f} s without "
                  "acks; " + ("the forwarder's log of that spell, then " if k.who == "pysens"
                              else "") + "the client's state and the servers':")
            print("\n".join(k.log_lines) or "(no lines)")


def main() -> None:
    """Parse the options, run the cluster, the throughput runs and the kills; clean up."""
    p = argparse.ArgumentParser(
        description="The fleet path (journal -> Forwarder -> JetStream -> sens collect -> "
        "store) on a real nats-server cluster with an R3 stream, against bare nats-py: "
        "throughput runs and SIGKILL failovers (see the module docstring).")
    p.add_argument("--events", type=int, default=60_000,
                   help="events per throughput run (default: 60000)")
    p.add_argument("--hosts", type=int, default=1000,
                   help="simulated hosts the events come from (default: 1000)")
    p.add_argument("--runs", type=int, default=5,
                   help="throughput runs; the worst and the median are reported (default: 5)")
    p.add_argument("--failover", type=int, default=3, metavar="K",
                   help="SIGKILLs of each kind (connected node, stream leader), for pysens "
                   "and for bare nats-py; 0 skips the part (default: 3)")
    p.add_argument("--servers", type=int, choices=(1, 3), default=3,
                   help="3: a cluster and an R3 stream; 1: one server, R1, no failover "
                   "(default: 3)")
    p.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite",
                   help="the collector's store (default: sqlite, a file in the temp dir)")
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                   help="the PostgreSQL server for --store postgresql (a schema of its own, "
                   "dropped afterwards)")
    p.add_argument("--debug-log", type=Path, metavar="FILE",
                   help="append the forwarder's DEBUG log (logger pysens.forward) of the "
                   "failover part to FILE")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, _sigterm)
    replicas = 3 if args.servers == 3 else 1
    tmp = Path(tempfile.mkdtemp(prefix="bench_fleet_"))
    cluster = (NatsCluster(tmp / "cluster", 3, cluster_name="bench") if args.servers == 3
               else SingleServer(tmp / "cluster"))
    debug = DebugLog(args.debug_log)
    forward_log = logging.getLogger("pysens.forward")
    try:
        cluster.start()
        cluster.wait_ready(60)
        asyncio.run(wait_placement(cluster.urls, replicas))
        print(f"fleet: {args.events} events from {args.hosts} hosts, {args.servers} "
              f"nats-server(s), R{replicas}, store={args.store}, {os.cpu_count()} CPUs, "
              f"{args.runs} run(s)", flush=True)
        runs = throughput(args, cluster, tmp, replicas) if args.runs > 0 else []
        if runs:
            report_throughput(runs)
        if args.failover > 0 and args.servers == 3:
            print(f"\nfailover: {args.failover} SIGKILL(s) of each kind at ~400 events/s",
                  flush=True)
            forward_log.setLevel(logging.DEBUG)
            forward_log.addHandler(debug)
            journal = Journal(tmp / "failover.db")
            try:
                kills = asyncio.run(failover_pysens(cluster, journal, args.hosts,
                                                    args.failover, debug))
            finally:
                journal.close()
                forward_log.removeHandler(debug)
            asyncio.run(delete_streams(cluster.urls, FAILOVER_NAMES[0]))
            kills += asyncio.run(failover_bare(cluster, args.hosts, args.failover))
            report_failover(kills)
    finally:
        for proc in list(_children):
            stop_child(proc)
        cluster.close()
        debug.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
