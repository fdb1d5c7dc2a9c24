"""``sens timeline`` vs util-linux ``last`` on the same wtmp history.

Builds a wtmp of RECORDS records with the real ``utmpdump -r`` (the generator of
bench_wtmp.py: logins with logouts, superseded lines, shutdowns, reboots, crashes), imports it
into a journal once, then times, best of REPEAT runs:

* ``last -f FILE -x > /dev/null`` (the peer: reads the records, pairs them into sessions, prints);
* the journal read alone (``Journal.query``, every event decoded);
* ``build_timeline`` over the SENS events already in memory (the pairing alone);
* ``sens timeline --json > /dev/null`` (journal read + build + JSON lines);
* ``sens timeline > /dev/null`` (the table);
* ``sens timeline --html FILE`` (the page; its size is printed).

It also checks that both sides find the same number of login sessions.

Run: ``python bench/bench_timeline.py [RECORDS]`` (default 50,000).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPEAT, best  # bench/ is sys.path[0] when run as a script
from bench_wtmp import build_text
from pysens.cli import main as sens_main
from pysens.events import SensEvent
from pysens.journal import Journal
from pysens.timeline import build_timeline


def quiet(argv: list[str]) -> int:
    """Run ``sens`` with stdout and stderr thrown away (they would be written to /dev/null)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return sens_main(argv)


def main() -> None:
    records = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    with tempfile.TemporaryDirectory() as tmp:
        wtmp = Path(tmp) / "wtmp"
        subprocess.run(["utmpdump", "-r", "-o", str(wtmp)], input=build_text(records).encode(),
                       check=True, capture_output=True)
        journal = Path(tmp) / "journal.db"
        j = ["--journal", str(journal)]
        assert quiet([*j, "import", "wtmp", str(wtmp)]) == 0
        def read_journal() -> list[SensEvent]:
            with Journal(journal) as jr:
                return list(jr.query())

        t_read, events = best(read_journal)
        assert isinstance(events, list)
        env = {"TZ": "UTC", "LC_ALL": "C", "PATH": os.environ["PATH"]}

        def run_last() -> str:
            return subprocess.run(["last", "-f", str(wtmp), "-x"], capture_output=True,
                                  text=True, check=True, env=env).stdout

        t_last, out = best(run_last)
        assert isinstance(out, str)
        last_sessions = sum(1 for line in out.splitlines()
                            if line and line.split()[0] not in ("reboot", "shutdown", "runlevel")
                            and " begins " not in line)
        t_build, spans = best(lambda: build_timeline(events))
        assert isinstance(spans, list)
        t_json, _ = best(lambda: quiet([*j, "timeline", "--json"]))
        t_table, _ = best(lambda: quiet([*j, "timeline"]))
        page = Path(tmp) / "t.html"
        t_html, _ = best(lambda: quiet([*j, "timeline", "--html", str(page)]))
        page_mb = page.stat().st_size / 1e6
        # A window: the last tenth of the history (`--since`), against `last --since`.
        cut = sorted(e.time for e in events)[len(events) * 9 // 10].replace(microsecond=0)
        since = cut.strftime("%Y-%m-%d %H:%M:%S")

        def run_last_since() -> str:
            return subprocess.run(["last", "-f", str(wtmp), "-x", "--since", since],
                                  capture_output=True, text=True, check=True, env=env).stdout

        t_last_since, _ = best(run_last_since)
        t_since, _ = best(lambda: quiet([*j, "timeline", "--json", "--since",
                                         cut.isoformat()]))

    logins = sum(1 for s in spans if s.logon is not None)
    print(f"wtmp: {records:,} records, {len(events):,} SENS events in the journal, "
          f"{len(spans):,} sessions ({logins:,} with their logon; `last` lists "
          f"{last_sessions:,}); best of {REPEAT}, wall time")
    print(f"{'run':<44}{'seconds':>9}{'sessions/s':>12}{'vs last':>9}")
    rows = [
        ("last -f FILE -x > /dev/null", t_last),
        ("journal read alone (Journal.query)", t_read),
        ("build_timeline(events in memory)", t_build),
        ("sens timeline --json (journal -> lines)", t_json),
        ("sens timeline (table)", t_table),
        (f"sens timeline --html ({page_mb:.1f} MB page)", t_html),
    ]
    for name, secs in rows:
        print(f"{name:<44}{secs:>9.3f}{len(spans) / secs:>12,.0f}{secs / t_last:>8.2f}x")
    print(f"the last tenth of the history (--since {cut.isoformat()}):")
    print(f"{'last -f FILE -x --since T > /dev/null':<44}{t_last_since:>9.3f}{'':>12}"
          f"{1:>8.2f}x")
    print(f"{'sens timeline --json --since T':<44}{t_since:>9.3f}{'':>12}"
          f"{t_since / t_last_since:>8.2f}x")
    assert logins == last_sessions, (logins, last_sessions)


if __name__ == "__main__":
    main()
