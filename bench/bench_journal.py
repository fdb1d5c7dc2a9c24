"""Journal append: bursts (events/s) and the latency of one durable append.

Peer, in the same run: what a user would write by hand — plain ``sqlite3`` inserting each
event's JSON into a table in WAL mode (the floor: no ids, no idempotency, no seq handed back).

    python bench/bench_journal.py [--events 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from pysens.events import SensEvent
from pysens.journal import Journal, JournalWriter


def make_events(n: int) -> list[SensEvent]:
    return [SensEvent(method="Logon", user_name=f"user{i % 1000}", session_id=str(i),
                      host="web01", source="bench") for i in range(n)]


def peer_burst(path: Path, events: list[SensEvent], batch: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE e (id INTEGER PRIMARY KEY, body TEXT)")
    t = time.perf_counter()
    for i in range(0, len(events), batch):
        rows = [(json.dumps(e.to_json()),) for e in events[i : i + batch]]
        db.execute("BEGIN")
        db.executemany("INSERT INTO e(body) VALUES (?)", rows)
        db.execute("COMMIT")
    dt = time.perf_counter() - t
    db.close()
    return len(events) / dt


def pysens_burst(path: Path, events: list[SensEvent], batch: int) -> float:
    with Journal(path) as j:
        t = time.perf_counter()
        for i in range(0, len(events), batch):
            j.append_many(events[i : i + batch])
        return len(events) / (time.perf_counter() - t)


def pysens_group_commit(path: Path, events: list[SensEvent]) -> float:
    """Concurrent producers each awaiting their own append (the daemon's path)."""

    async def go() -> float:
        with Journal(path) as j:
            w = JournalWriter(j)
            t = time.perf_counter()
            await asyncio.gather(*(w.append(e) for e in events))
            return len(events) / (time.perf_counter() - t)

    return asyncio.run(go())


def durable_latency(path: Path, events: list[SensEvent], durable: bool) -> tuple[float, float]:
    with Journal(path, durable=durable) as j:
        lat = []
        for e in events:
            t = time.perf_counter()
            j.append(e)
            lat.append((time.perf_counter() - t) * 1e3)
    lat.sort()
    return statistics.median(lat), lat[int(len(lat) * 0.99)]


def peer_single_latency(path: Path, events: list[SensEvent]) -> tuple[float, float]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE e (id INTEGER PRIMARY KEY, body TEXT)")
    lat = []
    for e in events:
        t = time.perf_counter()
        db.execute("INSERT INTO e(body) VALUES (?)", (json.dumps(e.to_json()),))
        lat.append((time.perf_counter() - t) * 1e3)
    db.close()
    lat.sort()
    return statistics.median(lat), lat[int(len(lat) * 0.99)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--single", type=int, default=1_000)
    args = ap.parse_args()
    events = make_events(args.events)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        peer = peer_burst(tmp / "peer.db", events, 1000)
        ours = pysens_burst(tmp / "ours.db", events, 1000)
        group = pysens_group_commit(tmp / "group.db", events)
        again = pysens_burst(tmp / "ours.db", events, 1000)  # every id already there
        single = events[: args.single]
        d50, d99 = durable_latency(tmp / "durable.db", single, durable=True)
        n50, n99 = durable_latency(tmp / "normal.db", single, durable=False)
        p50, p99 = peer_single_latency(tmp / "peer1.db", single)
    print(f"{'journal append':44} {'pysens':>12} {'sqlite3 by hand':>16} {'ratio':>7}")
    print(f"{'burst, append_many(1000), events/s':44} {ours:12,.0f} {peer:16,.0f} "
          f"{ours / peer:7.2f}")
    print(f"{'burst, concurrent awaits (group commit) /s':44} {group:12,.0f} {peer:16,.0f} "
          f"{group / peer:7.2f}")
    print(f"{'re-append of known ids, events/s':44} {again:12,.0f} {'':>16} {'':>7}")
    print(f"{'single durable append (FULL) p50 / p99 ms':44} {d50:6.3f}/{d99:5.3f} "
          f"{p50:9.3f}/{p99:6.3f} {d50 / p50:7.2f}")
    print(f"{'single append (NORMAL) p50 / p99 ms':44} {n50:6.3f}/{n99:5.3f}")


if __name__ == "__main__":
    main()
