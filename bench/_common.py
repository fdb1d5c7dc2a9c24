"""What several benchmarks share (not a benchmark itself: run_all.py runs bench_*.py only)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

REPEAT = 3


def best(fn: Callable[[], object], repeat: int = REPEAT) -> tuple[float, object]:
    """The shortest wall time of ``repeat`` calls of ``fn`` (the shared VM is noisy), and the
    last call's result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process ``pid`` has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cost(argv: Sequence[str], env: Mapping[str, str], seconds: float) -> tuple[float, float]:
    """CPU seconds and RSS (MB) of the process ``argv`` over ``seconds`` once it has printed
    its first line (it is watching from then on), without a single change to see."""
    import psutil

    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=dict(env))
    try:
        assert proc.stdout is not None
        if not proc.stdout.readline():
            raise SystemExit(f"{argv[:4]} ended before it was ready")
        p = psutil.Process(proc.pid)
        c0 = p.cpu_times()
        time.sleep(seconds)
        c1 = p.cpu_times()
        rss = p.memory_info().rss / 2**20
    finally:
        proc.terminate()
        proc.wait()
    return (c1.user + c1.system) - (c0.user + c0.system), rss
