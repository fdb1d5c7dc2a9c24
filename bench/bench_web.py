"""``sens web``: how fast an event shows in the browser, how fast a big page opens, and what an
idle page costs the server.

    python bench/bench_web.py [--publishes 200] [--sessions 10000] [--idle 10]

* event -> DOM: a Logon published on the daemon's socket until its row is in the page's DOM
  (a MutationObserver stamps it with the page's clock; the same machine's clock as the
  publisher's), p50 / p99 over N publishes, beside the peer a terminal user would use: a
  ``watch`` client on the daemon's socket (what ``sens watch`` reads), in the same run.
* first load: a new page on a daemon with 10,000 open sessions, from navigation to the first
  picture drawn (the page's ``sensReadyMs``).
* idle: the ``sens web`` process's CPU time over 10 s with one open page and no events.

Needs Debian's chromium (/usr/bin/chromium) and Playwright for Python (never
``playwright install``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from pysens.events import SensEvent  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
OBSERVE = """(prefix) => {
  window.seen = {};
  new MutationObserver((ms) => {
    const t = performance.timeOrigin + performance.now();
    for (const m of ms) for (const n of m.addedNodes) {
      if (n.nodeType === 1 && n.matches('tr[data-id]')) {
        const sid = n.querySelector('.sid').textContent;
        if (sid.startsWith(prefix) && !(sid in window.seen)) window.seen[sid] = t;
      }
    }
  }).observe(document.querySelector('#sessions tbody'), {childList: true});
}"""


def request(path: str, req: dict[str, object]) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall((json.dumps(req) + "\n").encode())
        with s.makefile("rb") as f:
            return json.loads(f.readline())  # type: ignore[no-any-return]


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, round(q * (len(v) - 1)))]


def start(argv: list[str], env: dict[str, str], stdout: int | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pysens.cli", *argv], env=env, text=True,
                            stdout=stdout or subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_socket(path: str) -> None:
    for _ in range(400):
        try:
            if request(path, {"op": "hello"}).get("ok"):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("sens serve did not come up")


def web_url(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    m = re.search(r"(http://\S+)", proc.stdout.readline())
    assert m, "sens web did not start"
    return m.group(1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--publishes", type=int, default=200)
    ap.add_argument("--sessions", type=int, default=10_000)
    ap.add_argument("--idle", type=float, default=10.0)
    ap.add_argument("--loads", type=int, default=5, help="fresh pages opened on the big table")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="bench-web-"))
    sock = str(tmp / "sens.sock")
    env = dict(os.environ, PYTHONPATH=str(SRC), SENS_JOURNAL=str(tmp / "journal.db"),
               SENS_SOCKET=sock)
    serve = start(["serve", "--source", "none"], env)
    web = None
    try:
        wait_socket(sock)
        web = start(["web", "--listen", "127.0.0.1:0"], env, stdout=subprocess.PIPE)
        url = web_url(web)

        # the peer: a plain watch client on the daemon's socket
        got: dict[str, float] = {}
        peer = socket.socket(socket.AF_UNIX)
        peer.connect(sock)
        peer.sendall(b'{"op": "watch"}\n')
        reader = peer.makefile("rb")
        reader.readline()

        def watch() -> None:
            for line in reader:
                obj = json.loads(line)
                if "event" in obj:
                    got.setdefault(obj["event"]["session_id"], time.time())

        threading.Thread(target=watch, daemon=True).start()

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']")
            page.evaluate(OBSERVE, "b")
            sent: dict[str, float] = {}
            for n in range(args.publishes):
                sid = f"b{n}"
                e = SensEvent(method="Logon", user_name="bench", session_id=sid, host="bench",
                              source="bench")
                sent[sid] = time.time()
                request(sock, {"op": "publish", "events": [e.to_json()]})
                page.wait_for_function("(s) => s in window.seen", arg=sid, timeout=10_000)
                while sid not in got:
                    time.sleep(0.001)
            seen = page.evaluate("window.seen")
            dom = [seen[s] - sent[s] * 1000 for s in sent]
            term = [(got[s] - sent[s]) * 1000 for s in sent]
            print(f"event -> DOM over {args.publishes} publishes: p50 {pct(dom, .5):.1f} ms, "
                  f"p99 {pct(dom, .99):.1f} ms (goal p50 <= 50 ms)")
            print(f"  peer, event -> a socket watch client: p50 {pct(term, .5):.1f} ms, "
                  f"p99 {pct(term, .99):.1f} ms; ratio p50 "
                  f"{pct(dom, .5) / max(pct(term, .5), 0.01):.1f}x")

            # first load of a page with many open sessions
            big = [SensEvent(method="Logon", user_name=f"user{n % 500}", session_id=f"s{n}",
                             host=f"host{n % 20:02d}", source="bench", remote=True,
                             client_address=f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}")
                   .to_json() for n in range(args.sessions)]
            for k in range(0, len(big), 2000):
                request(sock, {"op": "publish", "events": big[k:k + 2000]})
            web.send_signal(signal.SIGTERM)
            web.wait(10)
            web = start(["web", "--listen", "127.0.0.1:0"], env, stdout=subprocess.PIPE)
            url = web_url(web)
            time.sleep(1.0)  # the server has read the daemon's table and the journal
            loads: list[float] = []
            splits: list[list[float]] = []
            for _ in range(args.loads):
                fresh = browser.new_page(viewport={"width": 1400, "height": 900})
                fresh.goto(url)
                fresh.wait_for_selector("body[data-ready='1']", timeout=60_000)
                rows = fresh.evaluate("document.querySelector('#count').textContent")
                loads.append(fresh.evaluate("window.sensReadyMs"))
                splits.append(fresh.evaluate("window.sensSnapshotMs"))
                fresh.close()
            print(f"first load with {rows} sessions: median {pct(loads, .5):.0f} ms, worst "
                  f"{max(loads):.0f} ms to the first picture (pages: "
                  f"{', '.join(f'{x:.0f}' for x in loads)} ms; goal <= 1000 ms)")
            for load, (arrived, parsed) in zip(loads, splits, strict=True):
                print(f"  snapshot received at {arrived:.0f} ms, parsed by {parsed:.0f} ms, "
                      f"drawn by {load:.0f} ms")

            # one idle page: what the server spends
            import psutil

            idle = browser.new_page()
            idle.goto(url)
            idle.wait_for_selector("body[data-ready='1']", timeout=60_000)
            server = psutil.Process(web.pid)
            time.sleep(1.0)
            before = server.cpu_times()
            time.sleep(args.idle)
            after = server.cpu_times()
            used = (after.user - before.user) + (after.system - before.system)
            print(f"server CPU with one idle page over {args.idle:g} s: {used * 1000:.0f} ms "
                  f"({used / args.idle * 100:.2f} % of a core; goal ~0)")
            browser.close()
        peer.close()
    finally:
        for proc in (web, serve):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
