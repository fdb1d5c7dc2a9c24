""".evtx reading and mapping throughput (records/s): pysens's reader vs python-evtx.

Peer, in the same run: python-evtx (``import Evtx.Evtx``, pure Python), rendering every record of
the same files to XML, which is what a Python user without pysens would start from. Rows:

* pysens ``read_evtx``: the import path (pyevtx-rs, filter, decode the relevant records, map
  to observations, tie channels) — what ``sens import evtx`` costs before the tracker;
* pyevtx-rs decoding every record (``records_json`` + ``json.loads``): the parser's floor;
* python-evtx ``record.xml()`` for every record.

The sample logs are small, so each tool reads all of them ``--passes`` times (python-evtx,
being slow, ``--peer-passes`` times). Records/s counts every record in the files (the ones the
reader skips included) as each parser sees them.

    python bench/bench_evtx.py [--passes 5] [--peer-passes 1] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pysens.sources.evtx import read_evtx

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "evtx"


def count_records(paths: list[Path]) -> int:
    from evtx import PyEvtxParser

    n = 0
    for p in paths:
        it = PyEvtxParser(str(p)).records_json()
        while True:
            try:
                next(it)
                n += 1
            except StopIteration:
                break
            except RuntimeError:
                continue
    return n


def pysens_pass(paths: list[Path]) -> int:
    observations = 0
    for p in paths:
        observations += sum(1 for _ in read_evtx(str(p), lambda _m: None))
    return observations


def rust_all_pass(paths: list[Path]) -> int:
    from evtx import PyEvtxParser

    n = 0
    for p in paths:
        it = PyEvtxParser(str(p)).records_json()
        while True:
            try:
                item = next(it)
            except StopIteration:
                break
            except RuntimeError:
                continue
            if item is not None:
                json.loads(item["data"])
            n += 1
    return n


def python_evtx_pass(paths: list[Path]) -> int:
    import Evtx.Evtx

    n = 0
    for p in paths:
        with Evtx.Evtx.Evtx(str(p)) as log:
            for record in log.records():
                try:
                    record.xml()
                except Exception:  # its damaged records: count what it reads  # noqa: BLE001 - the peer raises anything on a damaged record; counted as it counts
                    continue
                n += 1
    return n


def timed(fn: object, paths: list[Path], passes: int) -> tuple[float, int]:
    assert callable(fn)
    t = time.perf_counter()
    out = 0
    for _ in range(passes):
        out = fn(paths)
    return (time.perf_counter() - t) / passes, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--peer-passes", type=int, default=1)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    paths = sorted(args.data.glob("*.evtx"))
    records = count_records(paths)
    size = sum(p.stat().st_size for p in paths) / 1e6
    print(f"{len(paths)} files, {size:.1f} MB, {records} records; pysens {args.passes} passes, "
          f"python-evtx {args.peer_passes}")
    dt_pysens, obs = timed(pysens_pass, paths, args.passes)
    dt_rust, _ = timed(rust_all_pass, paths, args.passes)
    dt_peer, peer_records = timed(python_evtx_pass, paths, args.peer_passes)
    rows = [
        ("pysens read_evtx (filter, decode, map)", dt_pysens, records),
        ("pyevtx-rs, json.loads of every record", dt_rust, records),
        ("python-evtx, record.xml() of every record", dt_peer, peer_records),
    ]
    print(f"{'reader':44} {'s/pass':>8} {'records/s':>11} {'vs python-evtx':>15}")
    peer_rate = peer_records / dt_peer
    for name, dt, n in rows:
        print(f"{name:44} {dt:8.3f} {n / dt:11,.0f} {n / dt / peer_rate:14.1f}x")
    print(f"pysens observations per pass: {obs}")


if __name__ == "__main__":
    main()
