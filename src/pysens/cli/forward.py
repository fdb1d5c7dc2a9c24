"""``sens forward nats://…``: one forwarder in the foreground (what ``sens serve --forward``
runs inside the daemon): this host's journal -> the fleet's JetStream stream."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import Any

from ..fleet.stream import DEFAULT_STREAM
from .common import CliError, SensArgumentParser, open_journal
from .natsargs import SEED_HELP, add_nats_arguments, nats_target_arg

__all__ = ["main", "register", "run"]


def register(sub: Any) -> None:
    """Add ``forward`` to the ``sens`` parser."""
    p = sub.add_parser(
        "forward", help="ship this host's journal to NATS JetStream (in the foreground)",
        description="Publish every journaled event to the fleet's JetStream stream, each once "
        "(Nats-Msg-Id = the event id), moving this forwarder's cursor only on the server's "
        "acknowledgement; events wait in the journal while no server is reachable. Given a "
        "seed list (or a cluster that announces its servers), it reconnects to any live one. "
        "The stream is created when absent (--replicas 3 on a cluster); an existing stream's "
        "settings are kept. `sens serve --forward URL` runs the same inside the daemon.",
    )
    _arguments(p)
    p.set_defaults(run=run)


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", help=SEED_HELP)
    p.add_argument("--host", help="host token for the subjects (default: each event's host)")
    p.add_argument("--stream", default=DEFAULT_STREAM, help="the JetStream stream (default: SENS)")
    p.add_argument("--replicas", type=int, default=1, choices=range(1, 6), metavar="N",
                   help="the stream's replicas when it is created (default: 1; 3 on a cluster)")
    p.add_argument("--max-age", type=float, default=30 * 24 * 3600.0, metavar="SECONDS",
                   help="the stream's retention when it is created (default: 30 days)")
    p.add_argument("--max-msgs", type=int, help="the stream's message limit when created")
    p.add_argument("--max-bytes", type=int, help="the stream's size limit when created")
    p.add_argument("--drain", action="store_true",
                   help="exit 0 once every journaled event is acknowledged")
    add_nats_arguments(p)


def run(args: argparse.Namespace) -> int:
    """Run ``sens forward``."""
    try:
        from ..fleet.forwarder import Forwarder
    except ImportError as e:
        raise CliError(f"forwarding needs nats-py ({e.name} is missing): pip install "
                       "'pysens[nats]'") from None
    from ..fleet.connection import NatsRefused

    target = nats_target_arg(args.url, args)
    journal = open_journal(args)

    async def go() -> None:
        fwd = Forwarder(journal, target, host=args.host, stream=args.stream,
                        replicas=args.replicas, max_age=args.max_age, max_msgs=args.max_msgs,
                        max_bytes=args.max_bytes)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, fwd.stop)
        try:
            await fwd.run(drain=args.drain)
        finally:
            await fwd.aclose()
            s = fwd.stats
            big = (f", {s.trimmed} trimmed, {s.refused} not forwarded"
                   if s.trimmed or s.refused else "")
            print(f"sens forward: {s.acked} acked ({s.duplicates} duplicates{big}), "
                  f"cursor {s.cursor}", file=sys.stderr)

    try:
        asyncio.run(go())
    except NatsRefused as e:
        raise CliError(str(e)) from None
    finally:
        journal.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pysens.sinks.nats URL`` (pysens 0.1's way to run a forwarder): the same as
    ``sens forward URL``."""
    import logging

    p = SensArgumentParser(prog="python -m pysens.sinks.nats",
                           description="Forward a journal to NATS JetStream.")
    _arguments(p)
    p.add_argument("--journal", help="the journal (default: $SENS_JOURNAL or the usual place)")
    p.add_argument("-v", "--verbose", action="count", default=0)
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                        format="sens forward: %(levelname)s: %(message)s")
    try:
        return run(args)
    except CliError as e:
        print(f"sens forward: {e}", file=sys.stderr)
        return e.status
