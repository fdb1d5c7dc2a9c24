"""``sens network``: the connections now (type, speed, addresses) and each configured
destination's reachability, through the daemon when it runs."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from ..sources import SourceUnavailable, open_source, probe
from ..sources.destinations import Destination, parse_destinations
from ..text import align, escape, format_speed
from ..tracker import Connection, Tracker
from ..tracker import Destination as Probed
from .common import CliError, ask_daemon

__all__ = ["network_tables", "parse_destination", "register", "run"]


def register(sub: Any) -> None:
    """Add ``network`` to the ``sens`` parser."""
    p = sub.add_parser(
        "network", help="the network connections now, and whether destinations answer",
        description="List the usable network connections (a link that is up, has carrier and "
        "an address): name (NetworkManager's when it runs), LAN or WAN, speed, addresses; and "
        "each destination: whether it answers now and through which connection. With a "
        "running `sens serve`, its view (and its [[destination]] list); else this host looked "
        "at now.",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--destination", action="append", default=[], metavar="HOST[:PORT]",
                   type=parse_destination,
                   help="probe this destination (TCP PORT, else ICMP echo); repeatable; "
                   "looks at this host directly instead of asking the daemon")
    p.set_defaults(run=run)


def parse_destination(text: str) -> Destination:
    """``HOST``, ``HOST:PORT``, ``ADDRESS`` or ``[IPV6]:PORT`` as a destination."""
    host, port = text.strip(), None
    if host.startswith("[") and "]" in host:
        host, _, rest = host[1:].partition("]")
        port = rest.removeprefix(":") or None
    elif host.count(":") == 1:
        host, port = host.split(":")
    table: dict[str, Any] = {"name": host}
    if port is not None:
        if not port.isdigit():
            raise argparse.ArgumentTypeError(f"{text!r}: the port must be a number")
        table["port"] = int(port)
    try:
        return parse_destinations([table])[0]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).partition(": ")[2] or str(e)) from None


def network_tables(connections: list[Connection], destinations: list[Probed]) -> list[str]:
    """The human tables: connections, then destinations (when there are any)."""
    rows = [["CONNECTION", "TYPE", "SPEED", "ADDRESSES", "SINCE"]]
    for c in connections:
        speed = format_speed(c.qoc.get("in_speed")) if c.qoc else "-"
        addresses = c.raw.get("addresses") or []
        rows.append([escape(c.connection), "WAN" if c.connection_type else "LAN", speed,
                     escape(", ".join(map(str, addresses)) or "-"),
                     c.since.strftime("%Y-%m-%d %H:%M:%S")])
    lines = align(rows)
    lines.append(f"\n{len(connections)} connection(s) usable.")
    if destinations:
        rows = [["DESTINATION", "REACHABLE", "VIA", "SINCE"]]
        for d in destinations:
            rows.append([escape(d.destination), "yes" if d.reachable else "no",
                         escape(d.connection) if d.reachable else "-",
                         d.since.strftime("%Y-%m-%d %H:%M:%S")])
        lines.extend(["", *align(rows)])
    return lines


def _print(connections: list[Connection], destinations: list[Probed], as_json: bool) -> None:
    if as_json:
        items: list[Connection | Probed] = [*connections, *destinations]
        for item in items:
            print(json.dumps(item.to_json(), ensure_ascii=False))
    else:
        print("\n".join(network_tables(connections, destinations)))


def _from_daemon(args: argparse.Namespace) -> int | None:
    reply = ask_daemon("network")
    if reply is None:
        return None
    if not reply.get("watching"):
        why = reply.get("why_not") or "it runs without the network source"
        raise CliError(f"the daemon does not watch the network: {why}")
    _print([Connection.from_json(c) for c in reply.get("connections") or []],
           [Probed.from_json(d) for d in reply.get("destinations") or []], args.json)
    return 0


async def _look(args: argparse.Namespace) -> int:
    why = await probe("network")
    if why is not None:
        raise CliError(f"cannot watch the network here: {why}")
    try:
        source = open_source("network", destinations=args.destination)
        tracker = Tracker()
        try:
            for obs in await source.snapshot():
                tracker.feed(obs)
        finally:
            await source.aclose()
    except SourceUnavailable as e:
        raise CliError(str(e)) from None
    _print(tracker.network.connections, tracker.network.destinations, args.json)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``sens network``."""
    if not args.destination:
        status = _from_daemon(args)
        if status is not None:
            return status
    return asyncio.run(_look(args))
