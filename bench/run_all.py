"""Run every benchmark in bench/ one after the other and print their tables.

    python bench/run_all.py [NAME ...]      # e.g. fire journal (default: all of them)

Each benchmark measures pysens beside the peer a user would otherwise pick, in the same run, and
prints ratios; BENCHMARKS.md records the figures. Some need root (private mount namespaces) or
the services the test suite uses (nats-server, PostgreSQL).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    wanted = set(argv)
    scripts = sorted(p for p in HERE.glob("bench_*.py")
                     if not wanted or p.stem.removeprefix("bench_") in wanted)
    if not scripts:
        print(f"no benchmark matches {' '.join(argv)}", file=sys.stderr)
        return 2
    failed = []
    for script in scripts:
        print(f"\n== {script.name} ==", flush=True)
        start = time.monotonic()
        rc = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
        print(f"-- {script.name}: exit {rc}, {time.monotonic() - start:.0f} s", flush=True)
        if rc:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
