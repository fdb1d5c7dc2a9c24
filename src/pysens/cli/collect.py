"""``sens collect nats://… --store URL``: the fleet's central consumer (SPEC §5)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from ..journal import default_journal_path
from ..store import Store, StoreError, open_store
from .common import CliError

__all__ = [
    "add_store_arguments",
    "default_store_url",
    "open_store_arg",
    "register",
    "run",
    "store_events",
    "store_history",
    "store_sessions",
]


def default_store_url() -> str:
    """``sqlite:///`` + ``fleet.db`` beside the default journal."""
    return f"sqlite:///{Path(default_journal_path()).parent / 'fleet.db'}"


def open_store_arg(url: str) -> Store:
    """The store a ``--store URL`` names, or a CliError saying why not."""
    try:
        return open_store(url)
    except StoreError as e:
        raise CliError(str(e)) from None


def register(sub: Any) -> None:
    """Add ``collect`` to the ``sens`` parser."""
    p = sub.add_parser(
        "collect", help="the fleet's central consumer: NATS JetStream -> a central store",
        description="Consume every host's events from the NATS JetStream stream the forwarders "
        "fill (a durable pull consumer) into a central store, each event once: insert-or-ignore "
        "by event id, acknowledged after the commit. Messages that are not pysens events are "
        "kept aside in the store's rejected table. Runs until interrupted.",
    )
    p.add_argument("url", metavar="nats://HOST:PORT", help="the NATS server")
    p.add_argument("--store", metavar="URL", default=None,
                   help="sqlite:///PATH or postgresql://user@host/db (default: fleet.db beside "
                   "the journal)")
    p.add_argument("--stream", default="SENS", help="the JetStream stream (default: SENS)")
    p.add_argument("--durable", default="sens-collector",
                   help="the durable consumer name (default: sens-collector)")
    p.add_argument("--subject", metavar="SUBJECT",
                   help="only these subjects (default: sens.>, e.g. 'sens.*.Logon')")
    p.add_argument("--batch", type=int, default=1000, metavar="N",
                   help="messages fetched and committed together (default: 1000)")
    p.add_argument("--exit-idle", type=float, metavar="SECONDS",
                   help="exit once nothing new has come for SECONDS (default: run until "
                   "interrupted)")
    p.set_defaults(run=run)


async def _collect(args: argparse.Namespace, store: Store) -> int:
    from ..collector import Collector

    if args.batch < 1:
        raise CliError("--batch must be at least 1", 2)
    collector = Collector(args.url, store, stream=args.stream, durable=args.durable,
                          subject=args.subject, batch=args.batch, exit_idle=args.exit_idle)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(collector.close()))
    try:
        s = await collector.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    print(f"sens: collected {s.received} message(s): {s.stored} new event(s), {s.already} "
          f"already stored, {s.rejected} rejected", file=sys.stderr)
    status = 0
    if s.gave_up:
        # A batch run (--exit-idle) that never got through must not look like "nothing new".
        print(f"sens: stopped after {args.exit_idle:g} s without getting through: {s.gave_up}",
              file=sys.stderr)
        status = 1
    if s.rejected:
        print(f"sens: {s.rejected} message(s) were not pysens events; they are kept in the "
              f"rejected table of {store.url}", file=sys.stderr)
        status = 1
    return status


def run(args: argparse.Namespace) -> int:
    """Run ``sens collect``."""
    if not args.url.startswith(("nats://", "tls://", "ws://", "wss://")):
        raise CliError(f"{args.url!r} is not a NATS URL: write nats://HOST:PORT", 2)
    try:
        import nats  # noqa: F401
    except ImportError:
        raise CliError("sens collect needs nats-py: pip install 'pysens[nats]'") from None
    with open_store_arg(args.store or default_store_url()) as store:
        return asyncio.run(_collect(args, store))


# -- reading the central store: `sens history|sessions|timeline --store URL` --------------------


def add_store_arguments(p: argparse.ArgumentParser) -> None:
    """``--store URL`` and ``--host H`` for a command that can read the central store."""
    p.add_argument("--store", metavar="URL",
                   help="read the fleet's central store (sqlite:///PATH or postgresql://…) "
                   "instead of this host")
    p.add_argument("--host", action="append", default=[], metavar="H",
                   help="only host H (repeatable)")


def store_events(
    args: argparse.Namespace, *, where: Any = None, since: Any = None, until: Any = None,
    limit: int | None = None,
) -> tuple[list[Any], int]:
    """The events ``--store``/``--host`` select, in time order, and how many could not be read
    (each reported on stderr in one sentence)."""
    bad = 0

    def on_bad(msg: str) -> None:
        nonlocal bad
        bad += 1
        print(f"sens: {msg}", file=sys.stderr)

    with open_store_arg(args.store) as store:
        events = list(store.query(since=since, until=until, hosts=args.host, where=where,
                                  limit=limit, on_bad=on_bad))
    return events, bad


def store_history(args: argparse.Namespace) -> int:
    """``sens history --store URL``: the fleet's events in time order (host column included)."""
    from .common import compile_filter, parse_when, print_event

    where = compile_filter(args.filter)
    since = parse_when(args.since) if args.since else None
    until = parse_when(args.until) if args.until else None
    bad = 0

    def on_bad(msg: str) -> None:
        nonlocal bad
        bad += 1
        print(f"sens: {msg}", file=sys.stderr)

    with open_store_arg(args.store) as store:
        for event in store.query(since=since, until=until, hosts=args.host, where=where,
                                 limit=args.limit, on_bad=on_bad):
            print_event(event, args.json)
    if bad:
        print(f"sens: {bad} stored event(s) could not be read", file=sys.stderr)
        return 1
    return 0


def store_sessions(args: argparse.Namespace) -> int:
    """``sens sessions --store URL``: the sessions open now across the fleet, as the events in
    the store leave them (each host's events replayed through the tracker's rules)."""
    import json

    from ..observations import SessionRecord
    from ..tracker import Tracker
    from .sessions import format_table

    events, bad = store_events(args)
    tracker = Tracker()
    for event in events:
        tracker.feed(SessionRecord.of_event(event))
    sessions = sorted(tracker.sessions, key=lambda s: (s.host, s.since, s.info.session_id or ""))
    if args.json:
        for s in sessions:
            print(json.dumps(s.to_json(), ensure_ascii=False))
    else:
        print("\n".join(format_table(sessions, with_host=True)))
    return 1 if bad else 0
