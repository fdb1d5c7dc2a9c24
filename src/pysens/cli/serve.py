"""``sens serve``: the daemon."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from typing import Any

from ..daemon.config import ConfigError, ForwardConfig, ServiceConfig, load_config
from ..daemon.service import Service, ServiceError
from .common import CliError
from .natsargs import SEED_HELP, add_nats_arguments, nats_options, nats_target_arg
from .network import parse_destination

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
                   help="a logon source (auto, logind, utmp, wts, FILE.jsonl, or none: "
                   "published events only, and no network or power source either unless asked); "
                   "repeatable; overrides [serve] sources")
    p.add_argument("--network", action=argparse.BooleanOptionalAction, default=None,
                   help="run the network source (ISensNetwork); default: where this host has "
                   "it; overrides [serve] network")
    p.add_argument("--power", action=argparse.BooleanOptionalAction, default=None,
                   help="run the power source (ISensOnNow); default: where this host has it")
    p.add_argument("--destination", action="append", metavar="HOST[:PORT]",
                   type=parse_destination,
                   help="fire DestinationReachable when it starts to answer (repeatable; adds "
                   "to [[destination]])")
    p.add_argument("--forward", action="append", metavar="URL",
                   help="also ship the journal to this NATS JetStream: " + SEED_HELP
                   + "; repeatable: each is one more forwarder; the NATS connection options "
                   "below apply to these")
    p.add_argument("--replicas", type=int, choices=range(1, 6), metavar="N",
                   help="with --forward: the stream's replicas when it is created (3 on a "
                   "cluster)")
    p.add_argument("--socket", metavar="PATH", help="the socket (default: $SENS_SOCKET, "
                   "/run/pysens/sens.sock as root, else $XDG_RUNTIME_DIR/pysens/sens.sock)")
    add_nats_arguments(p)
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
    for kind in ("network", "power"):
        if getattr(args, kind) is not None:
            changes[kind] = getattr(args, kind)
    if args.destination:
        known = {d.name for d in cfg.destinations}
        for d in args.destination:
            if d.name in known:
                raise CliError(f"--destination {d.name} is listed twice", 2)
            known.add(d.name)
        changes["destinations"] = cfg.destinations + tuple(args.destination)
    if args.forward:
        options = nats_options(args)
        if args.replicas is not None:
            options["replicas"] = args.replicas
        for url in args.forward:
            nats_target_arg(url, args, "--forward")
        changes["forward"] = cfg.forward + tuple(ForwardConfig(u, dict(options))
                                                 for u in args.forward)
    return dataclasses.replace(cfg, **changes)


def run(args: argparse.Namespace) -> int:
    """Run ``sens serve`` until SIGTERM or SIGINT."""
    service = Service(build_config(args))
    try:
        asyncio.run(service.run())
    except ServiceError as e:
        raise CliError(str(e)) from None
    return 0
