"""``sens import``: historical records (wtmp, utmp, wtmpdb, .evtx, JSONL) into the journal."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..events import SensEvent
from ..importer import Importer
from ..sources import history_names
from .common import escape, open_journal, print_event

__all__ = ["progress_text", "register", "run"]

# Bad-record sentences printed per run; the rest are only counted (a file of garbage would
# otherwise flood the terminal).
_MAX_MESSAGES = 20
_VERBOSE_EVERY = 100_000


def register(sub: Any) -> None:
    """Add ``import`` to the ``sens`` parser."""
    p = sub.add_parser(
        "import", help="historical records into the journal",
        description="Read login history (wtmp/utmp files, a wtmpdb database, Windows .evtx "
        "logs, or event JSON lines) through the SENS rules into the journal. Importing a file "
        "again adds nothing. Imported events are history: persistent subscriptions are not "
        "sent them unless --deliver.",
    )
    p.add_argument("kind", choices=history_names(), help="what the files are")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files to read (rotated wtmp "
                   "files are read oldest first)")
    p.add_argument("--json", action="store_true", help="also print the events, one JSON event "
                   "JSON object per line")
    p.add_argument("--deliver", action="store_true", help="deliver the imported events to "
                   "persistent subscriptions as if live")
    p.add_argument("--host", metavar="NAME", help="host of records that name none (wtmp, "
                   "wtmpdb); default this machine")
    p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                   help=f"report progress every {_VERBOSE_EVERY:,} records")
    p.set_defaults(run=run)


def progress_text(records: int, fraction: float | None, width: int = 24) -> str:
    """``[#########...............]  38%  120,000 records`` (a bar when the reader can tell how
    far through the file it is, else the count alone)."""
    if fraction is None:
        return f"{records:,} records"
    done = round(max(0.0, min(fraction, 1.0)) * width)
    return f"[{'#' * done}{'.' * (width - done)}] {fraction:4.0%}  {records:,} records"


class _Reporter:
    """Error sentences and progress on stderr."""

    def __init__(self, verbose: bool) -> None:
        self.tty = sys.stderr.isatty()
        self.verbose = verbose
        self.printed = 0
        self.suppressed = 0
        self._last = 0.0
        self._shown = False

    def error(self, message: str) -> None:
        if self.printed >= _MAX_MESSAGES:
            self.suppressed += 1
            return
        self.printed += 1
        self._clear()
        print(f"sens: {message}", file=sys.stderr)

    def progress(self, path: str, records: int, fraction: float | None) -> None:
        if self.tty:
            now = time.monotonic()
            if now - self._last >= 0.2:
                self._last = now
                sys.stderr.write(f"\r\033[Ksens import: {escape(path)}: "
                                 f"{progress_text(records, fraction)}")
                sys.stderr.flush()
                self._shown = True
        elif self.verbose and records % _VERBOSE_EVERY == 0:
            pct = "" if fraction is None else f" ({fraction:.0%})"
            print(f"sens import: {escape(path)}: {records:,} records{pct}", file=sys.stderr)

    def _clear(self) -> None:
        if self._shown:
            sys.stderr.write("\r\033[K")
            self._shown = False

    def done(self) -> None:
        self._clear()
        if self.suppressed:
            print(f"sens: … and {self.suppressed} more problems like these", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run ``sens import``."""
    verbose = bool(getattr(args, "verbose", 0))
    reporter = _Reporter(verbose)

    def show(events: list[SensEvent]) -> None:
        for e in events:
            print_event(e, True)

    with open_journal(args) as journal:
        importer = Importer(
            journal, host=args.host, deliver=args.deliver,
            on_events=show if args.json else None, on_error=reporter.error,
            on_progress=reporter.progress,
            progress_every=10_000 if reporter.tty else _VERBOSE_EVERY,
        )
        try:
            summary = importer.import_files(args.kind, args.paths)
        finally:
            reporter.done()
    print(f"sens: {summary.line()}", file=sys.stderr)
    return 0 if summary.ok else 1
