"""The daemon's configuration: one TOML file, every key optional.

```toml
[serve]
journal = "/var/lib/pysens/journal.db"   # default: as for every sens command
socket = "/run/pysens/sens.sock"         # default: $SENS_SOCKET, /run/pysens as root,
                                         # else $XDG_RUNTIME_DIR/pysens
socket_group = "sens"                    # clients of this group may connect too (socket 0660)
sources = ["auto"]                       # logon sources; ["none"] serves published events only
network = true                           # ISensNetwork (rtnetlink, NetworkManager); default: on
                                         # where the host has it, off with sources = ["none"]
power = true                             # ISensOnNow (UPower, else sysfs); the same default
include_existing = false                 # fire Logon for sessions open at start
durable = false                          # fsync every journal commit (power-loss safe)

[[destination]]                          # DestinationReachable when it starts to answer
name = "git.example.com"                 # or address = "192.0.2.7"
port = 443                               # TCP connect; without a port: ICMP echo (ping)

[delivery]
max_failures = 5                         # failed attempts in a row before 'failing'
retry_initial = 1.0                      # seconds before the first retry; doubles each time
retry_max = 300.0                        # the cap of the backoff
timeout = 180.0                          # time limit of one delivery (SENS: 3 minutes)

[journal]                                # retention, applied in the background
max_age = "90d"                          # delete events older than this (s, min, h, d, w,
                                         # month, y); undelivered ones are kept
max_size = "500M"                        # keep the file under this (K, M, G, T); the oldest
                                         # go, undelivered ones too if they must (counted)

[[forward]]                              # ship the journal to NATS JetStream
url = ["nats://a.example:4222", "nats://b.example:4222"]   # one URL or a seed list
replicas = 3                             # the stream's, when this creates it (a cluster)
creds = "/etc/pysens/fleet.creds"        # or user/password, token, nkey_seed; tls_ca,
                                         # tls_cert, tls_key for TLS
```

A mistake is reported as ``FILE:LINE: what is wrong`` and the daemon does not start.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..fleet.connection import NatsConfigError, nats_target
from ..journal.limits import LimitError, parse_age, parse_size
from ..sources.destinations import Destination, parse_destinations

__all__ = ["ConfigError", "ForwardConfig", "ServiceConfig", "load_config", "parse_config"]


class ConfigError(ValueError):
    """The configuration is wrong: the message names the file, the line and the problem."""


@dataclass(frozen=True, slots=True)
class ForwardConfig:
    """One ``[[forward]]`` table: the NATS URL and further keyword options for the forwarder."""

    url: str
    options: Mapping[str, Any] = field(default_factory=dict)
    #: option -> ``FILE:LINE`` where it is set, for messages about it.
    where: Mapping[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Everything ``sens serve`` needs; the defaults need no file."""

    journal: str | None = None
    socket: str | None = None
    socket_group: str | None = None
    sources: tuple[str, ...] = ("auto",)
    include_existing: bool = False
    durable: bool = False
    max_failures: int = 5
    retry_initial: float = 1.0
    retry_max: float = 300.0
    timeout: float = 180.0
    forward: tuple[ForwardConfig, ...] = ()
    #: None: where the host has it (but not with sources = ["none"]); True: required.
    network: bool | None = None
    power: bool | None = None
    destinations: tuple[Destination, ...] = ()
    path: str | None = None
    #: Retention (``[journal]``): delete events older than this, and keep the file under
    #: this many bytes; None: no limit.
    max_age: timedelta | None = None
    max_size: int | None = None

    def wants(self, kind: str) -> bool | None:
        """Whether the daemon runs the ``network`` or ``power`` source: True (must), None
        (where this host has it) or False."""
        value: bool | None = getattr(self, kind)
        if value is None and tuple(self.sources) in ((), ("none",)):
            return False  # published events only: no live source at all
        return value


# section -> key -> (type, check, what it must be)
_Spec = tuple[type | tuple[type, ...], str]
_KEYS: dict[str, dict[str, _Spec]] = {
    "serve": {
        "journal": (str, "a file path"),
        "socket": (str, "a file path"),
        "socket_group": (str, "a group name"),
        "sources": (list, "a list of source names"),
        "include_existing": (bool, "true or false"),
        "network": (bool, "true or false"),
        "power": (bool, "true or false"),
        "durable": (bool, "true or false"),
    },
    "delivery": {
        "max_failures": (int, "a positive integer"),
        "retry_initial": ((int, float), "a positive number of seconds"),
        "retry_max": ((int, float), "a positive number of seconds"),
        "timeout": ((int, float), "a positive number of seconds"),
    },
    "journal": {
        "max_age": (str, 'an age like "90d", "2w" or "12h"'),
        "max_size": ((str, int), 'a size like "500M" or "2G"'),
    },
}


def _line_of(text: str, table: str, key: str | None, index: int = 0) -> int:
    """The line where ``key`` of ``[table]`` (the ``index``-th ``[[table]]``) is, or the
    table's header line; 1 when neither is found."""
    current, seen, header_line = "", -1, 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        m = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?", stripped)
        if m:
            current = m.group(1).strip().strip('"')
            if current == table:
                seen += 1
                if seen == index:
                    header_line = number
            continue
        if current == table and seen == index and key is not None and re.match(
                rf'^"?{re.escape(key)}"?\s*[=.]', stripped):
            return number
    return header_line or 1


def parse_config(text: str, name: str = "<config>") -> ServiceConfig:
    """The configuration in TOML ``text``; ConfigError names ``name``, the line and the fault."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        line = m.group(1) if m else str(max(1, len(text.splitlines())))
        msg = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(e))
        col = f" (column {m.group(2)})" if m else " (at the end of the file)"
        where = f"{name}:{line}"
        msg = msg or "not valid TOML"
        raise ConfigError(f"{where}: {msg}{col}") from None

    def fail(table: str, key: str | None, what: str, index: int = 0) -> ConfigError:
        return ConfigError(f"{name}:{_line_of(text, table, key, index)}: {what}")

    kw: dict[str, Any] = {}
    for table, value in data.items():
        if table in ("forward", "destination"):
            continue
        if table not in _KEYS:
            known = ("known sections are [serve], [delivery], [journal], [[forward]] and "
                     "[[destination]]")
            if isinstance(value, dict) or (
                    isinstance(value, list) and value and isinstance(value[0], dict)):
                raise fail(table, None, f"unknown section [{table}]; {known}")
            # A key before any section header: its line is in the headless top "table".
            raise fail("", table, f"a key ({table}) outside any section; {known}", -1)
        if not isinstance(value, dict):
            raise fail(table, None, f"{table} must be a section ([{table}])")
        for key, v in value.items():
            spec = _KEYS[table].get(key)
            if spec is None:
                raise fail(table, key, f"unknown key {key!r} in [{table}]; known keys are: "
                           + ", ".join(_KEYS[table]))
            types, what = spec
            if isinstance(v, bool) and bool not in (types if isinstance(types, tuple)
                                                    else (types,)):
                raise fail(table, key, f"[{table}] {key} must be {what}, not {v!r}")
            if not isinstance(v, types):
                raise fail(table, key, f"[{table}] {key} must be {what}, not {v!r}")
            if isinstance(v, list) and not all(isinstance(s, str) and s for s in v):
                raise fail(table, key, f"[{table}] sources must be a list of source names")
            if table == "journal":
                try:
                    kw[key] = parse_age(str(v)) if key == "max_age" else parse_size(
                        v if isinstance(v, int) else str(v))
                except LimitError as e:
                    raise fail(table, key, f"[journal] {key}: {e}") from None
                continue
            if isinstance(v, int | float) and not isinstance(v, bool) and (
                    v <= 0 or not math.isfinite(v)):  # nan passes `<= 0`
                raise fail(table, key, f"[{table}] {key} must be {what}, not {v!r}")
            kw[key] = tuple(v) if isinstance(v, list) else v
    forwards = data.get("forward", [])
    if not isinstance(forwards, list):
        raise fail("forward", None, "forward must be an array of tables ([[forward]])")
    out: list[ForwardConfig] = []
    for i, f in enumerate(forwards):
        if not isinstance(f, dict):
            raise fail("forward", None, "each [[forward]] must be a table", i)
        url = f.get("url")
        if isinstance(url, list) and url and all(isinstance(u, str) for u in url):
            url = ",".join(url)
        if not isinstance(url, str):
            raise fail("forward", "url" if "url" in f else None,
                       "[[forward]] url must be a nats:// URL or a list of them, not "
                       f"{url!r}", i)
        try:
            nats_target(url)  # the URLs alone here: the options are checked with the forwarder
        except NatsConfigError as e:
            raise fail("forward", "url", f"[[forward]] url: {e}", i) from None
        out.append(ForwardConfig(
            url, {k: v for k, v in f.items() if k != "url"},
            {k: f"{name}:{_line_of(text, 'forward', k, i)}" for k in f}))
    destinations = data.get("destination", [])
    if not isinstance(destinations, list):
        raise fail("destination", None,
                   "destination must be an array of tables ([[destination]])")
    checked: list[Destination] = []
    for i, table in enumerate(destinations):
        try:
            checked.extend(parse_destinations([table]))
        except ValueError as e:
            bad = next((k for k in ("port", "address", "name") if isinstance(table, dict)
                        and k in table and k in str(e)), None)
            raise fail("destination", bad, f"[[destination]] {str(e).partition(': ')[2]}",
                       i) from None
    names = [d.name for d in checked]
    for i, dest in enumerate(names):
        if dest in names[:i]:
            raise fail("destination", None, f"[[destination]] {dest} is listed twice", i)
    kw["destinations"] = tuple(checked)
    if kw.get("retry_initial", 1.0) > kw.get("retry_max", 300.0):
        raise fail("delivery", "retry_initial",
                   "[delivery] retry_initial must not exceed retry_max")
    return ServiceConfig(forward=tuple(out), path=name, **kw)


def load_config(path: str | Path) -> ServiceConfig:
    """The configuration file at ``path``; ConfigError when it cannot be read or is wrong."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read the configuration {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    return parse_config(text, str(path))
