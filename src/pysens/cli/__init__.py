"""The ``sens`` command line: ``main(argv) -> int``, a function of its arguments.

Each command lives in its own module here with ``register(subparsers)`` and ``run(args)``;
:data:`COMMANDS` lists them in ``--help`` order. Exit status: 0 success, 1 a failure the message
explains, 2 bad usage (a bad filter string included). Errors are one sentence on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from ..events import EventError
from ..journal import JournalError
from .common import CliError, SensArgumentParser

__all__ = ["COMMANDS", "build_parser", "entry", "main"]

#: Command modules (``pysens.cli.<name>``), in the order ``sens --help`` lists them.
COMMANDS: list[str] = [
    "watch",
    "sessions",
    "network",
    "power",
    "publish",
    "history",
    "timeline",
    "importcmd",
    "collect",
    "forward",
    "serve",
    "web",
    "subscriptions",
    "journal",
    "doctor",
]


def build_parser() -> argparse.ArgumentParser:
    """The whole ``sens`` parser."""
    parser = SensArgumentParser(
        prog="sens",
        description=(
            "pysens: a System Event Notification Service. Know when users log on, log off, "
            "disconnect and reconnect, live and from history, and act on it."
        ),
        epilog="Run 'sens COMMAND --help' for a command's options.",
    )
    parser.add_argument(
        "--journal", metavar="PATH",
        help="the journal database (default: $SENS_JOURNAL, /var/lib/pysens/journal.db as "
        "root, else ~/.local/state/pysens/journal.db)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(sub)
    for command in sub.choices.values():
        # --journal is accepted after the command word too (`sens history --journal J`).
        command.add_argument("--journal", metavar="PATH", default=argparse.SUPPRESS,
                             help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sens`` with ``argv`` (default ``sys.argv[1:]``); the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on bad usage, 0 for --help
        return int(e.code or 0)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="sens: %(levelname)s: %(message)s",
    )
    try:
        return int(args.run(args))
    except CliError as e:
        print(f"sens: {e}", file=sys.stderr)
        return e.status
    except EventError as e:
        # An event built from the command line's own words (`sens publish --user …`).
        print(f"sens: {e}", file=sys.stderr)
        return 2
    except JournalError as e:  # opening is checked where it happens; this is a damaged page
        print(f"sens: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`sens history | head`): not an error worth a message.
        sys.stderr.close()
        return 0


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
