"""``sens power``: AC or battery, the battery's charge, whether it is low; through the daemon
when it runs."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from ..sources import SourceUnavailable, open_source, probe
from ..text import align
from ..tracker import Power, Tracker
from .common import CliError, ask_daemon

__all__ = ["power_table", "register", "run"]


def register(sub: Any) -> None:
    """Add ``power`` to the ``sens`` parser."""
    p = sub.add_parser(
        "power", help="AC or battery, and the battery's charge",
        description="Say whether this machine runs on AC or on battery, the battery's charge "
        "and whether it is low (UPower's warning level, else the kernel's capacity level or "
        "20 %%). With a running `sens serve`, its view; else this host looked at now.",
    )
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(run=run)


def power_table(state: Power) -> list[str]:
    """The human table of one power state."""
    battery = "-" if state.percent is None else f"{state.percent}%"
    return align([["POWER", "BATTERY", "LOW", "SINCE", "SOURCE"],
                  ["battery" if state.on_battery else "AC", battery,
                   "yes" if state.low else "no", state.since.strftime("%Y-%m-%d %H:%M:%S"),
                   state.source]])


def _print(state: Power, as_json: bool) -> None:
    print(json.dumps(state.to_json()) if as_json else "\n".join(power_table(state)))


def _from_daemon(args: argparse.Namespace) -> int | None:
    reply = ask_daemon("power")
    if reply is None:
        return None
    if not reply.get("watching") or reply.get("power") is None:
        why = reply.get("why_not") or "it has not seen the power state yet"
        raise CliError(f"the daemon does not know the power state: {why}")
    _print(Power.from_json(reply["power"]), args.json)
    return 0


async def _look(args: argparse.Namespace) -> int:
    why = await probe("power")
    if why is not None:
        raise CliError(f"cannot read the power state here: {why}")
    try:
        source = open_source("power")
        tracker = Tracker()
        try:
            for obs in await source.snapshot():
                tracker.feed(obs)
        finally:
            await source.aclose()
    except SourceUnavailable as e:
        raise CliError(str(e)) from None
    state = tracker.power.state()
    if state is None:
        raise CliError("the power source reported no state")
    _print(state, args.json)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``sens power``."""
    status = _from_daemon(args)
    if status is not None:
        return status
    return asyncio.run(_look(args))
