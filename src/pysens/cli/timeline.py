"""``sens timeline``: one row per session with its connected / disconnected intervals."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ..events import SensEvent, format_time
from ..timeline import SESSION_METHODS, SessionSpan, build_timeline, format_duration, overlaps
from .common import CliError, compile_filter, escape, open_journal, parse_when

__all__ = ["format_intervals", "format_table", "register", "run", "select_spans"]


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
    from .collect import add_store_arguments

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


def _events(args: argparse.Namespace) -> tuple[list[SensEvent], int]:
    """The events to build from, and how many could not be read (already reported)."""
    # With --since, only the sessions that can overlap the window are read: a long journal
    # or store is not decoded whole (each kept session still comes whole, its real logon too).
    names = [str(m) for m in SESSION_METHODS]
    since = parse_when(args.since) if args.since else None
    until = parse_when(args.until) if args.until else None
    if args.store:
        from .collect import open_store_arg, store_events

        if since is None:
            return store_events(args)
        bad: list[str] = []

        def on_bad(message: str) -> None:
            bad.append(message)
            print(f"sens: {message}", file=sys.stderr)

        with open_store_arg(args.store) as store:
            return list(store.session_events(names, since, until, hosts=args.host,
                                             on_bad=on_bad)), len(bad)
    with open_journal(args, reading=True) as journal:
        if since is not None:
            return list(journal.session_events(names, since, until)), 0
        return list(journal.query()), 0


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
        _write_html(args.html, spans, now)
    if args.json:
        out = sys.stdout
        for s in spans:
            out.write(json.dumps(s.to_json(), ensure_ascii=False) + "\n")
        out.flush()
    elif not args.html:
        print("\n".join(format_table(spans, now)))
    if bad:
        print(f"sens: {bad} stored event(s) could not be read", file=sys.stderr)
        return 1
    return 0


def _write_html(target: str, spans: list[SessionSpan], now: datetime) -> None:
    from ..timeline_html import render_html

    page = render_html(spans, now=now)
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


def _clock(t: datetime, day: datetime) -> str:
    days = (t.date() - day.date()).days
    return t.strftime("%H:%M") + (f"(+{days}d)" if days else "")


def format_intervals(span: SessionSpan) -> str:
    """``connected 10:00-10:30 (1.2.3.4), disconnected 10:30-11:00, connected 11:00-…`` and
    how it ended (``; logoff: reboot, synthesized``)."""
    parts = []
    for i in span.intervals:
        text = f"{i.state} {_clock(i.start, span.start)}-"
        text += "…" if i.end is None else _clock(i.end, span.start)
        client = i.client_address or i.client_name
        if client:
            text += f" ({escape(client)})"
        parts.append(text)
    out = ", ".join(parts)
    if span.logoff is not None and (span.logoff_reason or span.synthesized):
        why = [escape(span.logoff_reason)] if span.logoff_reason else []
        if span.synthesized:
            why.append("synthesized")
        out += f"{'; ' if out else ''}logoff: {', '.join(why)}"
    return out


def format_table(spans: list[SessionSpan], now: datetime | None = None) -> list[str]:
    """The rows of the human table, header first, then a count line."""
    head = ["HOST", "USER", "SESSION", "LOGON", "LOGOFF", "DURATION", "INTERVALS"]
    rows = [head]
    for s in spans:
        user = f"{s.domain}\\{s.user_name}" if s.domain else s.user_name
        duration = s.duration(now)
        dur = "-" if duration is None else format_duration(duration)
        if s.logon is None:
            dur = ">" + dur  # began before the journal shows it
        if s.logoff is None and duration is not None:
            dur += "+"
        rows.append([
            escape(s.host), escape(user), escape(s.session_id or s.tty or s.logon_id),
            "-" if s.logon is None else s.logon.strftime("%Y-%m-%d %H:%M:%S"),
            "still open" if s.logoff is None else s.logoff.strftime("%Y-%m-%d %H:%M:%S"),
            dur, format_intervals(s),
        ])
    widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    still = sum(1 for s in spans if s.logoff is None)
    lines.append(f"\n{len(spans)} session(s), {still} still open.")
    return lines
