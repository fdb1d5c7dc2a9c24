"""What the ``sens`` commands share: errors, the journal, filters and printing."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import NoReturn, TextIO

from ..events import EventError, SensEvent, format_time, parse_time
from ..journal import Journal, JournalError

__all__ = [
    "CliError",
    "SensArgumentParser",
    "compile_filter",
    "escape",
    "event_line",
    "open_journal",
    "parse_when",
    "print_event",
]


class CliError(Exception):
    """A failure to report as one sentence; ``status`` is the exit code (1, or 2 for usage)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class SensArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line usage error (no usage dump on stderr for a typo)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def open_journal(args: argparse.Namespace, *, reading: bool = False) -> Journal:
    """The journal named by ``--journal`` (or the default), or a CliError saying why not.

    ``reading``: a command that only reads falls back to opening the journal read-only, so
    that someone who may read the file (not write beside it) can still look at it."""
    path = getattr(args, "journal", None)
    try:
        return Journal(path)
    except JournalError as e:
        if reading:
            try:
                return Journal(path, readonly=True)
            except JournalError:
                pass
        raise CliError(str(e)) from None


def compile_filter(text: str | None) -> Callable[[SensEvent], bool] | None:
    """A ``--filter`` string compiled into a predicate; a bad one is a usage error (exit 2)."""
    if text is None:
        return None
    from ..criteria import CriteriaError, compile_criteria

    try:
        return compile_criteria(text).matches
    except CriteriaError as e:
        raise CliError(f"bad filter: {e}", 2) from None


def parse_when(text: str) -> datetime:
    """A time for ``--since`` / ``--until``: ISO 8601, ``now``, ``today``, or ``-2h``/``-3d``."""
    t = text.strip().lower()
    now = datetime.now(UTC)
    if t == "now":
        return now
    if t in ("today", "yesterday"):
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return day - timedelta(days=1) if t == "yesterday" else day
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if t[:1] == "-" and t[-1:] in units and t[1:-1].isdigit():
        return now - timedelta(seconds=int(t[1:-1]) * units[t[-1]])
    try:
        return parse_time(text)
    except EventError:
        raise CliError(
            f"cannot read the time {text!r}: give ISO 8601 (2026-11-23T20:00), now, today, "
            "yesterday, or -30m / -2h / -7d",
            2,
        ) from None


def escape(value: object) -> str:
    """Printable text for a terminal: control characters shown as escapes, never interpreted."""
    s = "-" if value is None else str(value)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def event_line(e: SensEvent) -> str:
    """One human-readable line for an event (like ``journalctl``'s short output)."""
    who = escape(e.user_name)
    if e.domain:
        who = f"{escape(e.domain)}\\{who}"
    parts = [format_time(e.time)[:-8] + "Z", escape(e.host), f"{e.method!s:<17}", who]
    parts.append(f"session={escape(e.session_id)}")
    for label, value in (("tty", e.tty), ("seat", e.seat), ("from", e.client_address or (
            e.client_name if e.remote else None)), ("reason", e.reason)):
        if value:
            parts.append(f"{label}={escape(value)}")
    if e.synthesized:
        parts.append("(synthesized)")
    return " ".join(parts)


def print_event(e: SensEvent, as_json: bool, out: TextIO | None = None) -> None:
    """Print ``e`` as a JSON line (SPEC §2) or as a human line, and flush (for pipes)."""
    stream = out or sys.stdout
    stream.write((json.dumps(e.to_json(), ensure_ascii=False) if as_json else event_line(e)) + "\n")
    stream.flush()
