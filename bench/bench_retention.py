"""Retention's effect on live appends: append latency while a vacuum deletes half a journal.

Fills a journal with EVENTS wtmp-like events (the import's own shape), then appends one event
at a time through ``JournalWriter`` (as the daemon's sources do), every 2 ms, for as long as a
``Retention`` run takes to bring the file under half its size (in its default batches, in a
thread, as the daemon runs it); and the same appends with no vacuum running, for reference.
Prints append latency p50 / p99 / max for both, the vacuum's duration, what it deleted and
its longest batch (the longest an append could have waited for it).

Run: ``python bench/bench_retention.py [EVENTS]`` (default 200,000).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pysens.events import SensEvent
from pysens.journal import Journal, JournalWriter
from pysens.journal.retention import Retention

T0 = datetime(2020, 1, 1, tzinfo=UTC)


def history(n: int) -> list[SensEvent]:
    """``n`` events shaped like a wtmp import's (Logon, PostShell, Logoff with the record)."""
    out = []
    for i in range(n):
        line, user = f"pts/{i % 40}", f"user{i % 40:02d}"
        raw: dict[str, object] = {
            "ut_type": "USER_PROCESS", "ut_pid": 1000 + i // 3, "ut_line": line,
            "ut_id": line[-4:], "ut_user": user, "ut_host": "10.0.3.4", "ut_session": 0,
            "ut_addr": "10.0.3.4", "offset": 384 * (i // 3)}
        out.append(SensEvent(("Logon", "PostShell", "Logoff")[i % 3], user_name=user,
                             session_id=line, tty=line, session_type="tty", remote=True,
                             client_name="10.0.3.4", client_address="10.0.3.4", host="bench",
                             source="wtmp", time=T0 + timedelta(seconds=i), raw=raw))
    return out


async def appends(writer: JournalWriter, until: threading.Event, start: int) -> list[float]:
    """Append one live event every 2 ms until ``until`` is set; each one's latency (s)."""
    took: list[float] = []
    i = start
    while not until.is_set():
        event = SensEvent("Logon", user_name="live", session_id=str(i), host="bench",
                          source="api", time=datetime.now(UTC))
        began = time.perf_counter()
        await writer.append(event)
        took.append(time.perf_counter() - began)
        i += 1
        await asyncio.sleep(0.002)
    return took


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else 0.0


async def measure(journal: Journal, vacuum: bool) -> tuple[list[float], float, str]:
    writer = JournalWriter(journal)
    done = threading.Event()
    report = ""
    began = time.perf_counter()
    task = asyncio.create_task(appends(writer, done, 10_000_000 if vacuum else 20_000_000))
    if vacuum:
        retention = Retention(journal, max_size=Retention(journal).used() // 2)
        result = await asyncio.to_thread(retention.run)
        report = (f"deleted {result.deleted:,} events in {time.perf_counter() - began:.2f} s, "
                  f"longest batch {result.longest_batch * 1000:.1f} ms, "
                  f"{result.size_before / 1e6:.1f} MB -> {result.size_after / 1e6:.1f} MB")
    else:
        await asyncio.sleep(3)
    done.set()
    took = await task
    return took, time.perf_counter() - began, report


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp) / "journal.db")
        events = history(n)
        for i in range(0, n, 5000):
            journal.append_count(events[i:i + 5000], history=True)
        print(f"retention: a journal of {n:,} events; live appends every 2 ms (JournalWriter)")
        for vacuum in (False, True):
            took, secs, report = asyncio.run(measure(journal, vacuum))
            what = "while vacuum --max-size half runs" if vacuum else "no vacuum (reference)"
            print(f"{what:<36} appends {len(took):>5}  p50 {_pct(took, 50):6.2f} ms  "
                  f"p99 {_pct(took, 99):6.2f} ms  max {max(took) * 1000:6.2f} ms  "
                  f"({secs:.1f} s){'; ' + report if report else ''}")
        journal.close()


if __name__ == "__main__":
    main()
