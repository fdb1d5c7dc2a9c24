"""``sens serve``: the daemon."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from typing import Any

from ..daemon.config import ConfigError, ForwardConfig, ServiceConfig, load_config
from ..daemon.service import Service, ServiceError
from .common import CliError

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add ``serve`` to the ``sens`` parser."""
    p = sub.add_parser(
        "serve", help="the daemon: live sources -> journal -> subscriptions, sinks, forwarders",
        description="Run the SENS daemon: watch the live sources, journal every event, serve "
        "`sens watch`/`sessions`/`publish` over a local socket, deliver persistent "
        "subscriptions and forward to NATS. No configuration file is needed for the defaults.",
    )
    p.add_argument("--config", metavar="FILE", help="a TOML configuration file")
    p.add_argument("--source", action="append", metavar="NAME",
                   help="a live source (auto, logind, utmp, wts, FILE.jsonl, or none); "
                   "repeatable; overrides [serve] sources")
    p.add_argument("--forward", action="append", metavar="nats://HOST:PORT",
                   help="also ship the journal to this NATS JetStream (repeatable)")
    p.add_argument("--socket", metavar="PATH", help="the socket (default: $SENS_SOCKET, "
                   "/run/pysens/sens.sock as root, else $XDG_RUNTIME_DIR/pysens/sens.sock)")
    p.set_defaults(run=run)


def build_config(args: argparse.Namespace) -> ServiceConfig:
    """The configuration file (if any) with the command line's overrides applied."""
    try:
        cfg = load_config(args.config) if args.config else ServiceConfig()
    except ConfigError as e:
        raise CliError(str(e)) from None
    changes: dict[str, Any] = {}
    if getattr(args, "journal", None):
        changes["journal"] = args.journal
    if args.socket:
        changes["socket"] = args.socket
    if args.source:
        changes["sources"] = tuple(args.source)
    if args.forward:
        for url in args.forward:
            if not url.startswith(("nats://", "tls://")):
                raise CliError(f"--forward needs a nats:// URL, not {url!r}", 2)
        changes["forward"] = cfg.forward + tuple(ForwardConfig(u) for u in args.forward)
    return dataclasses.replace(cfg, **changes)


def run(args: argparse.Namespace) -> int:
    """Run ``sens serve`` until SIGTERM or SIGINT."""
    service = Service(build_config(args))
    try:
        asyncio.run(service.run())
    except ServiceError as e:
        raise CliError(str(e)) from None
    return 0
