"""``sens subscriptions``: persistent subscriptions (stored in the journal database)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from ..daemon import DaemonClient, DaemonError
from ..journal import PersistentSubscription, SubscriptionError, SubscriptionStore
from ..subscriptions import add_subscription
from .common import CliError, escape, open_journal

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add ``subscriptions`` to the ``sens`` parser."""
    p = sub.add_parser(
        "subscriptions", help="add, list, remove, enable or disable persistent subscriptions",
        description="Persistent subscriptions survive restarts: `sens serve` delivers each one "
        "at least once, in journal order, from its own cursor. A new subscription receives "
        "events journaled from now on (--from-start: every journaled event). Imported history "
        "is not delivered unless `sens import --deliver`.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    add = actions.add_parser("add", help="add a subscription")
    add.add_argument("name", help="a unique name")
    add.add_argument("--class", dest="event_class", required=True, metavar="CLASS",
                     help="ISensLogon2, ISensLogon, ISensNetwork or ISensOnNow")
    add.add_argument("--method", help="only this method (default: every method of the class)")
    add.add_argument("--criteria", metavar="FILTER",
                     help="MS-COMEV filter, e.g. \"bstrUserName = 'alice'\"")
    add.add_argument("--per-user", metavar="OWNER",
                     help="deliver only while OWNER has a session on this host")
    add.add_argument("--parallel", action="store_true",
                     help="the sink may take several events at once (order not kept)")
    add.add_argument("--disabled", action="store_true", help="store it disabled")
    add.add_argument("--from-start", action="store_true",
                     help="deliver every event already journaled too")
    add.add_argument("--timeout", type=float, metavar="SECONDS",
                     help="time limit of one delivery (default: [delivery] timeout, 180 s)")
    target = add.add_mutually_exclusive_group(required=True)
    target.add_argument("--exec", nargs=argparse.REMAINDER, metavar="CMD",
                        help="run CMD ARGS… per event (no shell): JSON on stdin, SENS_* "
                        "variables; must come last")
    target.add_argument("--webhook", metavar="URL", help="POST the JSON to URL")
    target.add_argument("--jsonl", metavar="PATH", help="append a JSON line to PATH (fsync)")
    add.add_argument("--secret", help="HMAC-SHA256 key for the webhook's X-Sens-Signature")
    ls = actions.add_parser("list", help="the subscriptions, with state and last error")
    ls.add_argument("--json", action="store_true", help="one JSON object per subscription")
    for name, what in (("remove", "delete"), ("enable", "enable (and resume a failing)"),
                       ("disable", "pause")):
        a = actions.add_parser(name, help=f"{what} a subscription")
        a.add_argument("name")
    p.set_defaults(run=run)


def _notify_daemon() -> None:
    # A running daemon notices the change in the journal file too (inotify; a timer where
    # there is none); this makes it take effect before the call returns.
    try:
        client = DaemonClient.connect(timeout=2)
        if client is not None:
            with client:
                client.request({"op": "reload"})
    except DaemonError:
        pass


def _settings(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    if args.secret is not None and args.webhook is None:
        raise CliError("--secret goes with --webhook", 2)
    if args.exec is not None:
        if not args.exec:
            raise CliError("--exec needs a program (and its arguments)", 2)
        return "exec", {"argv": list(args.exec)}
    if args.webhook is not None:
        s: dict[str, Any] = {"url": args.webhook}
        if args.secret is not None:
            s["secret"] = args.secret
        return "webhook", s
    return "jsonl", {"path": args.jsonl}


def _sink_warning(kind: str, settings: dict[str, Any]) -> str | None:
    """What will make every delivery fail as things stand (the subscription is added anyway:
    the hook may be installed, the directory made, later)."""
    if kind == "exec":
        program = str(settings["argv"][0])
        if "/" not in program:
            if shutil.which(program) is None:
                return f"{program} is not found on this PATH"
        elif not (os.path.isfile(program) and os.access(program, os.X_OK)):
            return f"{program} is not an executable file"
    elif kind == "jsonl":
        path = Path(settings["path"])
        if path.is_dir():
            return f"{path} is a directory"
        if not path.parent.is_dir():
            return f"the directory of {path} does not exist"
    return None


def _target(s: PersistentSubscription) -> str:
    if s.sink == "exec":
        return "exec " + " ".join(escape(a) for a in s.settings.get("argv", []))
    if s.sink == "webhook":
        return "webhook " + escape(s.settings.get("url"))
    return f"{s.sink} " + escape(s.settings.get("path"))


def run(args: argparse.Namespace) -> int:
    """Run ``sens subscriptions ACTION``."""
    with open_journal(args) as journal:
        store = SubscriptionStore(journal)
        try:
            return _run(args, store, journal.cursor)
        except SubscriptionError as e:
            raise CliError(str(e), e.status) from None
        finally:
            store.close()


def _run(args: argparse.Namespace, store: SubscriptionStore, cursor: Any) -> int:
    if args.action == "add":
        if args.timeout is not None and args.timeout <= 0:
            raise CliError("--timeout must be a positive number of seconds", 2)
        kind, settings = _settings(args)
        sub = add_subscription(
            store, args.name, event_class=args.event_class, sink=kind, settings=settings,
            method=args.method, criteria=args.criteria, per_user=args.per_user is not None,
            owner=args.per_user, parallel=args.parallel, enabled=not args.disabled,
            from_start=args.from_start, timeout=args.timeout,
        )
        print(f"sens: added subscription {escape(sub.name)} ({sub.id}); it receives events "
              f"after seq {cursor(sub.cursor)}")
        warning = _sink_warning(kind, settings)
        if warning:
            print(f"sens: warning: {escape(warning)}: its deliveries will fail, and be retried, "
                  "until that is fixed", file=sys.stderr)
    elif args.action == "list":
        subs = store.list()
        # Events retention deleted before a subscription had them (a max_size forced it).
        losses = {name: (lost, at) for name, (_, lost, at) in store.journal.cursors().items()}
        if args.json:
            for s in subs:
                lost, at = losses.get(s.cursor, (0, None))
                print(json.dumps(s.to_json() | {"cursor": cursor(s.cursor), "lost": lost,
                                                "lost_at": at}, ensure_ascii=False))
            return 0
        for s in subs:
            what = s.event_class + (f".{s.method}" if s.method else "")
            state = s.state if s.enabled else "disabled"
            flags = [f for f, on in (("parallel", s.parallel),) if on]
            if s.per_user:
                flags.append(f"per-user={escape(s.owner)}")
            line = f"{escape(s.name)}  {what}  {state}  cursor={cursor(s.cursor)}  {_target(s)}"
            if s.criteria:
                line += f"  criteria={escape(s.criteria)}"
            if flags:
                line += "  " + " ".join(flags)
            lost, at = losses.get(s.cursor, (0, None))
            if lost:
                line += f"  lost={lost} (deleted by retention before delivery; last {at})"
            if s.last_error:
                line += f"  failures={s.failures}  last error: {escape(s.last_error)}"
            print(line)
        print(f"\n{len(subs)} subscription(s).")
        return 0
    elif args.action == "remove":
        sub = store.remove(args.name)
        print(f"sens: removed subscription {escape(sub.name)}")
    else:
        sub = store.set_enabled(args.name, args.action == "enable")
        print(f"sens: {args.action}d subscription {escape(sub.name)}; its cursor is at seq "
              f"{cursor(sub.cursor)}")
    _notify_daemon()
    return 0
