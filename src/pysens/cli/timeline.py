"""``sens timeline``: one row per session with its connected / disconnected intervals."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ..events import SensEvent, format_time
from ..timeline import (
    LANE_METHODS,
    SESSION_METHODS,
    SessionSpan,
    build_timeline,
    overlaps,
    timeline_table,
)
from .common import (
    BadRows,
    CliError,
    add_store_arguments,
    compile_filter,
    open_reader,
    parse_when,
    select_hosts,
)

__all__ = ["register", "run", "select_spans"]


def register(sub: Any) -> None:
    """Add ``timeline`` to the ``sens`` parser."""
    p = sub.add_parser(
        "timeline", help="one row per session: logon, logoff, connected / disconnected intervals",
        description="One row per session from the journal: logon, logoff (and why), duration "
        "and its connected / disconnected intervals with the client of each connection. "
        "--since/--until keep the sessions open at some time in that window (shown whole); "
        "--filter keeps the sessions one of whose events matches. Times are UTC.",
    )
    p.add_argument("--since", metavar="T", help="only sessions still open at or after T")
    p.add_argument("--until", metavar="T", help="only sessions begun before T")
    p.add_argument("--filter", metavar="CRITERIA",
                   help="MS-COMEV criteria: sessions with a matching event")
    p.add_argument("--json", action="store_true", help="one JSON object per session per line")
    p.add_argument("--html", metavar="FILE",
                   help="write a self-contained HTML page (bars on a time axis) to FILE ('-' = "
                   "stdout)")
    add_store_arguments(p)
    p.set_defaults(run=run)


def select_spans(
    events: Iterable[SensEvent], args: argparse.Namespace
) -> list[SessionSpan]:
    """The sessions ``--filter``, ``--since`` and ``--until`` select from ``events``.

    The events are read whole (a session that began before ``--since`` keeps its real logon);
    the window then picks the sessions that overlap it.
    """
    where = compile_filter(args.filter)
    since = parse_when(args.since) if args.since else None
    until = parse_when(args.until) if args.until else None
    return [s for s in build_timeline(events, where=where) if overlaps(s, since, until)]


def _events(args: argparse.Namespace) -> tuple[list[SensEvent], BadRows]:
    """The events to build from, and the count of those that could not be read (each already
    reported)."""
    # With --since, only the sessions that can overlap the window are read: a long journal
    # or store is not decoded whole (each kept session still comes whole, its real logon too).
    names = [str(m) for m in SESSION_METHODS]
    since = parse_when(args.since) if args.since else None
    until = parse_when(args.until) if args.until else None
    bad = BadRows()
    with open_reader(args) as reader:
        hosts = select_hosts(reader, args.host)
        if since is not None:
            return list(reader.session_events(names, since, until, hosts=hosts,
                                              on_bad=bad)), bad
        return list(reader.query(hosts=hosts, on_bad=bad)), bad


def run(args: argparse.Namespace) -> int:
    """Run ``sens timeline``."""
    compile_filter(args.filter)  # a bad filter or time is a usage error before any reading
    # Relative times ("-2h") fixed once, so that reading and selecting use the same window.
    if args.since:
        args.since = format_time(parse_when(args.since))
    if args.until:
        args.until = format_time(parse_when(args.until))
    events, bad = _events(args)
    spans = select_spans(events, args)
    now = datetime.now(UTC)
    if args.html:
        _write_html(args.html, spans, now, _lanes(args, events, bad))
    if args.json:
        out = sys.stdout
        for s in spans:
            out.write(json.dumps(s.to_json(), ensure_ascii=False) + "\n")
        out.flush()
    elif not args.html:
        print("\n".join(timeline_table(spans, now)))
    return bad.status()


def _lanes(args: argparse.Namespace, events: list[SensEvent], bad: BadRows) -> list[SensEvent]:
    """The network and power events the page draws in each host's lane: those already read
    (a whole read), else the window's own (with --since, only the sessions were read)."""
    if not args.since:
        return [e for e in events if e.method in LANE_METHODS]
    lanes = [str(m) for m in LANE_METHODS]
    with open_reader(args) as reader:
        return list(reader.query(since=parse_when(args.since),
                                 until=parse_when(args.until) if args.until else None,
                                 hosts=select_hosts(reader, args.host),
                                 where=lambda e: str(e.method) in lanes, on_bad=bad))


def _write_html(target: str, spans: list[SessionSpan], now: datetime,
                lanes: list[SensEvent]) -> None:
    from ..timeline.html import render_html

    page = render_html(spans, now=now, lanes=lanes)
    if target == "-":
        sys.stdout.write(page)
        sys.stdout.flush()
        return
    try:
        with open(target, "w", encoding="utf-8") as f:
            f.write(page)
    except OSError as e:
        raise CliError(f"cannot write {target}: {e.strerror or e}") from None
    print(f"sens: wrote {len(spans)} session(s) to {target}", file=sys.stderr)
