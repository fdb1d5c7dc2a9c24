"""``sens collect nats://… --store URL``: the fleet's central consumer."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from datetime import timedelta
from typing import Any

from ..fleet.store import Store
from .common import CliError, default_store_url, open_store_arg
from .natsargs import SEED_HELP, add_nats_arguments, nats_target_arg

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add ``collect`` to the ``sens`` parser."""
    p = sub.add_parser(
        "collect", help="the fleet's central consumer: NATS JetStream -> a central store",
        description="Consume every host's events from the NATS JetStream stream the forwarders "
        "fill (a durable pull consumer) into a central store, each event once: insert-or-ignore "
        "by event id, acknowledged after the commit. Several collectors on one durable share "
        "the work. Messages that are not pysens events are kept aside in the store's rejected "
        "table; messages the stream lost before they were stored are said and kept in its gaps "
        "table. Runs until interrupted.",
    )
    p.add_argument("url", metavar="URL", help=SEED_HELP)
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
    p.add_argument("--replicas", type=int, default=1, choices=range(1, 6), metavar="N",
                   help="the stream's replicas if the collector has to create it (default: 1)")
    p.add_argument("--exit-idle", type=float, metavar="SECONDS",
                   help="exit once nothing new has come for SECONDS (default: run until "
                   "interrupted)")
    p.add_argument("--max-age", metavar="AGE",
                   help="retention: remove the stored events older than AGE (e.g. 400d, 2y) "
                   "at start and then every hour; PostgreSQL drops whole months once all of "
                   "a month is older (default: keep everything)")
    add_nats_arguments(p)
    p.set_defaults(run=run)


async def _collect(args: argparse.Namespace, target: Any, store: Store) -> int:
    from ..fleet.collector import Collector

    collector = Collector(target, store, stream=args.stream, durable=args.durable,
                          subject=args.subject, batch=args.batch, exit_idle=args.exit_idle,
                          replicas=args.replicas)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, collector.stop)
    retention = None
    if args.max_age is not None:
        from ..fleet.retention import keep_within

        retention = asyncio.create_task(keep_within(
            store, _max_age(args.max_age), label=args.max_age.strip(),
            report=lambda line: print(f"sens: {line}", file=sys.stderr, flush=True)))
    try:
        s = await collector.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if retention is not None:
            retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retention
    lost = f", {s.lost} lost by the stream (see the gaps table)" if s.lost else ""
    print(f"sens: collected {s.received} message(s): {s.stored} new event(s), {s.already} "
          f"already stored, {s.rejected} rejected{lost}", file=sys.stderr)
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


def _max_age(text: str) -> timedelta:
    from ..journal.limits import LimitError, parse_age

    try:
        age = parse_age(text)
    except LimitError as e:
        raise CliError(f"--max-age: {e}", 2) from None
    if age <= timedelta(0):
        raise CliError("--max-age must be more than 0", 2)
    return age


def run(args: argparse.Namespace) -> int:
    """Run ``sens collect``."""
    from ..fleet.connection import NatsRefused

    if args.batch < 1:
        raise CliError("--batch must be at least 1", 2)
    if args.max_age is not None:
        _max_age(args.max_age)  # a bad age is a usage error before anything connects
    target = nats_target_arg(args.url, args)
    try:
        import nats  # noqa: F401
    except ImportError:
        raise CliError("sens collect needs nats-py: pip install 'pysens[nats]'") from None
    with open_store_arg(args.store or default_store_url()) as store:
        try:
            return asyncio.run(_collect(args, target, store))
        except NatsRefused as e:
            raise CliError(str(e)) from None
