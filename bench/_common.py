"""What several benchmarks share (not a benchmark itself: run_all.py runs bench_*.py only)."""

from __future__ import annotations

import time
from collections.abc import Callable

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
