"""``sens doctor``: what this host offers pysens, and why not where it does not."""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from ..daemon import DaemonClient, DaemonError, default_socket_path
from ..journal import Journal, JournalError, default_journal_path
from ..sources import AUTO_ORDER, probe
from .common import escape

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add ``doctor`` to the ``sens`` parser."""
    p = sub.add_parser(
        "doctor", help="which sources this host has, and the journal and daemon status",
        description="Check each live source (and say why a missing one cannot run), the "
        "journal, and whether a daemon answers on the socket. Exit 1 when no live source "
        "is available or the journal cannot be opened.",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``sens doctor``."""
    problems = 0
    print("sources:")
    available = []
    for name in AUTO_ORDER:
        why = asyncio.run(probe(name))
        if why is None:
            available.append(name)
            print(f"  {name:<7} yes")
        else:
            print(f"  {name:<7} no: {escape(why)}")
    if available:
        print(f"  -> `--source auto` picks {available[0]}")
    else:
        problems += 1
        print("  -> no logon source here: `sens serve` would only journal published events")
    for name, what in (("network", "ISensNetwork"), ("power", "ISensOnNow")):
        why = asyncio.run(probe(name))
        if why is None:
            print(f"  {name:<7} yes ({what} events)")
        else:
            print(f"  {name:<7} no: {escape(why)} (no {what} events; the logon sources are "
                  "not affected)")
    path = getattr(args, "journal", None) or default_journal_path()
    try:
        with Journal(path) as journal:
            print(f"journal: {path}: {journal.count()} event(s), last seq {journal.last_seq()}, "
                  f"schema {journal.version}")
    except JournalError as e:
        problems += 1
        print(f"journal: {escape(e)}")
    sock = default_socket_path()
    try:
        client = DaemonClient.connect(sock, timeout=3)
        if client is None:
            state = "no daemon answers" + ("" if sock.exists() else " (no socket file)")
        else:
            with client:
                hello = client.request({"op": "hello"})
            missing = "".join(f"; no {k}: {v}" for k, v in
                              (hello.get("unavailable") or {}).items())
            state = (f"daemon pid {hello.get('pid')} serving journal {hello.get('journal')}, "
                     f"sources: {', '.join(hello.get('sources') or []) or 'none'}{missing}, "
                     f"{hello.get('subscriptions', 0)} subscription(s) delivering")
    except DaemonError as e:
        state = f"a daemon answers but refuses: {e}"
    mode = ""
    if sock.exists():
        st = sock.stat()
        mode = f", mode {st.st_mode & 0o777:04o}, owner uid {st.st_uid}"
    print(f"socket: {sock}: {escape(state)}{mode}")
    print(f"running as uid {os.geteuid()}")
    return 1 if problems else 0
