"""The daemon's delivery path: event -> journal -> sink latency and throughput with 100
persistent subscriptions (jsonl sinks), plus the daemon's idle CPU and RSS.

Peer, same run: the floor a hand-written hook would give — the same events appended straight to
100 JSON-lines files with an fsync each, in one process, with no journal, no cursors and no
redelivery after a crash. The burst is run ``--rounds`` times, each followed by the peer's, and
the medians are shown (the ratio: the median of each round's own ratio), since a shared machine's
disk varies from one second to the next.

Run: python bench/bench_service.py [--subs 100] [--burst 2000] [--probes 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import cpu_seconds  # bench/ is sys.path[0] when run as a script
from pysens.events import SensEvent
from pysens.journal import Journal, SubscriptionStore


def request(sock: str, req: dict[str, object]) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(sock)
        s.sendall((json.dumps(req) + "\n").encode())
        with s.makefile("rb") as f:
            return json.loads(f.readline())  # type: ignore[no-any-return]


def event(i: int, tag: str) -> SensEvent:
    return SensEvent(method="Logon" if i % 2 else "Logoff", user_name=f"user{i % 50}",
                     session_id=str(i), host="bench", source=tag)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_size(path: Path, size: int) -> None:
    while not path.exists() or path.stat().st_size <= size:
        time.sleep(0.0002)


def peer_fds(tmp: Path, subs: int) -> list[int]:
    return [os.open(tmp / f"peer{i}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            for i in range(subs)]


def peer_probes(tmp: Path, subs: int, probes: int) -> list[float]:
    fds = peer_fds(tmp, subs)
    lat = []
    for i in range(probes):
        t0 = time.perf_counter()
        line = (json.dumps(event(i, "peer").to_json()) + "\n").encode()
        for fd in fds:
            os.write(fd, line)
            os.fsync(fd)
        lat.append(time.perf_counter() - t0)
    for fd in fds:
        os.close(fd)
    return lat


def peer_burst(tmp: Path, subs: int, burst: int, tag: str) -> float:
    """The hand-written fan-out of one burst: events/s."""
    fds = peer_fds(tmp, subs)
    evs = [event(i, tag) for i in range(burst)]
    t0 = time.perf_counter()
    for start in range(0, burst, 500):
        data = "".join(json.dumps(e.to_json()) + "\n" for e in evs[start:start + 500]).encode()
        for fd in fds:
            os.write(fd, data)
            os.fsync(fd)
    took = time.perf_counter() - t0
    for fd in fds:
        os.close(fd)
    return burst / took


def median(xs: list[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def daemon_burst(sock: str, jpath: Path, burst: int, tag: str) -> tuple[float, float]:
    """One burst through the daemon: (journaled, delivered to all) in events/s."""
    with Journal(jpath) as j:
        end = j.last_seq() + burst
        store = SubscriptionStore(j)
        names = [s.cursor for s in store.list()]
        store.close()
        evs = [event(i, tag).to_json() for i in range(burst)]
        t0 = time.perf_counter()
        for start in range(0, burst, 1000):
            request(sock, {"op": "publish", "events": evs[start:start + 1000]})
        journaled = time.perf_counter() - t0
        for n in names:  # one cursor at a time: the bench must not eat the daemon's CPU
            while j.cursor(n) < end:
                time.sleep(0.002)
        delivered = time.perf_counter() - t0
    return burst / journaled, burst / delivered


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subs", type=int, default=100)
    ap.add_argument("--burst", type=int, default=2000)
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--idle", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-service-"))
    sock, jpath = str(tmp / "sens.sock"), tmp / "journal.db"
    env = dict(os.environ, SENS_JOURNAL=str(jpath), SENS_SOCKET=sock)
    with Journal(jpath) as j:
        store = SubscriptionStore(j)
        for i in range(a.subs):
            store.add(f"s{i}", event_class="ISensLogon2", sink="jsonl",
                      settings={"path": str(tmp / f"s{i}.jsonl")})
        store.close()
    proc = subprocess.Popen([sys.executable, "-m", "pysens.cli", "serve", "--source", "none"],
                            env=env, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                request(sock, {"op": "hello"})
                break
            except OSError:
                time.sleep(0.05)
        time.sleep(1)
        cpu0 = cpu_seconds(proc.pid)
        time.sleep(a.idle)
        idle_cpu = cpu_seconds(proc.pid) - cpu0
        idle_rss = rss_mb(proc.pid)
        first, last = tmp / "s0.jsonl", tmp / f"s{a.subs - 1}.jsonl"
        to_journal, to_first, to_all = [], [], []
        for i in range(a.probes):
            sizes = [p.stat().st_size if p.exists() else -1 for p in (first, last)]
            e = event(i, "probe")
            t0 = time.perf_counter()
            request(sock, {"op": "publish", "events": [e.to_json()]})
            to_journal.append(time.perf_counter() - t0)
            wait_size(first, sizes[0])
            to_first.append(time.perf_counter() - t0)
            wait_size(last, sizes[1])
            to_all.append(time.perf_counter() - t0)
        journaled, delivered, peers, ratios = [], [], [], []
        for r in range(a.rounds):
            into_journal, to_all_sinks = daemon_burst(sock, jpath, a.burst, f"burst{r}")
            by_hand = peer_burst(tmp, a.subs, a.burst, f"peerburst{r}")
            journaled.append(into_journal)
            delivered.append(to_all_sinks)
            peers.append(by_hand)
            ratios.append(to_all_sinks / by_hand)
        busy_rss = rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    p_lat = peer_probes(tmp, a.subs, min(a.probes, 50))
    p = {"p50": pct(p_lat, 50), "p99": pct(p_lat, 99), "rate": median(peers)}
    ms = 1000.0
    rate = median(delivered)
    ratio = median(ratios)
    print(f"{a.subs} jsonl subscriptions; {a.probes} single events; burst of {a.burst}, "
          f"{a.rounds} rounds (medians; burst ratios per round: "
          f"{', '.join(f'{x:.2f}' for x in ratios)})")
    print("| figure | sens serve | hand-written fan-out | ratio |\n|---|---|---|---|")
    print(f"| publish -> journaled (ack), p50 / p99 ms | {pct(to_journal, 50) * ms:.2f} / "
          f"{pct(to_journal, 99) * ms:.2f} | — | — |")
    print(f"| event -> first sink, p50 / p99 ms | {pct(to_first, 50) * ms:.2f} / "
          f"{pct(to_first, 99) * ms:.2f} | — | — |")
    print(f"| event -> all {a.subs} sinks, p50 / p99 ms | {pct(to_all, 50) * ms:.2f} / "
          f"{pct(to_all, 99) * ms:.2f} | {p['p50'] * ms:.2f} / {p['p99'] * ms:.2f} | "
          f"{pct(to_all, 50) / p['p50']:.2f} |")
    print(f"| burst: journaled, events/s | {median(journaled):,.0f} | — | — |")
    print(f"| burst: delivered to all {a.subs}, events/s | {rate:,.0f} | {p['rate']:,.0f} | "
          f"{ratio:.2f} |")
    print(f"| burst: deliveries/s ({a.subs} x events) | {rate * a.subs:,.0f} | "
          f"{p['rate'] * a.subs:,.0f} | {ratio:.2f} |")
    print(f"| idle daemon, CPU s over {a.idle:g} s | {idle_cpu:.2f} | — | — |")
    print(f"| daemon RSS idle / after the burst, MB | {idle_rss:.1f} / {busy_rss:.1f} | — | — |")


if __name__ == "__main__":
    main()
