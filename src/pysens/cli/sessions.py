"""``sens sessions``: the sessions open now, like ``loginctl list-sessions``."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from ..live import snapshot_sessions
from ..sources import SourceUnavailable
from ..text import align, escape
from ..tracker import OpenSession, Tracker
from .common import (
    CliError,
    add_store_arguments,
    open_store_arg,
    select_hosts,
)
from .watch import add_utmp_option, open_chosen_source, utmp_options

__all__ = ["register", "run", "sessions_table"]


def register(sub: Any) -> None:
    """Add ``sessions`` to the ``sens`` parser."""
    p = sub.add_parser(
        "sessions", help="the sessions open now, with their state",
        description="List the sessions open now: id, user, state (active / disconnected / "
        "locked), type, tty or seat, remote host, since.",
    )
    p.add_argument("--source", default="auto", metavar="auto|logind|utmp|wts",
                   help="where to look (default: auto)")
    p.add_argument("--json", action="store_true", help="one JSON object per session")
    add_store_arguments(p)
    add_utmp_option(p)
    p.set_defaults(run=run)


def sessions_table(sessions: list[OpenSession], *, with_host: bool = False) -> list[str]:
    """The rows of the human table, header first."""
    head = ["SESSION", "USER", "STATE", "TYPE", "TTY/SEAT", "FROM", "SINCE"]
    if with_host:
        head.insert(0, "HOST")
    rows = [head]
    for s in sessions:
        i = s.info
        user = f"{i.domain}\\{i.user_name}" if i.domain else i.user_name
        row = [i.session_id, user, s.state, i.session_type, i.tty or i.seat,
               i.client_address or i.client_name, s.since.strftime("%Y-%m-%d %H:%M:%S")]
        if with_host:
            row.insert(0, s.host)
        rows.append([escape(v) for v in row])
    lines = align(rows)
    lines.append(f"\n{len(sessions)} session(s) listed.")
    return lines


async def _sessions(args: argparse.Namespace) -> int:
    options = utmp_options(args)  # before args.source is read: --utmp implies utmp
    source = await open_chosen_source(args.source, **options)
    try:
        tracker = await snapshot_sessions(source, Tracker())
    except SourceUnavailable as e:
        raise CliError(str(e)) from None
    finally:
        await source.aclose()
    if args.json:
        for s in tracker.sessions:
            print(json.dumps(s.to_json(), ensure_ascii=False))
    else:
        print("\n".join(sessions_table(tracker.sessions)))
    skipped = len(getattr(source, "warnings", ()))  # bad records the source reported
    if skipped:
        raise CliError(f"{skipped} record(s) skipped as malformed")
    return 0


def _sessions_daemon(args: argparse.Namespace) -> int | None:
    """The session table of a running daemon (``sens serve``); None when none answers."""
    from ..daemon import DaemonClient, DaemonError

    client = DaemonClient.connect()
    if client is None:
        return None
    with client:
        try:
            rows = client.request({"op": "sessions"})["sessions"]
        except DaemonError as e:
            raise CliError(str(e), e.status) from None
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return 0
    print("\n".join(sessions_table([OpenSession.from_json(row) for row in rows])))
    return 0


def _store_sessions(args: argparse.Namespace) -> int:
    """The sessions open now across the fleet, as the events in the store leave them (the
    store keeps each session's state beside its events: one indexed read for any fleet)."""
    with open_store_arg(args.store) as store:
        sessions = store.open_sessions(select_hosts(store, args.host))
    if args.json:
        for s in sessions:
            print(json.dumps(s.to_json(), ensure_ascii=False))
    else:
        print("\n".join(sessions_table(sessions, with_host=True)))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``sens sessions``."""
    if args.store:
        return _store_sessions(args)
    if args.source == "auto" and args.utmp is None:
        status = _sessions_daemon(args)
        if status is not None:
            return status
    return asyncio.run(_sessions(args))
