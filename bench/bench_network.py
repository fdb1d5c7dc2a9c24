"""Network source latency and idle cost, beside what a user would write otherwise (root).

* Latency from a link going down to a subscriber callback: a veth in a private network
  namespace is taken down from Python through a second netlink socket (RTM_NEWLINK without
  IFF_UP; the clock is read just before that ``send``), and the ConnectionLost travels
  NetworkSource -> Tracker -> EventSystem.afire -> the callback. p50 / p99 / mean over 100+
  changes; each down lasts a random 0-1 s, then the link comes back up (and its
  ConnectionMade is awaited) before the next one.
* In the same run, the peer: ``psutil.net_if_stats()`` polled once a second in a thread. It
  sees a change at the first poll that ends while the link is down (its latency: that poll's
  end minus the change time); a down spell between two polls it misses entirely (counted).
* The source idle: CPU seconds of a process running only NetworkSource over 10 s with no
  change, and its RSS.

Run: ``python bench/bench_network.py [--changes 120] [--idle 10]`` as root (it creates and
deletes namespaces ``pysens-bench-*``; everything runs inside one of them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from _common import idle_cost  # bench/ is sys.path[0] when run as a script

ROOT = Path(__file__).resolve().parents[1]
IFF_UP = 0x1
IDLE_CHILD = """
import asyncio, sys
from pysens.sources.network import NetworkSource
async def main():
    s = NetworkSource(networkmanager=False)
    async def run():
        async for _ in s.watch():
            pass
    t = asyncio.create_task(run())
    await s.ready.wait()
    print("ready", flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def set_link(sock: socket.socket, index: int, up: bool, seq: int) -> float:
    """Send RTM_NEWLINK changing IFF_UP; the time just before the send."""
    body = struct.pack("=BxHiII", 0, 0, index, IFF_UP if up else 0, IFF_UP)
    msg = struct.pack("=IHHII", 16 + len(body), 16, 0x1, seq, 0) + body  # RTM_NEWLINK, REQUEST
    t0 = time.perf_counter()
    sock.send(msg)
    return t0


class Poller(threading.Thread):
    """psutil.net_if_stats() once a second; remembers when each poll ended and what it saw."""

    def __init__(self, link: str) -> None:
        super().__init__(daemon=True)
        self.link = link
        self.polls: list[tuple[float, bool | None]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.stop.is_set():
            stats = psutil.net_if_stats().get(self.link)
            self.polls.append((time.perf_counter(), stats.isup if stats else None))
            self.stop.wait(1.0)

    def latency(self, down_at: float, up_at: float) -> float | None:
        for t, isup in self.polls:
            if down_at <= t < up_at and isup is False:
                return t - down_at
        return None


async def latency(changes: int, link: str) -> tuple[list[float], list[float], int]:
    from pysens.events import SensEvent
    from pysens.eventsystem import EventSystem
    from pysens.sources.network import NetworkSource
    from pysens.tracker import Tracker

    source = NetworkSource(networkmanager=False)
    tracker = Tracker(host="bench")
    got: asyncio.Queue[tuple[str, float]] = asyncio.Queue()

    def on_event(event: SensEvent) -> None:
        got.put_nowait((str(event.method), time.perf_counter()))

    es = EventSystem()
    es.subscribe(on_event, event_class="ISensNetwork")

    async def pump() -> None:
        async for obs in source.watch():
            for event in tracker.feed(obs):
                await es.afire(event)

    task = asyncio.create_task(pump())
    await source.ready.wait()
    index = socket.if_nametoindex(link)
    ctl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    ctl.bind((0, 0))
    poller = Poller(link)
    poller.start()
    rng = random.Random(7)
    ours: list[float] = []
    spells: list[tuple[float, float]] = []
    for i in range(changes):
        t0 = set_link(ctl, index, False, 2 * i + 1)
        method, t1 = await asyncio.wait_for(got.get(), 10)
        assert method == "ConnectionLost", method
        ours.append(t1 - t0)
        await asyncio.sleep(rng.uniform(0, 1.0))
        spells.append((t0, set_link(ctl, index, True, 2 * i + 2)))
        method, _ = await asyncio.wait_for(got.get(), 10)
        assert method.startswith("ConnectionMade"), method
        await asyncio.sleep(rng.uniform(0, 0.1))
    poller.stop.set()
    poller.join()
    seen = [poller.latency(a, b) for a, b in spells]
    theirs = [x for x in seen if x is not None]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await source.aclose()
    ctl.close()
    return ours, theirs, len(seen) - len(theirs)


def idle_of(seconds: float) -> tuple[float, float]:
    """A process running only NetworkSource, idle (its first line: ready)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return idle_cost([sys.executable, "-c", IDLE_CHILD], env, seconds)


def inside(args: argparse.Namespace) -> None:
    ours, theirs, missed = asyncio.run(latency(args.changes, "va"))
    cpu, rss = idle_of(args.idle)
    print(json.dumps({"ours": ours, "theirs": theirs, "missed": missed, "cpu": cpu,
                      "rss": rss}))


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def outside(args: argparse.Namespace) -> None:
    tag = uuid.uuid4().hex[:6]
    a, b = f"pysens-bench-{tag}-a", f"pysens-bench-{tag}-b"
    try:
        run("ip", "netns", "add", a)
        run("ip", "netns", "add", b)
        # A throwaway pair first, so va's ifindex differs from its peer's: the kernel then
        # treats carrier changes as urgent instead of batching them up to a second.
        run("ip", "-n", a, "link", "add", "spare0", "type", "veth", "peer", "name", "spare1")
        run("ip", "-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b)
        run("ip", "-n", a, "addr", "add", "10.9.0.1/24", "dev", "va")
        run("ip", "-n", b, "link", "set", "vb", "up")
        run("ip", "-n", a, "link", "set", "va", "up")
        time.sleep(1.0)  # the carrier settles before the source starts
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        out = subprocess.run(
            ["ip", "netns", "exec", a, sys.executable, __file__, "--inside",
             "--changes", str(args.changes), "--idle", str(args.idle)],
            check=True, capture_output=True, text=True, env=env).stdout
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
    r = json.loads(out.strip().splitlines()[-1])
    ours, theirs = r["ours"], r["theirs"]
    ms = 1000.0
    print(f"link down -> subscriber latency, {len(ours)} changes (veth in a namespace)")
    print(f"{'':44} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9}")
    print(f"{'NetworkSource -> Tracker -> EventSystem.afire':44} {pct(ours, 50) * ms:9.3f} "
          f"{pct(ours, 99) * ms:9.3f} {statistics.mean(ours) * ms:9.3f}")
    if theirs:
        print(f"{'psutil.net_if_stats() polled every 1 s':44} {pct(theirs, 50) * ms:9.1f} "
              f"{pct(theirs, 99) * ms:9.1f} {statistics.mean(theirs) * ms:9.1f}")
        ratio = statistics.mean(theirs) / statistics.mean(ours)
        print(f"ratio (poller mean / source mean): {ratio:.0f}x; the poller missed "
              f"{r['missed']} of {len(ours)} down spells entirely")
    print(f"NetworkSource idle: {r['cpu']:.3f} CPU s over {args.idle:g} s, RSS {r['rss']:.1f} MB")
    print("goals: p50 <= 2 ms, p99 <= 10 ms, 0 idle CPU, RSS < 40 MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--changes", type=int, default=120)
    ap.add_argument("--idle", type=float, default=10.0, help="idle seconds measured")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inside:
        inside(args)
    elif os.geteuid() != 0:
        sys.exit("bench_network needs root (it creates network namespaces)")
    else:
        outside(args)


if __name__ == "__main__":
    main()
