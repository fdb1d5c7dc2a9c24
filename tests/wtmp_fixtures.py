"""Helpers for the wtmp tests: real files written by ``utmpdump -r``, and ``last``'s output
parsed into comparable sessions."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pysens.events import SensEvent
from pysens.importer import Importer
from pysens.timeline import pair_sessions

#: (user, line, host, login, end): end is "open", "crash", "down" or the logout time; times are
#: ``last --time-format iso`` text (seconds, +00:00).
SessionRow = tuple[str, str, str, str, str]

_ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"
_REST = re.compile(rf"^(?P<host>.*?)\s*(?P<login>{_ISO})\s*(?P<end>.*)$")
_SYSTEM_LINES = ("system boot", "system down", "old time", "new time")


def utmpdump_line(
    type: int, user: str, line: str, time: datetime, *, pid: int = 0, id: str = "",
    host: str = "", addr: str = "0.0.0.0",
) -> str:
    """One ``utmpdump`` text record (the format ``utmpdump -r`` reads back)."""
    t = time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + f",{time.microsecond:06d}+00:00"
    return (f"[{type}] [{pid:05d}] [{id:<4.4}] [{user:<8}] [{line:<12}] [{host:<20}] "
            f"[{addr:<15}] [{t}]")


def write_wtmp(path: Path, lines: Iterable[str]) -> Path:
    """A binary wtmp at ``path`` made by the real ``utmpdump -r`` from text records."""
    text = "\n".join(lines) + "\n"
    subprocess.run(["utmpdump", "-r", "-o", str(path)], input=text.encode(), check=True,
                   capture_output=True)
    return path


def run_last(path: Path) -> str:
    """``last -f PATH -w -x --time-format iso`` in UTC, as the MANIFEST's oracles were made."""
    out = subprocess.run(
        ["last", "-f", str(path), "-w", "-x", "--time-format", "iso"],
        env={"TZ": "UTC", "LC_ALL": "C", "PATH": "/usr/bin:/bin"}, check=True,
        capture_output=True, text=True,
    )
    return out.stdout


def parse_last(text: str) -> list[SessionRow]:
    """The user sessions of ``last -w -x --time-format iso`` output (system rows dropped)."""
    rows: list[SessionRow] = []
    for raw in text.splitlines():
        if not raw.strip() or " begins " in raw or raw.startswith("last:"):
            continue
        user = raw.split()[0]
        at = max(8, len(user)) + 1  # "%-8.*s " then the line in exactly 12 columns
        line = raw[at : at + 12].rstrip()
        m = _REST.match(raw[at + 13 :])
        assert m is not None, f"cannot parse last's line {raw!r}"
        end = m["end"].strip()
        if end in ("still logged in", "gone - no logout"):
            state = "open"
        elif end.startswith("- crash"):
            state = "crash"
        elif end.startswith("- down"):
            state = "down"
        elif end.startswith("- ") and (line not in _SYSTEM_LINES and not
                                       line.startswith("(to lvl")):
            state = end[2:].split()[0]
        else:
            continue  # a boot / shutdown / run-level / clock row: not a session
        rows.append((user, line, m["host"].strip(), m["login"], state))
    return sorted(rows)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def session_rows(events: Sequence[SensEvent]) -> list[SessionRow]:
    """Our sessions in the same shape as :func:`parse_last`'s."""
    rows: list[SessionRow] = []
    for s in pair_sessions(events):
        end = s.end
        if end in ("logoff", "superseded"):
            assert s.logoff is not None
            state = _iso(s.logoff.time)
        elif end in ("shutdown", "reboot"):
            state = "down"
        else:
            state = end
        rows.append((s.logon.user_name or "", s.logon.session_id or "",
                     s.logon.client_name or "", _iso(s.logon.time), state))
    return sorted(rows)


def read_events(kind: str, *paths: Path, host: str = "testhost") -> tuple[list[SensEvent],
                                                                          list[str]]:
    """The events an import of ``paths`` makes (no journal), and the error sentences."""
    events: list[SensEvent] = []
    errors: list[str] = []
    Importer(None, host=host, on_events=events.extend, on_error=errors.append).import_files(
        kind, [str(p) for p in paths])
    return events, errors
