"""The fleet path end to end: journal -> Forwarder -> JetStream -> collector -> central store.

A simulated fleet (1,000 host identities, each replaying a logon storm) is journaled, then the
forwarder (this process) and ``sens collect`` (a child process: the two share the 2 cores with
nats-server, as they would on one box) move it into a SQLite or PostgreSQL store. Measured:
events/s from the forwarder's start until the last event is stored, and the lag from the
stream's receive time to the store's commit (p50/p99). The peers, in the same run, are a plain
nats-py ``publish_async`` loop into a stream of its own (what a publish alone costs) and a plain
nats-py ``fetch(1000)`` + ``ack()`` loop draining it (what consuming alone costs, no store).

    python bench/bench_fleet.py [--events 60000] [--hosts 1000] [--store sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from pysens.events import SensEvent  # noqa: E402
from pysens.fleet.forwarder import Forwarder  # noqa: E402
from pysens.fleet.store import open_store  # noqa: E402
from pysens.journal import Journal  # noqa: E402

METHODS = ("Logon", "PostShell", "SessionDisconnect", "SessionReconnect", "Logoff")
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def fleet_events(n: int, hosts: int) -> list[SensEvent]:
    """A logon storm per host: sessions going Logon, PostShell, Disconnect, Reconnect, Logoff."""
    out = []
    for i in range(n):
        host = f"host{i % hosts:04d}.fleet.example.com"
        k = i // hosts
        session, step = divmod(k, len(METHODS))
        out.append(SensEvent(method=METHODS[step], user_name=f"user{session}",
                             session_id=str(session), host=host, source="bench",
                             time=T0 + timedelta(milliseconds=k), remote=True,
                             client_address="10.1.2.3"))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def peer(url: str, payloads: list[tuple[str, bytes, str]]) -> float:
    """Plain nats-py publish_async into a stream of its own; events/s."""
    import nats
    from nats.js.api import StreamConfig

    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="PEER", subjects=["peer.>"]))
    t = time.perf_counter()
    for subject, data, msg_id in payloads:
        await js.publish_async("peer." + subject, data, headers={"Nats-Msg-Id": msg_id})
    await js.publish_async_completed()
    elapsed = time.perf_counter() - t
    await nc.close()
    return len(payloads) / elapsed


async def peer_consume(url: str, n: int) -> float:
    """Plain nats-py durable pull consumer over the PEER stream: fetch(1000) + ack each; /s."""
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    psub = await js.pull_subscribe("peer.>", durable="peer", stream="PEER")
    t = time.perf_counter()
    got = 0
    while got < n:
        msgs = await psub.fetch(1000, timeout=5)
        for m in msgs:
            await m.ack()
        got += len(msgs)
    elapsed = time.perf_counter() - t
    await nc.close()
    return n / elapsed


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def pipeline(url: str, journal: Journal, store_url: str, n: int, tmp: Path,
                   server_pid: int) -> tuple[float, list[int], dict[str, float]]:
    """Forwarder here, collector as a child; (events/s end to end, lags in µs, CPU µs per
    event of each process)."""
    env = dict(os.environ, PYTHONPATH=str(SRC), SENS_JOURNAL=str(tmp / "unused.db"))
    store = open_store(store_url)
    collector = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once; the child is waited for elsewhere
        [sys.executable, "-m", "pysens.cli", "collect", url, "--store", store_url],
        env=env, stderr=subprocess.DEVNULL,
    )
    await asyncio.sleep(1.0)  # let it create its durable consumer before the clock starts
    fwd = Forwarder(journal, url)
    cpu0 = (time.process_time(), cpu_seconds(collector.pid), cpu_seconds(server_pid))
    t = time.perf_counter()
    task = asyncio.create_task(fwd.run())
    while store.count() < n:  # noqa: ASYNC110 - polls another process's file or database: nothing to await
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - t
    cpu1 = (time.process_time(), cpu_seconds(collector.pid), cpu_seconds(server_pid))
    await fwd.aclose()
    await task
    collector.terminate()
    collector.wait()
    lags = store.lags_us()
    store.close()
    names = ("forwarder (+ the bench's count polls)", "collector", "nats-server")
    cpu = {k: (b - a) / n * 1e6 for k, a, b in zip(names, cpu0, cpu1, strict=True)}
    return n / elapsed, lags, cpu


def pct(values: list[int], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] / 1000


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=60_000)
    p.add_argument("--hosts", type=int, default=1000)
    p.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_fleet_"))
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    server = subprocess.Popen(
        ["nats-server", "-js", "-sd", str(tmp / "js"), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    schema = None
    try:
        time.sleep(1.0)
        events = fleet_events(args.events, args.hosts)
        journal = Journal(tmp / "journal.db")
        journal.append_many(events)
        payloads = [(f"{e.host.split('.')[0]}.{e.method}", e.to_json_text().encode(), e.id)
                    for e in events]
        peer_rate = asyncio.run(peer(url, payloads))
        peer_consume_rate = asyncio.run(peer_consume(url, len(payloads)))
        if args.store == "postgresql":
            import psycopg

            schema = f"bench_fleet_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(args.pg, autocommit=True) as db:
                db.execute(f'CREATE SCHEMA "{schema}"')
            store_url = f"{args.pg}?options=-csearch_path%3D{schema}"
        else:
            store_url = f"sqlite:///{tmp / 'fleet.db'}"
        rate, lags, cpu = asyncio.run(pipeline(url, journal, store_url, args.events, tmp,
                                               server.pid))
        journal.close()
        print(f"fleet: {args.events} events from {args.hosts} hosts, store={args.store}, "
              f"{os.cpu_count()} CPUs")
        print(f"{'path':<52}{'events/s':>10}{'lag p50 ms':>12}{'lag p99 ms':>12}")
        print(f"{'pysens forwarder -> JetStream -> collector -> store':<52}{rate:>10,.0f}"
              f"{pct(lags, 0.5):>12.1f}{pct(lags, 0.99):>12.1f}")
        print(f"{'peer: nats-py publish_async loop (publish only)':<52}{peer_rate:>10,.0f}"
              f"{'-':>12}{'-':>12}")
        print(f"{'peer: nats-py fetch(1000) + ack loop (consume only)':<52}"
              f"{peer_consume_rate:>10,.0f}{'-':>12}{'-':>12}")
        print(f"ratio end-to-end / peer publish: {rate / peer_rate:.2f}, "
              f"/ peer consume: {rate / peer_consume_rate:.2f}  "
              f"(median lag {statistics.median(lags) / 1000:.1f} ms)")
        print("CPU per event end to end (µs): " + ", ".join(
            f"{k} {v:.1f}" for k, v in cpu.items()) + f"; total {sum(cpu.values()):.1f}")
    finally:
        server.terminate()
        server.wait()
        if schema is not None:
            import psycopg

            with psycopg.connect(args.pg, autocommit=True) as db:
                db.execute(f'DROP SCHEMA "{schema}" CASCADE')
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
