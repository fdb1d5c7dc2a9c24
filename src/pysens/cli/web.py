"""``sens web``: a live view of sessions, network and power in the browser."""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import ssl
import sys
from typing import Any

from ..fleet.urls import redact_url
from .common import CliError, parse_when
from .natsargs import SEED_HELP, add_nats_arguments, nats_target_arg

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add ``web`` to the ``sens`` parser."""
    p = sub.add_parser(
        "web", help="a live view in the browser: sessions, events, timeline; one host or the fleet",
        description="Serve a live page: the sessions open now, the event stream (with an "
        "MS-COMEV filter), and a timeline with network and power lanes. Without --store it "
        "follows this host's sens serve; with --store every host of the central store, live "
        "from NATS (--nats) or from the store itself. Read-only. Loopback needs no token; any "
        "other address gets one (printed in the URL at start), and --cert/--key add TLS.",
    )
    p.add_argument("--listen", default="127.0.0.1:8765", metavar="HOST:PORT",
                   help="where to serve (default: 127.0.0.1:8765; port 0: any free port)")
    p.add_argument("--store", metavar="URL",
                   help="the fleet's central store (sqlite:///PATH or postgresql://…)")
    p.add_argument("--nats", metavar="URL",
                   help="with --store: live events from NATS (subject sens.>): " + SEED_HELP)
    p.add_argument("--token", metavar="T",
                   help="the token a browser must bring (default: generated off loopback)")
    p.add_argument("--cert", metavar="FILE", help="TLS certificate (PEM) ...")
    p.add_argument("--key", metavar="FILE", help="... and its private key (PEM)")
    p.add_argument("--since", default="-24h", metavar="T",
                   help="how far back the timeline starts (default: -24h)")
    p.add_argument("--socket", metavar="PATH",
                   help="the daemon's socket (default: $SENS_SOCKET or the usual place)")
    add_nats_arguments(p)
    p.set_defaults(run=run)


def _tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.cert is None and args.key is None:
        return None
    if args.cert is None or args.key is None:
        raise CliError("--cert and --key go together", 2)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(args.cert, args.key)
    except (OSError, ssl.SSLError) as e:
        raise CliError(f"cannot load the TLS certificate {args.cert} / key {args.key}: "
                       f"{getattr(e, 'strerror', None) or e}") from None
    return ctx


async def _serve(args: argparse.Namespace, host: str, port: int, token: str | None,
                 ctx: ssl.SSLContext | None) -> int:
    from ..daemon import default_socket_path
    from ..web.access import Access
    from ..web.app import start_server
    from ..web.feeds import FleetFeed, LocalFeed
    from ..web.hub import Hub

    since = parse_when(args.since)
    feed: LocalFeed | FleetFeed
    if args.store:
        hub = Hub("fleet", f"fleet: {redact_url(args.store)}", since)
        target = nats_target_arg(args.nats, args, "--nats") if args.nats else None
        feed = FleetFeed(hub, args.store, since, nats_url=target)
    else:
        path = args.socket or default_socket_path()
        hub = Hub("local", f"this host ({socket.gethostname().split('.')[0]})", since)
        feed = LocalFeed(hub, path, since, journal=getattr(args, "journal", None))
    access = Access(token, port, ctx is not None)
    try:
        runner, bound = await start_server(hub, access, host, port, ctx)
    except OSError as e:
        raise CliError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    access.cookie_name = f"sens_web_{bound}"
    shown = f"[{host}]" if ":" in host else host
    url = f"{'https' if ctx else 'http'}://{shown}:{bound}/"
    print(f"sens web: serving {hub.title} on {url}" + (f"?token={token}" if token else ""),
          flush=True)
    if token and ctx is None:
        print("sens web: without --cert/--key the token and the page cross the network "
              "unencrypted", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(feed.run())
    try:
        done, _ = await asyncio.wait({task, asyncio.create_task(stop.wait())},
                                     return_when=asyncio.FIRST_COMPLETED)
        if task in done and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await runner.cleanup()
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``sens web``."""
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise CliError("sens web needs aiohttp: pip install 'pysens[web]'") from None
    from ..web.access import ListenError, is_loopback, new_token, parse_listen

    if args.nats and not args.store:
        raise CliError("--nats goes with --store (the fleet view)", 2)
    if args.nats:
        nats_target_arg(args.nats, args, "--nats")  # a bad URL is a usage error at once
    try:
        host, port = parse_listen(args.listen)
    except ListenError as e:
        raise CliError(str(e), 2) from None
    parse_when(args.since)  # a bad time is a usage error before anything starts
    ctx = _tls(args)
    token = args.token
    if token is not None and not token.strip():
        raise CliError("--token must not be empty", 2)
    if token is None and not is_loopback(host):
        token = new_token()
    return asyncio.run(_serve(args, host, port, token, ctx))
