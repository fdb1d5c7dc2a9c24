"""``sens journal``: the journal file itself — its disk usage, retention by hand, a check of
its soundness, and every event as JSON lines."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from ..journal import Journal
from ..journal.limits import LimitError, format_size, parse_age, parse_size
from ..journal.maintenance import recover_hint, usage, verify
from ..journal.retention import Retention
from .common import BadRows, CliError, open_journal, parse_when

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add ``journal`` to the ``sens`` parser."""
    p = sub.add_parser(
        "journal", help="the journal file: disk usage, vacuum, verify, export",
        description="Look after the journal file. The daemon applies [journal] max_age and "
        "max_size by itself; `vacuum` does it now, by hand. Events a forwarder or an enabled "
        "persistent subscription has not had yet are kept, unless --max-size forces them out "
        "(then each reader's loss is counted: `sens subscriptions list`).",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    actions.add_parser("disk-usage", help="how much disk the journal takes, and its readers")
    vac = actions.add_parser("vacuum", help="delete old events now and shrink the file")
    vac.add_argument("--older-than", metavar="AGE",
                     help="delete events older than AGE (90d, 2w, 12h …)")
    vac.add_argument("--max-size", metavar="SIZE",
                     help="delete the oldest events until the file is under SIZE (500M, 2G …)")
    ver = actions.add_parser("verify", help="check every page, the schema and every event")
    ver.add_argument("--quick", action="store_true", help="SQLite's quick_check (no indexes)")
    exp = actions.add_parser("export", help="every event (or a time range) as JSON lines")
    exp.add_argument("--since", metavar="TIME", help="from TIME (ISO 8601, -2h, today …)")
    exp.add_argument("--until", metavar="TIME", help="before TIME")
    p.set_defaults(run=run)


def _time(us: int | None) -> str:
    if us is None:
        return "-"
    t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def _disk_usage(journal: Journal) -> int:
    u = usage(journal)
    print(f"Journal {u.path} takes {format_size(u.disk_bytes)} on disk (file "
          f"{format_size(u.file_bytes)}, of it free {format_size(u.free_bytes)}; -wal "
          f"{format_size(u.wal_bytes)}).")
    if u.events:
        each = (u.file_bytes - u.free_bytes) / u.events
        print(f"{u.events:,} events, seq {u.first_seq:,} to {u.last_seq:,}, {each:.0f} bytes "
              f"each; from {_time(u.oldest_us)} to {_time(u.newest_us)}.")
    else:
        print(f"No events (the next seq is {u.last_seq + 1:,}).")
    for r in u.readers:
        line = f"  {r.label}: at seq {r.seq:,}, {r.behind:,} behind"
        if not r.enabled:
            line += " (disabled: holds nothing back)"
        if r.lost:
            line += f"; lost {r.lost:,} to retention (last {r.lost_at})"
        print(line)
    return 0


def _vacuum(args: argparse.Namespace, journal: Journal) -> int:
    try:
        age = parse_age(args.older_than) if args.older_than else None
    except LimitError as e:
        raise CliError(f"--older-than: {e}", 2) from None
    try:
        size = parse_size(args.max_size) if args.max_size else None
    except LimitError as e:
        raise CliError(f"--max-size: {e}", 2) from None
    result = Retention(journal, max_age=age, max_size=size, pause=0).run()
    line = (f"sens: deleted {result.deleted:,} event(s); {format_size(result.size_before)} -> "
            f"{format_size(result.size_after)}")
    if result.forced:
        line += f"; {result.forced:,} of them not yet delivered"
    if result.kept_old:
        line += f"; {result.kept_old:,} older event(s) kept (not yet delivered)"
    print(line, file=sys.stderr)
    return 0


def _verify(args: argparse.Namespace) -> int:
    path = open_journal_path(args)
    problems = verify(path, quick=args.quick)
    if problems:
        print(f"sens: the journal {path} is damaged: {'; '.join(problems)}. "
              f"{recover_hint(path)}", file=sys.stderr)
        return 1
    print(f"sens: the journal {path} is sound", file=sys.stderr)
    return 0


def open_journal_path(args: argparse.Namespace) -> str:
    """The journal path ``--journal`` names (or the default), without opening it."""
    from ..journal import default_journal_path

    return str(getattr(args, "journal", None) or default_journal_path())


def _export(args: argparse.Namespace) -> int:
    since = parse_when(args.since) if args.since else None
    until = parse_when(args.until) if args.until else None
    bad = BadRows()
    out = sys.stdout
    with open_journal(args, reading=True) as journal:
        for e in journal.query(since=since, until=until, on_bad=bad):
            out.write(e.to_json_text() + "\n")
    out.flush()
    return bad.status()


def run(args: argparse.Namespace) -> int:
    """Run ``sens journal ACTION``."""
    if args.action == "verify":
        return _verify(args)
    if args.action == "export":
        return _export(args)
    if args.action == "disk-usage":
        with open_journal(args, reading=True) as journal:
            return _disk_usage(journal)
    with open_journal(args) as journal:
        return _vacuum(args, journal)
