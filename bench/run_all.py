"""Run every benchmark in bench/ one after the other and print their tables.

    python bench/run_all.py [NAME ...]                  # e.g. fire journal (default: all)
    python bench/run_all.py --against REV [NAME ...]    # each one on REV first, then here

Each benchmark measures pysens beside the peer a user would otherwise pick, in the same run, and
prints ratios; BENCHMARKS.md records the figures. Some need root (private mount namespaces) or
the services the test suite uses (nats-server, PostgreSQL).

``--against REV`` is how a change is measured before and after in one session: REV is checked
out into a temporary git worktree and its own ``bench_NAME.py`` runs on its own ``src``, then
this tree's on this tree's, one benchmark after the other (a benchmark REV does not have is run
here only).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _run(script: Path, root: Path, label: str) -> int:
    print(f"\n== {script.name} ({label}) ==", flush=True)
    env = dict(os.environ, PYTHONPATH=str(root / "src"))
    start = time.monotonic()
    rc = subprocess.call([sys.executable, str(script)], cwd=root, env=env)
    print(f"-- {script.name} ({label}): exit {rc}, {time.monotonic() - start:.0f} s", flush=True)
    return rc


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description="Run the benchmarks in bench/.")
    p.add_argument("names", nargs="*", help="which (bench_NAME.py), default: all")
    p.add_argument("--against", metavar="REV",
                   help="run each benchmark on this git revision first, then here")
    args = p.parse_args(argv)
    wanted = set(args.names)
    scripts = sorted(s for s in HERE.glob("bench_*.py")
                     if not wanted or s.stem.removeprefix("bench_") in wanted)
    if not scripts:
        print(f"no benchmark matches {' '.join(args.names)}", file=sys.stderr)
        return 2
    old: Path | None = None
    if args.against:
        old = Path(tempfile.mkdtemp(prefix="pysens-bench-")) / "tree"
        made = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old),
                               args.against], capture_output=True, text=True)
        if made.returncode:
            print(f"cannot check out {args.against}: {made.stderr.strip()}", file=sys.stderr)
            return 2
    failed = []
    try:
        for script in scripts:
            if old is not None and (old / "bench" / script.name).exists() and _run(
                    old / "bench" / script.name, old, args.against):
                failed.append(f"{script.name} ({args.against})")
            if _run(script, ROOT, "this tree"):
                failed.append(script.name)
    finally:
        if old is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)],
                           capture_output=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
