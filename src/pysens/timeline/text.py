"""The text table of ``sens timeline``: one row per session, its intervals on one line."""

from __future__ import annotations

from datetime import datetime

from ..text import align, escape
from .build import SessionSpan, format_duration

__all__ = ["format_intervals", "timeline_table"]


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


def timeline_table(spans: list[SessionSpan], now: datetime | None = None) -> list[str]:
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
    lines = align(rows)
    still = sum(1 for s in spans if s.logoff is None)
    lines.append(f"\n{len(spans)} session(s), {still} still open.")
    return lines
