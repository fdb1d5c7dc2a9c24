"""fire(): events/s to 1 and 10 subscribers beside blinker and pyee in the same run, and the
per-event cost with 10,000 subscriptions each filtering a distinct user.

    python bench/bench_fire.py [--events 300000]

The event is built once, outside the timed loop (all three libraries get the same object).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import blinker
from pyee import EventEmitter

from pysens import EventSystem, SensEvent


def rate(n: int, fire: Callable[[], object]) -> float:
    best = 0.0
    for _ in range(3):  # best of three: the VM is shared and noisy
        t = time.perf_counter()
        for _ in range(n):
            fire()
        best = max(best, n / (time.perf_counter() - t))
    return best


def receivers(k: int) -> list[Callable[..., None]]:
    def make() -> Callable[..., None]:
        def receiver(*args: object, **kw: object) -> None:
            return None
        return receiver
    return [make() for _ in range(k)]


def pysens_rate(n: int, k: int, event: SensEvent) -> float:
    es = EventSystem()
    for r in receivers(k):
        es.subscribe(r)
    return rate(n, lambda: es.fire(event))


def blinker_rate(n: int, k: int, event: SensEvent) -> float:
    sig = blinker.Signal()
    keep = receivers(k)  # blinker holds weak references: keep the receivers alive
    for r in keep:
        sig.connect(r)
    return rate(n, lambda: sig.send(event))


def pyee_rate(n: int, k: int, event: SensEvent) -> float:
    ee = EventEmitter()
    for r in receivers(k):
        ee.on("SessionReconnect", r)
    return rate(n, lambda: ee.emit("SessionReconnect", event))


def filtered_cost(n: int, subscriptions: int) -> float:
    """Microseconds per fire() with ``subscriptions`` each filtering one distinct user."""
    es = EventSystem()
    for i in range(subscriptions):
        es.subscribe(receivers(1)[0], criteria=f"bstrUserName = 'user{i}'")
    event = SensEvent(method="SessionReconnect", user_name=f"user{subscriptions // 2}",
                      session_id="3")
    return 1e6 / rate(n, lambda: es.fire(event))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=300_000)
    n = ap.parse_args().events
    event = SensEvent(method="SessionReconnect", user_name="alice", session_id="3")
    print(f"{'events/s':28} {'pysens':>12} {'blinker':>12} {'pyee':>12} {'vs blinker':>11} "
          f"{'vs pyee':>8}")
    for k in (1, 10):
        ours = pysens_rate(n, k, event)
        bl = blinker_rate(n, k, event)
        py = pyee_rate(n, k, event)
        print(f"{f'fire() to {k} subscriber(s)':28} {ours:12,.0f} {bl:12,.0f} {py:12,.0f} "
              f"{ours / bl:10.2f}x {ours / py:7.2f}x")
    one = filtered_cost(n, 1)
    many = filtered_cost(n, 10_000)
    print(f"per-event cost, 1 filtered subscription:      {one:6.3f} us")
    print(f"per-event cost, 10,000 filtered subscriptions: {many:6.3f} us "
          f"({many / one:.2f}x the cost with 1)")


if __name__ == "__main__":
    main()
