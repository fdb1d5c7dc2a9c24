"""``sens history``: events from the journal, like ``journalctl``."""

from __future__ import annotations

import argparse
from typing import Any

from ..events import SensEvent
from .common import compile_filter, open_journal, parse_when, print_event

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
    p.add_argument("--json", action="store_true", help="one SPEC §2 JSON object per line")
    from .collect import add_store_arguments

    add_store_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``sens history``."""
    if args.store:
        from .collect import store_history

        return store_history(args)
    where = compile_filter(args.filter)
    if args.host:
        # A local journal holds other hosts' events too (imported .evtx, jsonl): --host works here.
        hosts = {h.casefold() for h in args.host}
        criteria = where

        def where(e: SensEvent) -> bool:
            return e.host.casefold() in hosts and (criteria is None or criteria(e))

    since = parse_when(args.since) if args.since else None
    until = parse_when(args.until) if args.until else None
    with open_journal(args, reading=True) as journal:
        for event in journal.query(since=since, until=until, where=where, limit=args.limit):
            print_event(event, args.json)
    return 0
