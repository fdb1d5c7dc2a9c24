"""Live utmp source: latency from a utmp write to the subscriber callback, idle CPU and RSS.

Peer, in the same run: ``psutil.users()`` polled once a second (what a user would otherwise
write). As root the whole run happens in a private mount namespace with a tmpfs on /run, so
psutil reads the very /run/utmp the writes go to and its detection times are real; without root
psutil sees the host's utmp instead and its figure is the end of the first poll after each write.

    python bench/bench_live_utmp.py [--writes 300] [--spaced 24] [--idle 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psutil

from pysens.events import SensEvent
from pysens.live import tracked_events
from pysens.sources.utmp import UtmpSource
from pysens.sources.utmprecord import RECORD_SIZE, encode_record
from pysens.tracker import Tracker

INSIDE = "--inside-namespace"


def reexec_in_namespace() -> None:
    """Run this script again in a private mount namespace with an empty /run/utmp."""
    script = ("mount -t tmpfs tmpfs /run && install -m 664 /dev/null /run/utmp && "
              'exec "$0" "$@"')
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", script,
            sys.executable, *sys.argv, INSIDE]
    sys.exit(subprocess.call(argv))


class Poller(threading.Thread):
    """``psutil.users()`` once a second; when each (terminal, pid) was first seen."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.seen: dict[tuple[str, int], int] = {}
        self.polls: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        prev: set[tuple[str, int]] = set()
        tick = time.monotonic()
        while not self.stop.is_set():
            cur = {(u.terminal or "", int(u.pid or 0)) for u in psutil.users()}
            now = time.perf_counter_ns()
            self.polls.append(now)
            for key in cur - prev:
                self.seen.setdefault(key, now)
            prev = cur
            tick += 1.0
            self.stop.wait(max(0.0, tick - time.monotonic()))

    def cpu(self) -> float:
        assert self.ident is not None
        return time.clock_gettime(time.pthread_getcpuclockid(self.ident))


def subscriber() -> tuple[Callable[[SensEvent], object], str]:
    """``deliver(event)`` through the EventSystem when it is installed, else a plain call."""
    try:
        from pysens.eventsystem import EventSystem
    except ImportError:
        return on_event, "plain callback"
    es = EventSystem()
    es.subscribe(on_event, event_class="ISensLogon2")
    return es.fire, "EventSystem.fire"


WAITERS: dict[tuple[str, str | None], asyncio.Future[int]] = {}


def on_event(event: SensEvent) -> None:
    fut = WAITERS.pop((str(event.method), event.session_id), None)
    if fut is not None and not fut.done():
        fut.set_result(time.perf_counter_ns())


async def write_and_wait(fd: int, slot: int, data: bytes, method: str, line: str,
                         timeout: float = 5.0) -> tuple[int, int]:  # noqa: ASYNC109 - a test's hang guard
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    WAITERS[(method, line)] = fut
    t0 = time.perf_counter_ns()
    os.pwrite(fd, data, slot * RECORD_SIZE)
    return t0, await asyncio.wait_for(fut, timeout)


def login(slot: int, pid: int) -> bytes:
    return encode_record(type=7, pid=pid, line=f"pts/{slot}", id=f"b{slot}", user="bench",
                         host="10.1.2.3", address="10.1.2.3", time=datetime.now(UTC))


def logout(slot: int, pid: int) -> bytes:
    return encode_record(type=8, pid=pid, line=f"pts/{slot}", id=f"b{slot}",
                         time=datetime.now(UTC))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def bench(args: argparse.Namespace, path: Path, real_peer: bool) -> None:
    deliver, how = subscriber()
    rss0 = psutil.Process().memory_info().rss
    source = UtmpSource(str(path), proc=None)
    tracker = Tracker(host="bench")

    async def consume() -> None:
        async for event in tracked_events(source, tracker):
            deliver(event)

    task = asyncio.create_task(consume())
    while source.mechanism is None:  # noqa: ASYNC110 - polls another process's file or database: nothing to await
        await asyncio.sleep(0.01)
    poller = Poller()
    poller.start()
    fd = os.open(path, os.O_WRONLY)
    rng = random.Random(7)

    # 1. Writes at random instants, seen by both (logins on new slots, so none is missed).
    ours_a, peer_a = [], []
    for i in range(args.spaced):
        await asyncio.sleep(rng.uniform(0.2, 0.8))
        slot, pid = 100 + i, 10_000 + i
        t0, t1 = await write_and_wait(fd, slot, login(slot, pid), "Logon", f"pts/{slot}")
        ours_a.append((t1 - t0) / 1e6)
        peer_a.append((t0, f"pts/{slot}", pid))
    await asyncio.sleep(1.1)  # the poll after the last write
    peer_ms = []
    for t0, line, pid in peer_a:
        t_seen = poller.seen.get((line, pid)) if real_peer else next(
            (p for p in poller.polls if p > t0), None)
        if t_seen is not None:
            peer_ms.append((t_seen - t0) / 1e6)

    # 2. Back-to-back logins and logouts, as fast as the source delivers them.
    ours_b = []
    seen_before = len(poller.seen)
    for i in range(args.writes // 2):
        slot, pid = i % 10, 20_000 + i
        line = f"pts/{slot}"
        t0, t1 = await write_and_wait(fd, slot, login(slot, pid), "Logon", line)
        ours_b.append((t1 - t0) / 1e6)
        t0, t1 = await write_and_wait(fd, slot, logout(slot, pid), "Logoff", line)
        ours_b.append((t1 - t0) / 1e6)
    await asyncio.sleep(1.1)
    peer_caught = len(poller.seen) - seen_before
    os.close(fd)

    # 3. Idle: this process's loop thread and the poller thread over the same seconds, and a
    #    separate `sens watch --utmp` process.
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    watch = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once; the child is waited for elsewhere
        [sys.executable, "-c", "import sys; from pysens.cli import main; "
         "sys.exit(main(sys.argv[1:]))", "-v", "watch", "--utmp", str(path), "--json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert watch.stderr is not None
    await asyncio.to_thread(watch.stderr.readline)  # "watching … (inotify)"
    proc = psutil.Process(watch.pid)
    cpu_w0, cpu_l0, cpu_p0 = sum(proc.cpu_times()[:2]), time.thread_time(), poller.cpu()
    await asyncio.sleep(args.idle)
    cpu_w = sum(proc.cpu_times()[:2]) - cpu_w0
    cpu_l, cpu_p = time.thread_time() - cpu_l0, poller.cpu() - cpu_p0
    rss_watch = proc.memory_info().rss
    watch.terminate()
    watch.wait()
    watch.stderr.close()
    rss = psutil.Process().memory_info().rss
    poller.stop.set()
    poller.join()
    await source.aclose()
    await task

    peer_note = "psutil reads the same /run/utmp" if real_peer else (
        "no namespace: psutil figure = end of the first poll after each write")
    print(f"live utmp source via {how}; {source.mechanism}; {peer_note}")
    rows = [
        (f"spaced writes ({args.spaced}): write -> callback, p50 ms",
         statistics.median(ours_a), statistics.median(peer_ms)),
        (f"spaced writes ({args.spaced}): write -> callback, p99 ms",
         pct(ours_a, 99), pct(peer_ms, 99)),
        (f"back-to-back writes ({len(ours_b)}): p50 ms", statistics.median(ours_b), None),
        (f"back-to-back writes ({len(ours_b)}): p99 ms", pct(ours_b, 99), None),
        (f"back-to-back writes ({len(ours_b)}): mean ms", statistics.fmean(ours_b), None),
    ]
    print(f"{'figure':58} {'pysens':>10} {'psutil 1 s':>11} {'ratio':>8}")
    for name, ours, peer in rows:
        ratio = f"{peer / ours:.0f}x" if peer else "-"
        peer_s = f"{peer:.2f}" if peer is not None else "-"
        print(f"{name:58} {ours:10.3f} {peer_s:>11} {ratio:>8}")
    print(f"{'back-to-back logins the 1 s poll caught':58} {len(ours_b) // 2:10d} "
          f"{peer_caught if real_peer else '-':>11}")
    print(f"{f'idle CPU s over {args.idle:g} s, sens watch --utmp process':58} {cpu_w:10.3f}")
    print(f"{f'idle CPU s over {args.idle:g} s, in-process (loop thread / poller)':58} "
          f"{cpu_l:10.3f} {cpu_p:11.3f}")
    print(f"{'RSS MB, sens watch --utmp process':58} {rss_watch / 2**20:10.1f}")
    print(f"{'RSS MB, this process (psutil loaded) start -> end':58} "
          f"{rss0 / 2**20:5.1f}->{rss / 2**20:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--spaced", type=int, default=24)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument(INSIDE, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    can_ns = os.geteuid() == 0 and shutil.which("unshare") is not None
    if can_ns and not args.inside_namespace:
        reexec_in_namespace()
    if args.inside_namespace:
        asyncio.run(bench(args, Path("/run/utmp"), real_peer=True))
        return
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "utmp"
        path.touch()
        asyncio.run(bench(args, path, real_peer=False))


if __name__ == "__main__":
    main()
