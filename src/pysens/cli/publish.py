"""``sens publish``: fire events by hand, as a SENS publisher does."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..events import EventError, SensEvent, parse_method, parse_time
from ..sources.replay import LineError, read_events
from .common import CliError, open_journal

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add ``publish`` to the ``sens`` parser."""
    p = sub.add_parser(
        "publish", help="fire one event by hand, or many from JSON lines",
        description="Publish events as live events: journaled (exit 0 once every one is), then "
        "delivered to subscribers. Publishing the same ids again adds nothing.",
    )
    p.add_argument("method", nargs="?", metavar="METHOD", help="Logon, Logoff, SessionReconnect …")
    p.add_argument("--json", metavar="FILE|-", dest="json_file",
                   help="publish the events of a JSON-lines file (one event object a line; - for "
                   "stdin)")
    p.add_argument("--user", help="the user name (DOMAIN\\user splits into domain and user)")
    p.add_argument("--session", help="the session id")
    p.add_argument("--host", help="the host (default: this one)")
    p.add_argument("--time", help="when it happened (ISO 8601; default: now)")
    p.add_argument("--client-address", help="the remote client's address")
    p.add_argument("--client-name", help="the remote client's name")
    p.add_argument("--remote", action="store_true", help="a remote session")
    p.add_argument("--reason", help="why (for Logoff, SessionDisconnect)")
    p.set_defaults(run=run)


def _one(args: argparse.Namespace) -> SensEvent:
    if args.user is None:
        raise CliError("publish METHOD needs --user", 2)
    try:
        method = parse_method(args.method)
    except EventError as e:
        raise CliError(str(e), 2) from None
    domain, _, user = args.user.rpartition("\\")
    if not user.strip():
        raise CliError(f"--user {args.user!r} has no user name", 2)
    kw: dict[str, Any] = {}
    if args.time:
        try:
            kw["time"] = parse_time(args.time)
        except EventError as e:
            raise CliError(str(e), 2) from None
    if args.host:
        kw["host"] = args.host
    return SensEvent(
        method=method, user_name=user, domain=domain or None, session_id=args.session,
        source="publish", client_address=args.client_address, client_name=args.client_name,
        remote=args.remote or bool(args.client_address), reason=args.reason, **kw,
    )


def _publish_daemon(args: argparse.Namespace, events: list[SensEvent]) -> tuple[int, int] | None:
    """Publish through a running daemon (which journals, then delivers); ``(new, already)``,
    or None when no daemon answers, or it serves another journal than ``--journal``."""
    from pathlib import Path

    from ..daemon import DaemonClient, DaemonError

    client = DaemonClient.connect()
    if client is None:
        return None
    new = already = 0
    with client:
        try:
            hello = client.request({"op": "hello"})
            journal = getattr(args, "journal", None)
            if journal and Path(journal).absolute() != Path(str(hello.get("journal"))):
                return None
            for i in range(0, len(events), 1000):
                reply = client.request(
                    {"op": "publish", "events": [e.to_json() for e in events[i : i + 1000]]})
                new += int(reply["published"])
                already += int(reply["already"])
        except DaemonError as e:
            raise CliError(f"{e} ({new} event(s) journaled before that)", e.status) from None
    return new, already


def run(args: argparse.Namespace) -> int:
    """Run ``sens publish``."""
    if (args.method is None) == (args.json_file is None):
        raise CliError("give either METHOD --user U, or --json FILE|-", 2)
    errors: list[LineError] = []

    def bad(e: LineError) -> None:
        errors.append(e)
        print(f"sens: {e}; line skipped", file=sys.stderr)

    if args.json_file is not None:
        name = "<stdin>" if args.json_file == "-" else args.json_file
        try:
            stream = sys.stdin if args.json_file == "-" else open(  # noqa: SIM115
                args.json_file, encoding="utf-8", errors="surrogateescape")
        except OSError as e:
            raise CliError(f"cannot read {args.json_file}: {e.strerror}") from None
        # Bytes that are not UTF-8 come through as lone surrogates, which the event refuses
        # (one line naming the line and field), as on stdin: never silently replaced.
        with stream:
            events = list(read_events(stream, name, bad))
    else:
        events = [_one(args)]
    via_daemon = _publish_daemon(args, events)
    if via_daemon is not None:
        new, already = via_daemon
    else:
        with open_journal(args) as journal:
            results = []
            for i in range(0, len(events), 1000):
                results.extend(journal.append_many(events[i : i + 1000]))
        new = sum(r.inserted for r in results)
        already = len(results) - new
    print(f"sens: published {new} event(s); {already} already journaled",
          file=sys.stderr)
    if errors:
        raise CliError(f"{len(errors)} line(s) skipped as malformed")
    return 0
