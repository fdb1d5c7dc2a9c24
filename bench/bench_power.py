"""UPower power-change latency and idle cost, beside what a user would write otherwise.

* Latency from the mock call that changes UPower's ``OnBattery`` (python-dbusmock's upower
  template on a private bus) to a subscriber callback (UPowerSource -> Tracker -> EventSystem
  when present, else a plain callback): p50 / p99 / mean over 100+ changes spread over ~12 s.
* In the same run, the peer: a loop on its own bus connection that Gets ``OnBattery`` once a
  second. A change is visible to it at the end of the first Get issued after the change, so for
  each change time its latency is that Get's end minus the change time (expected mean ~500 ms).
* Idle cost over 10 s, each in a process of its own: the UPower source watching (CPU seconds,
  RSS), and the peer's once-a-second loop (CPU seconds).

Run: ``python bench/bench_power.py [--changes 120] [--span 12] [--idle 10]`` (needs dbus-daemon
and python3-dbusmock, like the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from dbus_fast import Message, Variant
from dbus_fast.aio import MessageBus

from _common import idle_cost  # bench/ is sys.path[0] when run as a script
from pysens.events import SensEvent
from pysens.live import tracked_events
from pysens.sources.upower import UPowerSource
from pysens.tracker import Tracker
from upower_fixtures import CHARGING, UPowerWorld

UPOWER = "org.freedesktop.UPower"
MANAGER = "/org/freedesktop/UPower"
PROPS = "org.freedesktop.DBus.Properties"

# The two idle processes: the source watching, and the peer's loop.
SOURCE_SCRIPT = """
import asyncio, sys
from pysens.sources.upower import UPowerSource
from pysens.tracker import Tracker
from pysens.live import tracked_events

async def main():
    source = UPowerSource(sys.argv[1])
    async for obs in source.watch():
        print("ready", flush=True)
        break
    async for _ in tracked_events(source, Tracker()):
        pass

asyncio.run(main())
"""
PEER_SCRIPT = """
import asyncio, sys
from dbus_fast import Message
from dbus_fast.aio import MessageBus

async def main():
    bus = await MessageBus(bus_address=sys.argv[1]).connect()
    print("ready", flush=True)
    while True:
        await bus.call(Message(destination="org.freedesktop.UPower", path="/org/freedesktop/UPower",
                               interface="org.freedesktop.DBus.Properties", member="Get",
                               signature="ss", body=["org.freedesktop.UPower", "OnBattery"]))
        await asyncio.sleep(1.0)

asyncio.run(main())
"""


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def make_subscriber(on_event: Any) -> tuple[str, Any]:
    try:
        from pysens.eventsystem import EventSystem  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return "plain callback", on_event
    es = EventSystem()
    es.subscribe(on_event, event_class="ISensOnNow")
    return "EventSystem.afire", es


async def poll_once_a_second(address: str, stop: asyncio.Event,
                             polls: list[tuple[float, float]]) -> None:
    """The peer: Get OnBattery every second; remembers each Get's (start, end)."""
    bus = await MessageBus(bus_address=address).connect()
    try:
        while not stop.is_set():
            start = time.perf_counter()
            await bus.call(Message(destination=UPOWER, path=MANAGER, interface=PROPS,
                                   member="Get", signature="ss", body=[UPOWER, "OnBattery"]))
            polls.append((start, time.perf_counter()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        bus.disconnect()


def peer_latency(polls: list[tuple[float, float]], changed_at: float) -> float | None:
    for start, end in polls:
        if start >= changed_at:
            return end - changed_at
    return None


async def latency(world: UPowerWorld, n: int, span: float
                  ) -> tuple[str, list[float], list[float]]:
    await world.mock.setup_display(percentage=80.0, state=CHARGING)
    source = UPowerSource(world.address)
    got: asyncio.Queue[float] = asyncio.Queue()

    def on_event(event: SensEvent) -> None:
        if str(event.method) in ("OnACPower", "OnBatteryPower"):
            got.put_nowait(time.perf_counter())

    how, sub = make_subscriber(on_event)

    async def pump() -> None:
        async for event in tracked_events(source, Tracker()):
            if how == "plain callback":
                sub(event)
            else:
                await sub.afire(event)

    task = asyncio.create_task(pump())
    await source.ready.wait()
    stop = asyncio.Event()
    polls: list[tuple[float, float]] = []
    poller = asyncio.create_task(poll_once_a_second(world.address, stop, polls))
    ours: list[float] = []
    changes: list[float] = []
    rng = random.Random(7)
    for i in range(n):
        await asyncio.sleep(rng.uniform(0, 2 * span / n))
        t0 = time.perf_counter()
        await world.mock.call(MANAGER, PROPS, "Set", "ssv",
                              [UPOWER, "OnBattery", Variant("b", i % 2 == 0)])
        t1 = await asyncio.wait_for(got.get(), 10)
        ours.append(t1 - t0)
        changes.append(t0)
    await asyncio.sleep(1.1)  # let the poller pass the last change
    stop.set()
    await poller
    theirs = [x for x in (peer_latency(polls, t) for t in changes) if x is not None]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await source.aclose()
    return how, ours, theirs


def idle_of(address: str, script: str, seconds: float) -> tuple[float, float]:
    """``script`` on the private system bus, idle."""
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": address}
    return idle_cost([sys.executable, "-c", script, address], env, seconds)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=120)
    ap.add_argument("--span", type=float, default=12.0, help="seconds the changes spread over")
    ap.add_argument("--idle", type=float, default=10.0, help="idle seconds measured")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        world = UPowerWorld(Path(d))
        world.bus.start()
        try:
            await world.mock.start()
            how, ours, theirs = await latency(world, args.changes, args.span)
            cpu, rss = await asyncio.to_thread(idle_of, world.address, SOURCE_SCRIPT,
                                               args.idle)
            peer_cpu, peer_rss = await asyncio.to_thread(idle_of, world.address,
                                                         PEER_SCRIPT, args.idle)
        finally:
            await world.close()
    ms = 1000.0
    print(f"OnBattery change -> subscriber latency, {len(ours)} changes over ~{args.span:g} s")
    print(f"{'':44} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9}")
    print(f"{'UPowerSource -> Tracker -> ' + how:44} {pct(ours, 50) * ms:9.2f} "
          f"{pct(ours, 99) * ms:9.2f} {statistics.mean(ours) * ms:9.2f}")
    print(f"{'Get OnBattery every 1 s':44} {pct(theirs, 50) * ms:9.2f} "
          f"{pct(theirs, 99) * ms:9.2f} {statistics.mean(theirs) * ms:9.2f}")
    ratio = statistics.mean(theirs) / statistics.mean(ours)
    print(f"ratio (poller mean / source mean): {ratio:.0f}x")
    print(f"goals: p50 <= 2 ms {'met' if pct(ours, 50) * ms <= 2 else 'MISSED'}, "
          f"p99 <= 10 ms {'met' if pct(ours, 99) * ms <= 10 else 'MISSED'}")
    print(f"idle over {args.idle:g} s: UPower source {cpu:.3f} CPU s, RSS {rss:.1f} MB; "
          f"the 1 s poller {peer_cpu:.3f} CPU s, RSS {peer_rss:.1f} MB")


if __name__ == "__main__":
    asyncio.run(main())
