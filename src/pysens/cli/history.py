"""``sens history``: events from the journal (or the fleet's store), like ``journalctl``."""

from __future__ import annotations

import argparse
from typing import Any

from .common import (
    BadRows,
    add_store_arguments,
    compile_filter,
    open_reader,
    parse_when,
    print_event,
    select_hosts,
)

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add ``history`` to the ``sens`` parser."""
    p = sub.add_parser(
        "history", help="events from the journal",
        description="Print journaled events in order. Times: ISO 8601, now, today, yesterday, "
        "or relative (-30m, -2h, -7d).",
    )
    p.add_argument("--since", type=str, metavar="T", help="only events at or after T")
    p.add_argument("--until", type=str, metavar="T", help="only events before T")
    p.add_argument("--filter", metavar="CRITERIA", help="MS-COMEV filter criteria")
    p.add_argument("-n", "--limit", type=int, metavar="N", help="at most N events")
    p.add_argument("--json", action="store_true", help="one JSON event object per line")
    add_store_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``sens history``."""
    where = compile_filter(args.filter)
    since = parse_when(args.since) if args.since else None
    until = parse_when(args.until) if args.until else None
    bad = BadRows()
    with open_reader(args) as reader:
        hosts = select_hosts(reader, args.host)
        for event in reader.query(since=since, until=until, hosts=hosts, where=where,
                                  limit=args.limit, on_bad=bad):
            print_event(event, args.json)
    return bad.status()
