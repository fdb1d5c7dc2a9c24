"""Probe: nats-py against pysens's lean NATS path, on one server and on a 3-node R3 cluster.

Publishing N small (~600-byte) event JSON messages with a ``Nats-Msg-Id`` header:

  (a)  nats-py ``js.publish_async`` (its default 4,000 in flight), then
       ``publish_async_completed()``
  (a2) nats-py ``js.publish`` coroutines gathered 1,000 at a time
  (a3) (a) with 16,000 in flight and an 8 MiB client buffer (nats-py's tuning knobs)
  (a4) nats-py's core ``nc.publish`` with a reply subject per event and one wildcard ack
       subscription (the forwarder's scheme, on nats-py's connection)
  (b)  pysens's lean path: natsproto ``HPUB`` frames built by the forwarder's ``_frames``, one
       write per 1,000, 4,000 in flight, one wildcard reply subscription (no journal)
  (b2) the real :class:`pysens.sinks.nats.Forwarder` draining a journal of the same events

Consuming them again from a durable pull consumer:

  (c)  nats-py ``pull_subscribe(...).fetch(1000, timeout=5)`` + ``await msg.ack()`` each
  (c2) the same plus the collector's ``check_message`` on every message (its per-message work)
  (c3) nats-py's core subscribe + hand-made ``MSG.NEXT`` requests + checks + ``+ACK`` each
       (the collector's scheme, on nats-py's connection)
  (d)  pysens's :class:`~pysens.collector.Collector` (lean ``MSG.NEXT`` loop, checks, one
       ``+ACK`` write per batch) into a store that keeps nothing (the protocol path alone)
  (d2) the same Collector into a real SQLite store

Each publish run gets a fresh stream; every consume run drains the last one with its own
durable. The machine is shared: run it on a quiet box and read ratios, not absolutes.

Failover (``--kills K``): a nats-py publisher (the cluster as a seed list, reconnecting, each
publish with its own 1 s deadline and re-sent with the same Msg-Id when it passes, 256 in
flight) publishes steadily to an R3 stream while its leader is killed K times (SIGKILL, and as
many SIGTERMs and leader step-downs for comparison); the longest gap between two acks around
each kill is reported.

    python bench/probe_nats_clients.py [--events 100000] [--setups single,r3] [--kills 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "bench")]

from bench_fleet import fleet_events  # noqa: E402
from fleet_fixtures import NatsServer  # noqa: E402
from nats_cluster import NatsCluster, js_request  # noqa: E402
from pysens.collector import Collector, check_message  # noqa: E402
from pysens.journal import Journal  # noqa: E402
from pysens.sinks.nats import Forwarder, _frames, host_token  # noqa: E402
from pysens.store import Store  # noqa: E402

STREAM = "SENS"
MAX_AGE = 30 * 24 * 3600.0  # the forwarder's default, so it leaves the stream as it is

Row = tuple[int, str, str, str, str]


async def _quiet(exc: Exception) -> None:
    """nats-py error callback: failed attempts are expected here."""


async def fresh_stream(url: str, replicas: int) -> None:
    """Delete and create the SENS stream (file storage, the forwarder's retention)."""
    import nats
    from nats.js.api import StorageType, StreamConfig
    from nats.js.errors import NotFoundError

    nc = await nats.connect(url, error_cb=_quiet)
    js = nc.jetstream()
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(STREAM)
    await js.add_stream(StreamConfig(name=STREAM, subjects=["sens.>"], storage=StorageType.FILE,
                                     num_replicas=replicas, max_age=MAX_AGE,
                                     duplicate_window=120.0))
    await nc.close()


# -- publishing ------------------------------------------------------------------------------


def _subject(row: Row) -> str:
    return f"sens.{host_token(row[2])}.{row[3]}"


async def pub_nats_py_async(url: str, rows: list[Row]) -> None:
    """(a) js.publish_async with its default in-flight limit."""
    import nats

    nc = await nats.connect(url, error_cb=_quiet)
    js = nc.jetstream()
    for row in rows:
        await js.publish_async(_subject(row), row[4].encode(), headers={"Nats-Msg-Id": row[1]})
    await js.publish_async_completed()
    await nc.close()


async def pub_nats_py_tuned(url: str, rows: list[Row]) -> None:
    """(a3) js.publish_async with 16,000 in flight and an 8 MiB client write buffer."""
    import nats

    nc = await nats.connect(url, error_cb=_quiet, pending_size=8 << 20)
    js = nc.jetstream(publish_async_max_pending=16_000)
    for row in rows:
        await js.publish_async(_subject(row), row[4].encode(), headers={"Nats-Msg-Id": row[1]})
    await js.publish_async_completed()
    await nc.close()


async def pub_nats_py_core(url: str, rows: list[Row], in_flight: int = 4000) -> None:
    """(a4) nats-py's core publish with a reply subject per event and one wildcard
    subscription for the PubAcks (no future per message): nats-py's connection handling
    with the forwarder's scheme."""
    import nats

    nc = await nats.connect(url, error_cb=_quiet, pending_size=8 << 20)
    inbox = nc.new_inbox()
    acked = 0
    bad: list[bytes] = []
    room = asyncio.Event()
    done = asyncio.Event()

    async def on_ack(msg: Any) -> None:
        nonlocal acked
        if not msg.data or b'"error"' in msg.data:
            bad.append(msg.data)
        acked += 1
        room.set()
        if acked == len(rows):
            done.set()

    await nc.subscribe(inbox + ".*", cb=on_ack)
    for sent, row in enumerate(rows):
        while sent - acked >= in_flight:
            room.clear()
            await room.wait()
        await nc.publish(_subject(row), row[4].encode(), reply=f"{inbox}.{row[0]}",
                         headers={"Nats-Msg-Id": row[1]})
    await asyncio.wait_for(done.wait(), 30)
    await nc.close()
    if bad:
        raise RuntimeError(f"{len(bad)} publishes refused: {bad[0][:200]!r}")


async def pub_nats_py_gather(url: str, rows: list[Row]) -> None:
    """(a2) js.publish coroutines, 1,000 gathered at a time."""
    import nats

    nc = await nats.connect(url, error_cb=_quiet)
    js = nc.jetstream()
    for i in range(0, len(rows), 1000):
        await asyncio.gather(*(js.publish(_subject(r), r[4].encode(), timeout=10,
                                          headers={"Nats-Msg-Id": r[1]})
                               for r in rows[i:i + 1000]))
    await nc.close()


async def pub_lean(url: str, rows: list[Row], in_flight: int = 4000, batch: int = 1000) -> None:
    """(b) the forwarder's wire path without its journal: HPUB frames, one write per batch."""
    from pysens.natsproto import NatsConnection

    conn = await NatsConnection.open(url)
    inbox = conn.new_inbox()
    acked = 0
    errors: list[bytes] = []
    progress = asyncio.Event()

    def on_ack(subject: bytes, reply: bytes, headers: bytes, data: bytes) -> None:
        nonlocal acked
        if not data or b'"error"' in data:
            errors.append(headers + data)
        acked += 1
        progress.set()

    conn.subscribe(inbox + ".*", on_ack)
    reply_prefix = (inbox + ".").encode()
    sent = 0
    while acked < len(rows):
        while sent < len(rows) and sent - acked < in_flight:
            chunk = rows[sent:sent + min(batch, in_flight - (sent - acked))]
            frames, _aside = _frames(chunk, reply_prefix, "sens", None)
            conn.write(frames)
            sent += len(chunk)
            await conn.drain()
        progress.clear()
        await asyncio.wait_for(progress.wait(), 10)
    await conn.close()
    if errors:
        raise RuntimeError(f"{len(errors)} publishes refused: {errors[0][:200]!r}")


async def pub_forwarder(url: str, journal: Journal, n: int) -> None:
    """(b2) the real Forwarder, draining the journal (its own cursor per run)."""
    fwd = Forwarder(journal, url, cursor=f"probe:{time.monotonic_ns()}")
    await fwd.run(drain=True)
    assert fwd.stats.acked >= n, fwd.stats
    await fwd.close()


# -- consuming -------------------------------------------------------------------------------


async def sub_nats_py(url: str, n: int, durable: str, check: bool = False) -> None:
    """(c) / (c2) nats-py durable pull consumer: fetch(1000) and ack each message."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    nc = await nats.connect(url, error_cb=_quiet)
    js = nc.jetstream()
    psub = await js.pull_subscribe("sens.>", durable=durable, stream=STREAM,
                                   config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT,
                                                         max_ack_pending=20_000))
    got = 0
    while got < n:
        msgs = await psub.fetch(1000, timeout=5)
        for m in msgs:
            if check:
                item = check_message(m.subject, m.data, (m.headers or {}).get("Nats-Msg-Id"))
                assert not isinstance(item, str), item
            await m.ack()
        got += len(msgs)
    await nc.close()


async def sub_nats_py_core(url: str, n: int, durable: str, batch: int = 1000) -> None:
    """(c3) nats-py's core subscribe on one inbox + hand-made MSG.NEXT requests (expiry 0.5 s,
    a batch is whatever came when the request ends) + one +ACK publish per message, with
    the collector's checks: nats-py's connection handling with the collector's scheme."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    nc = await nats.connect(url, error_cb=_quiet, pending_size=8 << 20)
    await nc.jetstream().add_consumer(STREAM, ConsumerConfig(
        durable_name=durable, ack_policy=AckPolicy.EXPLICIT, max_ack_pending=20_000))
    inbox = nc.new_inbox()
    got: list[Any] = []
    ended = asyncio.Event()
    state = {"n": 0}

    async def on_msg(msg: Any) -> None:
        if not msg.reply:  # a status (408/404/409) ends the request; 100 would not
            if msg.headers and msg.headers.get("Status") != "100":
                ended.set()
            return
        got.append(msg)
        state["n"] += 1
        if state["n"] >= batch:
            ended.set()

    await nc.subscribe(inbox, cb=on_msg)
    request = json.dumps({"batch": batch, "expires": 500_000_000}).encode()
    subject = f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{durable}"
    total = 0
    while total < n:
        ended.clear()
        state["n"] = 0
        await nc.publish(subject, request, reply=inbox)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ended.wait(), 0.8)  # past the expiry: the request is over
        msgs, got[:] = list(got), []
        for m in msgs:
            item = check_message(m.subject, m.data, (m.headers or {}).get("Nats-Msg-Id"))
            assert not isinstance(item, str), item
            await nc.publish(m.reply, b"+ACK")
        total += len(msgs)
    await nc.close()


class NullStore(Store):
    """A store that keeps nothing: the collector's protocol path measured alone."""

    def __init__(self) -> None:
        super().__init__("null:")

    def commit(self, events: Any, rejected: Any = ()) -> int:
        """Every event counts as new; nothing is written."""
        return len(events)


async def sub_collector(url: str, n: int, durable: str, store: Store) -> None:
    """(d) / (d2) pysens's Collector until it has received ``n`` messages."""
    col = Collector(url, store, durable=durable)
    task = asyncio.create_task(col.run())
    while col.stats.received < n:
        if task.done():
            raise RuntimeError(f"the collector ended early: {task.result()}")
        await asyncio.sleep(0.01)
    await col.close()
    await task
    col.release()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Timed:
    """Wall time and CPU (this process; the servers) of one case."""

    def __init__(self, server_pids: list[int]) -> None:
        self.pids = server_pids

    async def run(self, fn: Callable[[], Awaitable[None]]) -> tuple[float, float, float]:
        """(seconds, client CPU seconds, server CPU seconds) that ``fn()`` takes."""
        c0, s0 = time.process_time(), sum(cpu_seconds(p) for p in self.pids)
        t = time.perf_counter()
        await fn()
        wall = time.perf_counter() - t
        return (wall, time.process_time() - c0,
                sum(cpu_seconds(p) for p in self.pids) - s0)


Result = tuple[float, float, float]  # events/s, client CPU µs/event, server CPU µs/event


async def throughput(url: str, replicas: int, rows: list[Row], journal: Journal,
                     tmp: Path, server_pids: list[int]) -> dict[str, Result]:
    """events/s and CPU per event of every case on the server(s) at ``url``."""
    from pysens.store import open_store

    n = len(rows)
    out: dict[str, Result] = {}
    timer = Timed(server_pids)

    async def measure(fn: Callable[[], Awaitable[None]]) -> Result:
        wall, client, server = await timer.run(fn)
        return n / wall, client / n * 1e6, server / n * 1e6

    pubs: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("(a) nats-py publish_async", lambda: pub_nats_py_async(url, rows)),
        ("(a2) nats-py gathered js.publish", lambda: pub_nats_py_gather(url, rows)),
        ("(a3) nats-py publish_async, 16k in flight", lambda: pub_nats_py_tuned(url, rows)),
        ("(a4) nats-py core publish + wildcard acks", lambda: pub_nats_py_core(url, rows)),
        ("(b2) pysens Forwarder (journal -> lean HPUB)", lambda: pub_forwarder(url, journal, n)),
        ("(b) pysens lean HPUB batches", lambda: pub_lean(url, rows)),
    ]
    for name, fn in pubs:
        await fresh_stream(url, replicas)
        out[name] = await measure(fn)
        print(f"  {name}: {out[name][0]:,.0f}/s", flush=True)
    subs: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("(c) nats-py fetch(1000) + ack", lambda: sub_nats_py(url, n, "c")),
        ("(c2) nats-py fetch + check_message + ack", lambda: sub_nats_py(url, n, "c2", True)),
        ("(c3) nats-py core sub + MSG.NEXT + checks", lambda: sub_nats_py_core(url, n, "c3")),
        ("(d) pysens Collector, null store", lambda: sub_collector(url, n, "d", NullStore())),
        ("(d2) pysens Collector, SQLite store",
         lambda: sub_collector(url, n, "d2", open_store(f"sqlite:///{tmp}/s{time.time_ns()}.db"))),
    ]
    for name, fn in subs:
        out[name] = await measure(fn)
        print(f"  {name}: {out[name][0]:,.0f}/s", flush=True)
    return out


# -- failover --------------------------------------------------------------------------------


async def failover(cluster: NatsCluster, kills: int, modes: list[str]) -> list[tuple[str, float,
                                                                                     int]]:
    """(mode, longest gap between acks in s, re-sends) for each kill of the stream leader."""
    import nats

    await fresh_stream(cluster.urls[0], 3)
    leader = cluster.wait_stream_leader(STREAM)
    # The publisher sits on the leader's node: the kill takes its connection and the stream
    # leader at once (the worst case).
    order = [cluster.urls[leader]] + [u for i, u in enumerate(cluster.urls) if i != leader]
    nc = await nats.connect(order, dont_randomize=True, allow_reconnect=True,
                            max_reconnect_attempts=-1, reconnect_time_wait=0.1,
                            connect_timeout=1, ping_interval=1, max_outstanding_pings=2,
                            error_cb=_quiet)
    js = nc.jetstream()
    ack_times: list[float] = []
    resent = 0
    stop = asyncio.Event()
    counter = iter(range(10**9))
    body = b'{"id": "x", "method": "Logon", "host": "h", "pad": "' + b"p" * 500 + b'"}'

    async def one() -> None:
        nonlocal resent
        i = next(counter)
        while True:
            try:
                await js.publish(f"sens.h.Logon.{i % 7}", body, timeout=1.0,
                                 headers={"Nats-Msg-Id": f"f{i}"})
                ack_times.append(time.monotonic())
                return
            except Exception:  # timeout, no responders, reconnecting: send it again
                resent += 1
                await asyncio.sleep(0.05)

    async def worker() -> None:
        while not stop.is_set():
            await one()

    workers = [asyncio.create_task(worker()) for _ in range(256)]
    results: list[tuple[str, float, int]] = []
    loop = asyncio.get_running_loop()
    try:
        await asyncio.sleep(2)
        for mode in modes:
            for _ in range(kills):
                leader = await loop.run_in_executor(None, cluster.wait_stream_leader, STREAM)
                before = resent
                # Did the kill take the publisher's own connection too?
                own = nc.connected_url is not None and \
                    nc.connected_url.port == cluster.nodes[leader].port
                t_kill = time.monotonic()
                if mode == "SIGKILL":
                    cluster.kill(leader)
                elif mode == "SIGTERM":
                    await loop.run_in_executor(None, cluster.stop, leader)
                else:
                    other = (leader + 1) % 3
                    js_request(cluster.nodes[other].port,
                               f"$JS.API.STREAM.LEADER.STEPDOWN.{STREAM}")
                await loop.run_in_executor(None, functools.partial(
                    cluster.wait_stream_leader, STREAM,
                    not_on=None if mode == "stepdown" else leader))
                await asyncio.sleep(3)  # acks flow again on the new leader
                window = [t for t in ack_times if t >= t_kill - 1]
                gap = max((b - a for a, b in itertools.pairwise(window)),
                          default=float("nan"))
                label = f"{mode}{' (+conn)' if own and mode != 'stepdown' else ''}"
                results.append((label, gap, resent - before))
                print(f"  {label}: longest ack gap {gap:.2f} s, {resent - before} re-sends",
                      flush=True)
                if mode != "stepdown":
                    await loop.run_in_executor(None, cluster.restart, leader)
                    await loop.run_in_executor(None, cluster.wait_ready)
                await asyncio.sleep(2)
    finally:
        stop.set()
        await asyncio.wait(workers, timeout=10)
        for w in workers:
            w.cancel()
        await nc.close()
    return results


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--setups", default="single,r3")
    p.add_argument("--kills", type=int, default=5, help="leader kills per mode (0: none)")
    p.add_argument("--modes", default="SIGKILL,SIGTERM,stepdown")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="probe_nats_"))
    events = fleet_events(args.events, 1000)
    journal = Journal(tmp / "journal.db")
    journal.append_many(events)
    # The rows as the forwarder reads them: the journal's own bodies (no seq in them yet).
    with sqlite3.connect(tmp / "journal.db") as db:
        rows = db.execute("SELECT seq, id, host, method, body FROM events ORDER BY seq"
                          ).fetchall()
    size = sum(len(r[4]) for r in rows) / len(rows)
    print(f"{args.events:,} messages of {size:.0f} bytes on average, {os.cpu_count()} CPUs")
    table: dict[str, dict[str, Result]] = {}
    gaps: list[tuple[str, float, int]] = []
    server: NatsServer | None = None
    cluster: NatsCluster | None = None
    try:
        setups = args.setups.split(",")
        if "single" in setups:
            server = NatsServer(tmp / "single")
            server.start()
            print("single server:", flush=True)
            assert server.proc is not None
            table["single"] = asyncio.run(throughput(server.url, 1, rows, journal, tmp,
                                                     [server.proc.pid]))
            server.stop()
            server = None
        if "r3" in setups or args.kills:
            cluster = NatsCluster(tmp / "cluster", 3)
            cluster.start()
            cluster.wait_ready()
        if "r3" in setups and cluster is not None:
            print("R3 cluster (clients on node 0):", flush=True)
            pids = [node.proc.pid for node in cluster.nodes if node.proc is not None]
            table["R3"] = asyncio.run(throughput(cluster.urls[0], 3, rows, journal, tmp, pids))
            role = "leader" if cluster.stream_leader(STREAM) == 0 else "follower"
            print(f"  (node 0 was the stream's {role} in the last run)")
        if args.kills and cluster is not None:
            print("failover:", flush=True)
            gaps = asyncio.run(failover(cluster, args.kills, args.modes.split(",")))
    finally:
        journal.close()
        if server is not None:
            server.stop()
        if cluster is not None:
            cluster.close()
        shutil.rmtree(tmp, ignore_errors=True)
    if table:
        cols = list(table)
        print(f"\n{'':<46}" + "".join(f"{c + ': events/s, CPU µs/event client, server':>44}"
                                       for c in cols))
        for name in next(iter(table.values())):
            print(f"{name:<46}" + "".join(
                f"{table[c][name][0]:>20,.0f}{table[c][name][1]:>12.1f}{table[c][name][2]:>12.1f}"
                for c in cols))
    if gaps:
        print(f"\n{'failover (+conn: the publisher was on that node)':<50}"
              f"{'longest ack gap s':>18}{'re-sends':>10}")
        for mode, gap, n in gaps:
            print(f"{mode:<50}{gap:>18.2f}{n:>10}")


if __name__ == "__main__":
    main()
