"""``sens watch``: live events as they happen."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from ..events import EventClass
from ..live import awatch
from ..sources import CLASS_SOURCES, Source, SourceUnavailable, choose_source, live_names
from ..sources.replay import LineError
from .common import CliError, compile_filter, print_event

__all__ = [
    "add_utmp_option",
    "class_criteria",
    "open_chosen_source",
    "register",
    "run",
    "utmp_options",
]

log = logging.getLogger("pysens.cli")


def register(sub: Any) -> None:
    """Add ``watch`` to the ``sens`` parser."""
    p = sub.add_parser(
        "watch", help="show logon, disconnect, network and power events as they happen",
        description="Show SENS events as they happen: logon, logoff, disconnect, reconnect, "
        "lock (ISensLogon2, ISensLogon), connections made and lost, destinations reachable "
        "(ISensNetwork), AC and battery (ISensOnNow). With --source auto, pysens watches what "
        "this host has (logind, else utmp, WTS on Windows; rtnetlink and NetworkManager; "
        "UPower, else sysfs) and says which on stderr; a running `sens serve` is watched "
        "instead when there is one. A FILE.jsonl (or -) replays events written as JSON lines.",
    )
    p.add_argument("--source", default="auto",
                   metavar="auto|logind|utmp|wts|network|power|FILE.jsonl",
                   help="where events come from (default: auto)")
    p.add_argument("--class", dest="classes", action="append", metavar="CLASS",
                   type=_event_class,
                   help="only this event class: ISensLogon2, ISensLogon, ISensNetwork or "
                   "ISensOnNow (repeatable; default: all four)")
    p.add_argument("--filter", metavar="CRITERIA",
                   help="MS-COMEV filter, e.g. \"bstrUserName = 'alice' AND NOT remote = TRUE\"")
    p.add_argument("--json", action="store_true", help="one JSON event object per line")
    p.add_argument("--include-existing", action="store_true",
                   help="fire Logon for sessions already open when watching starts")
    add_utmp_option(p)
    p.set_defaults(run=run)


def _event_class(text: str) -> EventClass:
    for c in EventClass:
        if c.value.lower() == text.lower():
            return c
    raise argparse.ArgumentTypeError(
        f"unknown event class {text!r} (ISensLogon2, ISensLogon, ISensNetwork, ISensOnNow)")


def class_criteria(classes: list[EventClass] | None, text: str | None) -> str | None:
    """``--filter`` text narrowed to ``--class`` (for a daemon, which takes one criteria)."""
    if not classes:
        return text
    only = " OR ".join(f"classes = '{c.value}'" for c in classes)
    return f"({only})" + (f" AND ({text})" if text else "")


def add_utmp_option(p: Any) -> None:
    """``--utmp PATH``: the utmp source reading PATH (implies ``--source utmp``)."""
    p.add_argument("--utmp", metavar="PATH",
                   help="read this utmp file instead of /run/utmp (implies --source utmp)")


def utmp_options(args: argparse.Namespace) -> dict[str, Any]:
    """The utmp source's options (``--utmp`` also sets ``args.source`` to ``utmp``): its
    file, and skipped-record warnings straight to stderr."""
    if getattr(args, "utmp", None) is not None:
        if args.source not in ("auto", "utmp"):
            raise CliError("--utmp goes with --source utmp", 2)
        args.source = "utmp"
    if args.source != "utmp":
        return {}
    options: dict[str, Any] = {"on_warning": lambda m: print(f"sens: {m}", file=sys.stderr)}
    if args.utmp is not None:
        options["path"] = args.utmp
    return options


async def open_chosen_source(name: str, **options: Any) -> Source:
    """The source ``name`` names; ``auto`` detects one and says which on stderr."""
    if name == "replay":
        raise CliError("'replay' is not a source by itself: give the JSON-lines file to replay "
                       "(--source FILE.jsonl, or - for stdin)", 2)
    try:
        source, name, why = await choose_source(name, **options)
    except SourceUnavailable as e:
        raise CliError(str(e)) from None
    if why is not None:
        print(f"sens: watching {name} ({why})", file=sys.stderr)
    return source


async def _watch(args: argparse.Namespace) -> int:
    compile_filter(args.filter)  # a bad filter is exit 2 before anything else
    errors: list[LineError] = []

    def bad_line(e: LineError) -> None:
        errors.append(e)
        print(f"sens: {e}; line skipped", file=sys.stderr)

    def started(name: str, why: str | None) -> None:
        if why is None:
            return
        if why.startswith("not available: "):
            # A class asked for by name and missing here is news; otherwise, on a server
            # without a battery, the missing power source is only a detail.
            wanted = name in {"network", "power"} and args.classes and any(
                CLASS_SOURCES.get(c) == name for c in args.classes)
            if wanted or name == "logon":
                print(f"sens: not watching {name}: {why.removeprefix('not available: ')}",
                      file=sys.stderr)
            else:
                log.info("not watching %s: %s", name, why.removeprefix("not available: "))
            return
        print(f"sens: watching {name} ({why})", file=sys.stderr)

    options: dict[str, Any] = utmp_options(args)
    if args.source not in (*live_names(), "auto") or args.source == "replay":
        options["on_error"] = bad_line
    if args.source == "replay":
        raise CliError("'replay' is not a source by itself: give the JSON-lines file to replay "
                       "(--source FILE.jsonl, or - for stdin)", 2)
    try:
        async for event in awatch(args.source, classes=args.classes, criteria=args.filter,
                                  include_existing=args.include_existing, on_start=started,
                                  **options):
            print_event(event, args.json)
    except SourceUnavailable as e:
        raise CliError(str(e)) from None
    if errors:
        raise CliError(f"{len(errors)} line(s) skipped as malformed")
    return 0


def _watch_daemon(args: argparse.Namespace) -> int | None:
    """Watch through a running daemon (``sens serve``); None when none answers."""
    from ..daemon import DaemonClient, DaemonError

    compile_filter(args.filter)  # a bad filter is exit 2 before anything else
    client = DaemonClient.connect()
    if client is None:
        return None
    print(f"sens: watching through the daemon on {client.path}", file=sys.stderr)
    with client:
        try:
            for event in client.watch(class_criteria(args.classes, args.filter)):
                print_event(event, args.json)
        except DaemonError as e:
            raise CliError(str(e), e.status) from None
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``sens watch``."""
    from ..events import EventError

    try:
        if args.source == "auto" and not args.include_existing and args.utmp is None:
            status = _watch_daemon(args)
            if status is not None:
                return status
        return asyncio.run(_watch(args))
    except EventError as e:
        raise CliError(str(e)) from None
