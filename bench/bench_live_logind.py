"""Live logind latency and idle cost, beside what a user would write otherwise.

* Latency from a change at the source (the logind mock emitting PropertiesChanged LockedHint on a
  private bus) to a subscriber callback (LogindSource -> Tracker -> EventSystem when present,
  else a plain callback): p50 / p99 / mean over a few hundred events spread over ~10 s.
* In the same run, the peer: ``psutil.users()`` polled once a second in a thread. A change is
  visible to it at the end of its first poll after the change, so for each of the same change
  times its latency is that poll's end minus the change time (expected mean ~500 ms).
* ``sens watch --source logind`` idle: CPU seconds over 10 idle seconds and RSS.

Run: ``python bench/bench_live_logind.py [--events 300] [--idle 10]`` (needs dbus-daemon and
python3-dbusmock, like the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import psutil

from _common import idle_cost  # bench/ is sys.path[0] when run as a script
from dbus_fixtures import LogindWorld, session_props
from pysens.events import SensEvent
from pysens.live import tracked_events
from pysens.sources.logind import LogindSource
from pysens.tracker import Tracker


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


class Poller(threading.Thread):
    """psutil.users() once a second; remembers when each poll finished."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.done_at: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            psutil.users()
            self.done_at.append(time.perf_counter())
            self.stop.wait(1.0)

    def latency(self, changed_at: float) -> float | None:
        for t in self.done_at:
            if t >= changed_at:
                return t - changed_at
        return None


def make_subscriber(on_event: Any) -> tuple[str, Any]:
    try:
        from pysens.eventsystem import EventSystem  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return "plain callback", on_event
    es = EventSystem()
    es.subscribe(on_event, event_class="ISensLogon")
    return "EventSystem.afire", es


async def latency(world: LogindWorld, n: int, span: float) -> tuple[str, list[float], list[float]]:
    await world.mock.add(session_props("2", "alice", seat="seat0", type_="x11"))
    source = LogindSource(world.address, sessions_dir=None)
    tracker = Tracker()
    got: asyncio.Queue[float] = asyncio.Queue()

    def on_event(event: SensEvent) -> None:
        if str(event.method) in ("DisplayLock", "DisplayUnlock"):
            got.put_nowait(time.perf_counter())

    how, sub = make_subscriber(on_event)

    async def pump() -> None:
        async for event in tracked_events(source, tracker):
            if how == "plain callback":
                sub(event)
            else:
                await sub.afire(event)

    task = asyncio.create_task(pump())
    await source.ready.wait()
    poller = Poller()
    poller.start()
    ours: list[float] = []
    changes: list[float] = []
    rng = random.Random(7)
    for i in range(n):
        await asyncio.sleep(rng.uniform(0, 2 * span / n))
        t0 = time.perf_counter()
        await world.mock.change("2", LockedHint=i % 2 == 0)
        t1 = await asyncio.wait_for(got.get(), 10)
        ours.append(t1 - t0)
        changes.append(t0)
    await asyncio.sleep(1.1)  # let the poller pass the last change
    poller.stop.set()
    poller.join()
    theirs = [x for x in map(poller.latency, changes) if x is not None]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await source.aclose()
    return how, ours, theirs


def idle_of(world: LogindWorld, seconds: float) -> tuple[float, float]:
    """``sens watch --source logind`` idle (its first line: the existing session's Logon)."""
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": world.address,
           "SENS_SOCKET": str(world.directory / "none.sock"),
           "SENS_JOURNAL": str(world.directory / "journal.db")}
    return idle_cost([sys.executable, "-m", "pysens.cli", "watch", "--source", "logind",
                      "--json", "--include-existing"], env, seconds)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=300)
    ap.add_argument("--span", type=float, default=10.0, help="seconds the changes spread over")
    ap.add_argument("--idle", type=float, default=10.0, help="idle seconds measured")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        world = LogindWorld(Path(d))
        world.bus.start()
        try:
            await world.mock.start()
            how, ours, theirs = await latency(world, args.events, args.span)
            cpu, rss = await asyncio.to_thread(idle_of, world, args.idle)
        finally:
            await world.close()
    ms = 1000.0
    print(f"change -> subscriber latency, {len(ours)} LockedHint changes over ~{args.span:g} s")
    print(f"{'':34} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9}")
    print(f"{'logind source -> ' + how:34} {pct(ours, 50) * ms:9.2f} {pct(ours, 99) * ms:9.2f} "
          f"{statistics.mean(ours) * ms:9.2f}")
    print(f"{'psutil.users() polled every 1 s':34} {pct(theirs, 50) * ms:9.2f} "
          f"{pct(theirs, 99) * ms:9.2f} {statistics.mean(theirs) * ms:9.2f}")
    ratio = statistics.mean(theirs) / statistics.mean(ours)
    print(f"ratio (poller mean / logind mean): {ratio:.0f}x")
    print(f"sens watch --source logind idle: {cpu:.3f} CPU s over {args.idle:g} s, "
          f"RSS {rss:.1f} MB")


if __name__ == "__main__":
    asyncio.run(main())
