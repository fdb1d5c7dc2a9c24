"""kill -9 the daemon at random moments during a 10,000-event burst, restart it each time: at
the end every event is journaled exactly once and every persistent subscriber has seen every
event it subscribed to at least once, in journal order."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

from pysens.cli import main
from pysens.journal import Journal
from service_fixtures import (
    events,
    read_jsonl,
    sens_argv,
    start_daemon,
    stop,
    wait_cursor,
    write_events,
)

N = 10_000
KILLS = 6


def seen_in_order(seqs: list[int], wanted: list[int]) -> int:
    """Check a sink's deliveries; the number of duplicates. Redeliveries after a crash replay a
    stretch already seen, so the first sightings must be exactly ``wanted``, in order."""
    first: list[int] = []
    seen: set[int] = set()
    for s in seqs:
        if s not in seen:
            seen.add(s)
            first.append(s)
    assert first == wanted, "a sink missed an event or saw them out of order"
    return len(seqs) - len(first)


def test_kill_9_during_a_burst_loses_nothing_and_duplicates_nothing_in_the_journal(
    tmp_path: Path,
) -> None:
    rng = random.Random(20261123)
    jsonl_out, exec_out = tmp_path / "jsonl.out", tmp_path / "exec.out"
    assert main(["subscriptions", "add", "file", "--class", "ISensLogon2", "--jsonl",
                 str(jsonl_out)]) == 0
    # One process per event: the exec subscriber takes the Logoffs (a tenth) to keep it quick.
    assert main(["subscriptions", "add", "prog", "--class", "ISensLogon2", "--method",
                 "Logoff", "--exec", "tee", "-a", str(exec_out)]) == 0
    burst = write_events(tmp_path / "burst.jsonl", events(N))
    kills = 0
    for _ in range(KILLS):
        proc = start_daemon(tmp_path)
        publisher = subprocess.Popen(sens_argv("publish", "--json", str(burst)),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 1.5))
        proc.send_signal(signal.SIGKILL)
        kills += 1
        stop(proc)
        publisher.wait(60)
    proc = start_daemon(tmp_path)
    try:
        done = subprocess.run(sens_argv("publish", "--json", str(burst)), capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        wait_cursor(["file", "prog"], N, deadline=120)
    finally:
        assert stop(proc) == 0
    with Journal() as j:
        journaled = list(j.query())
    assert len(journaled) == N == len({e.id for e in journaled})
    assert sorted(e.id for e in journaled) == sorted(e.id for e in events(N))
    seq_of = {e.id: e.seq or 0 for e in journaled}
    all_seqs = sorted(seq_of.values())
    logoffs = sorted(seq_of[e.id] for e in journaled if e.method == "Logoff")
    rows, torn = read_jsonl(jsonl_out)
    dup_jsonl = seen_in_order([r["seq"] for r in rows], all_seqs)
    rows, torn_exec = read_jsonl(exec_out)
    dup_exec = seen_in_order([r["seq"] for r in rows], logoffs)
    assert torn == 0  # the jsonl sink cuts a torn line before appending again
    print(f"\ncrash test: {kills} kill -9, {N} events journaled once each; duplicates: "
          f"jsonl {dup_jsonl}, exec {dup_exec} (+{torn_exec} torn lines)")
