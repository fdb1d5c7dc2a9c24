"""What the ``sens`` commands share: errors, where events are read from (the journal or the
fleet's store), filters, times and printing."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from ..events import EventError, SensEvent, fold_name, parse_time
from ..journal import EventReader, Journal, JournalError, default_journal_path
from ..text import escape, event_line

if TYPE_CHECKING:
    from ..fleet.store import Store

__all__ = [
    "BadRows",
    "CliError",
    "SensArgumentParser",
    "add_store_arguments",
    "compile_filter",
    "default_store_url",
    "escape",
    "event_line",
    "open_journal",
    "open_reader",
    "open_store_arg",
    "parse_when",
    "print_event",
    "select_hosts",
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


def ask_daemon(op: str) -> dict[str, Any] | None:
    """The running daemon's answer to ``{"op": op}``, or None when no daemon runs (or an
    older one does not know ``op``): the command then looks at the host itself."""
    from ..daemon import DaemonClient, DaemonError

    client = DaemonClient.connect()
    if client is None:
        return None
    with client:
        try:
            return client.request({"op": op})
        except DaemonError as e:
            if "unknown op" in str(e):
                return None
            raise CliError(str(e), e.status) from None


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


def default_store_url() -> str:
    """``sqlite:///`` + ``fleet.db`` beside the default journal."""
    return f"sqlite:///{Path(default_journal_path()).parent / 'fleet.db'}"


def open_store_arg(url: str) -> Store:
    """The store a ``--store URL`` names, or a CliError saying why not."""
    from ..fleet.store import StoreError, open_store

    try:
        return open_store(url)
    except StoreError as e:
        raise CliError(str(e)) from None


def add_store_arguments(p: argparse.ArgumentParser) -> None:
    """``--store URL`` and ``--host H`` for a command that can read the central store."""
    p.add_argument("--store", metavar="URL",
                   help="read the fleet's central store (sqlite:///PATH or postgresql://…) "
                   "instead of this host's journal")
    p.add_argument("--host", action="append", default=[], metavar="H",
                   help="only host H (repeatable; any case)")


def open_reader(args: argparse.Namespace) -> EventReader:
    """Where a read command takes its events from: the central store with ``--store``, else
    this host's journal (read-only when it may not be written)."""
    if getattr(args, "store", None):
        return open_store_arg(args.store)
    return open_journal(args, reading=True)


def select_hosts(reader: EventReader, names: list[str]) -> list[str]:
    """The hosts ``--host`` names, as the reader spells them (host names ignore case)."""
    if not names:
        return []
    known = {fold_name(h): h for h in reader.hosts()}
    return [known.get(fold_name(n), n) for n in names]


class BadRows:
    """The ``on_bad`` of a read: each unreadable stored event said on stderr, and counted."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, message: str) -> None:
        self.count += 1
        print(f"sens: {message}", file=sys.stderr)

    def status(self) -> int:
        """0, or 1 (after one summary line) when some events could not be read."""
        if not self.count:
            return 0
        print(f"sens: {self.count} stored event(s) could not be read", file=sys.stderr)
        return 1


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


def print_event(e: SensEvent, as_json: bool, out: TextIO | None = None) -> None:
    """Print ``e`` as a JSON line (docs/events.md) or as a human line, and flush (for pipes)."""
    stream = out or sys.stdout
    stream.write((json.dumps(e.to_json(), ensure_ascii=False) if as_json else event_line(e)) + "\n")
    stream.flush()
